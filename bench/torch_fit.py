"""One retrain of each torch member on one symbol's last 2 years of 1h candles (17,520).

The candles are ../shared/data/BTC_USDT-1h.csv.gz when present (its last 17,520 candles), a
synthetic series otherwise (``--synthetic`` forces it). Features are the default set, the
label the default triple barrier (24 candles); the last 15 % of the rows, after an embargo
of 24, are the eval set (early stopping and the calibration), the rest is trained on. Each
member runs in its own process with its default hyper-parameters on 2 threads, so the peaks
do not mix; it prints the fit's wall time, epochs run and the best one, the network's
weights, the rows, the calibrated P(up)'s spread on the eval window and the process's peak
RSS (ru_maxrss). A warm start from that model (``warm_epochs``) is timed too. The load
average is printed: the other core busy slows a fit down.

Usage: .venv/bin/python bench/torch_fit.py [--candles 17520] [--threads 2] [--synthetic]
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
DATA = ROOT.parent / "shared" / "data" / "BTC_USDT-1h.csv.gz"
EMBARGO = 24
T0 = 1_672_531_200_000  # 2023-01-01, for the synthetic series


def _series(candles: int, synthetic: bool):  # -> CandleSeries
    if not synthetic and DATA.exists():
        from core.market.importers import read_candle_file

        series = read_candle_file(DATA).series
        return series.slice(max(0, len(series) - candles - 1000)), str(DATA.name)
    from core.market.synthetic import generate_candles

    return generate_candles("SYN/USDT", "1h", candles + 1000, seed=5, start_ms=T0), "synthetic"


def child(member_name: str, candles: int, threads: int, synthetic: bool) -> dict[str, object]:
    """Fit one member in this process and return its figures."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from core.ml.features import compute_features
    from core.ml.labels import triple_barrier_labels
    from core.ml.members.nhits import NhitsMember, NhitsParams
    from core.ml.members.patchtst import PatchTstMember, PatchTstParams

    series, source = _series(candles, synthetic)
    # 1,000 candles more for the indicators' warm-up, then the last `candles` rows.
    features = compute_features(series)
    labels = triple_barrier_labels(series)
    x = features.values[-candles:].astype(np.float64)
    y = labels.y[-candles:].astype(np.int64)
    known = labels.valid[-candles:]
    split = int(candles * 0.85)
    last = int(np.flatnonzero(known)[-1]) + 1  # the eval set ends at the last known label
    xt, yt = x[: split - EMBARGO], y[: split - EMBARGO]
    xv, yv = x[split:last], y[split:last]

    def make() -> NhitsMember | PatchTstMember:
        if member_name == "nhits":
            return NhitsMember(NhitsParams(n_threads=threads))
        return PatchTstMember(PatchTstParams(n_threads=threads))

    member = make()
    kw = {"columns": features.columns, "feature_set_hash": features.set_hash}

    member.library_versions()  # imports torch before the clock starts
    started = time.perf_counter()
    member.fit(xt, yt, eval_set=(xv, yv), **kw)
    fitted = time.perf_counter()
    p = member.predict_proba(xv, **kw)
    predicted = time.perf_counter()
    warm = make()  # same settings, from the fitted weights
    warm.fit(xt, yt, eval_set=(xv, yv), warm_start=member, **kw)
    warmed = time.perf_counter()
    info = member.fit_info
    return {
        "source": source,
        "fit_s": fitted - started,
        "epochs": info["epochs"],
        "best_epoch": info["best_epoch"],
        "per_epoch_s": (fitted - started) / info["epochs"],
        "weights": member.weight_count,
        "train_rows": info["train_rows"],
        "eval_rows": len(yv),
        "predict_eval_s": predicted - fitted,
        "p_std": float(p[member.window - 1 :].std()),
        "warm_fit_s": warmed - predicted,
        "warm_epochs": warm.fit_info["epochs"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": dict(member.params),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=17_520)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--members", default="nhits,patchtst")
    parser.add_argument("--child", choices=["nhits", "patchtst"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.candles, args.threads, args.synthetic)))
        return
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{args.candles:,} 1h candles, {args.threads} threads, load average {load}")
    for name in args.members.split(","):
        cmd = [sys.executable, __file__, "--child", name, "--candles", str(args.candles)]
        cmd += ["--threads", str(args.threads)] + (["--synthetic"] if args.synthetic else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)  # noqa: S603
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{name:8s} ({r['source']}): fit {r['fit_s']:.1f} s, {r['epochs']} epochs (best "
            f"{r['best_epoch']}, {r['per_epoch_s']:.2f} s each), {r['weights']:,} weights, "
            f"{r['train_rows']:,} training windows, eval {r['eval_rows']:,} rows predicted in "
            f"{r['predict_eval_s']:.2f} s (P std {r['p_std']:.3f}); warm start "
            f"{r['warm_fit_s']:.1f} s ({r['warm_epochs']} epochs); peak RSS "
            f"{r['peak_rss_mib']:.0f} MiB"
        )
        print(f"         settings: {json.dumps(r['params'])}")


if __name__ == "__main__":
    main()
