"""Fit time and peak memory of the XGBoost and LightGBM members on a walk-forward-sized window.

200,000 rows x 40 float64 features (a planted signal in 4 of them), 300 trees, no early
stopping, the members' default hyper-parameters on 2 threads (``--threads``). Each member
runs in its own
process so the peaks do not mix; it prints the library import, the fit, a prediction of
20,000 held-out rows, their accuracy (chance 0.5) and the process's peak RSS (ru_maxrss;
the data alone is ~70 MiB). The load average is printed too: with the other core busy, two
OpenMP threads wait on each other and a fit can take several times as long.

Usage: .venv/bin/python bench/gbdt_fit.py [--rows 200000] [--features 40] [--trees 300]
       [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT = 20_000


def child(member_name: str, rows: int, features: int, trees: int, threads: int) -> dict[str, float]:
    """Fit one member in this process and return its figures."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from core.ml.members.lgbm import LgbmMember, LgbmParams
    from core.ml.members.xgb import XgbMember, XgbParams

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows + HOLDOUT, features))
    signal = x[:, 0] + 0.5 * x[:, 1] - 0.5 * x[:, 2] + 0.25 * x[:, 3] * x[:, 0]
    y = (signal + rng.normal(size=rows + HOLDOUT) > 0).astype(np.int64)
    columns = tuple(f"f{i}" for i in range(features))
    member: XgbMember | LgbmMember
    if member_name == "xgb":
        member = XgbMember(XgbParams(n_estimators=trees, n_jobs=threads))
    else:
        member = LgbmMember(LgbmParams(n_estimators=trees, n_jobs=threads))

    started = time.perf_counter()
    member.library_versions()  # imports the library the member's way (OpenMP set passive)
    imported = time.perf_counter()
    member.fit(x[:rows], y[:rows], columns=columns, feature_set_hash="bench")
    fitted = time.perf_counter()
    p = member.predict_proba(x[rows:], columns=columns, feature_set_hash="bench")
    predicted = time.perf_counter()
    return {
        "import_s": imported - started,
        "fit_s": fitted - imported,
        "predict_s": predicted - fitted,
        "accuracy": float(((p > 0.5) == y[rows:]).mean()),
        "trees": float(member.fit_info["trees"]),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["xgb", "lgbm"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.features, args.trees, args.threads)))
        return

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    policy = os.environ.get("OMP_WAIT_POLICY", "PASSIVE (the members' default)")
    print(
        f"{args.rows:,} rows x {args.features} features, {args.trees} trees, "
        f"{args.threads} threads, OMP_WAIT_POLICY {policy}; "
        f"load average {load} on {os.cpu_count()} cores"
    )
    print(f"{'member':<6} {'import':>8} {'fit':>8} {'predict':>9} {'accuracy':>9} {'peak RSS':>10}")
    for name in ("xgb", "lgbm"):
        cmd = [sys.executable, __file__, "--child", name]
        cmd += ["--rows", str(args.rows), "--features", str(args.features)]
        cmd += ["--trees", str(args.trees), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)  # noqa: S603
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{name:<6} {r['import_s']:>7.2f}s {r['fit_s']:>7.2f}s {r['predict_s']:>8.3f}s "
            f"{r['accuracy']:>9.3f} {r['peak_rss_mib']:>6.0f} MiB"
        )


if __name__ == "__main__":
    main()
