"""What each layer of a backtest costs, side by side (issue 16's "also print").

The same `qt backtest --no-charts` on BTC/USDT + ETH/USDT 1h from ../shared/data over
``--range`` (2024-2026 by default: the brains and the walk-forward make the longer range
minutes long), whole process, one layer added per row:

1. the EMA/RSI baseline with the Exit Brain, the Risk/CEO/Strategy brains off (how the 10x
   target is defined);
2. the same with the brains on (the defaults);
3. the ensemble walked forward (``--strategy ensemble --walk-forward``: XGBoost + LightGBM
   retrained by the learning manager every week on their 90-day window, in worker processes),
   brains off;
4. the ensemble walked forward with the brains on.

Each row: wall and CPU seconds (this process's children: the command and its workers), median
of ``--runs``, after one warm-up run that fills the candle cache. The commands run this
checkout's code (PYTHONPATH). Skips (exit 0) when ../shared/data is absent.

Usage: .venv/bin/python bench/backtest_layers.py [--range 20240101-20260101] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FILES = [DATA / "BTC_USDT-1h.csv.gz", DATA / "ETH_USDT-1h.csv.gz"]
LAYERS = (
    ("baseline + Exit Brain, brains off", [], "false"),
    ("baseline + Exit Brain, brains on", [], "true"),
    ("ensemble walk-forward, brains off", ["--strategy", "ensemble", "--walk-forward"], "false"),
    ("ensemble walk-forward, brains on", ["--strategy", "ensemble", "--walk-forward"], "true"),
)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(timerange: str, extra: list[str], brains: str, tmp: str) -> tuple[float, float]:
    """Run the command once; return (wall s, CPU s of it and its workers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT__")}
    env |= {"QT__APP__DATA_DIR": tmp, "QT__BRAINS__ENABLED": brains, "PYTHONPATH": str(ROOT)}
    args = [str(ROOT / ".venv" / "bin" / "qt"), "backtest", "--timerange", timerange]
    args += ["--no-charts", "--name", "layers", *extra]
    for f in FILES:
        args += ["--data", str(f)]
    cpu = _children_cpu_s()
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env, cwd=tmp)  # noqa: S603
    return time.perf_counter() - started, _children_cpu_s() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--range", default="20240101-20260101", dest="timerange")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if not all(f.exists() for f in FILES):
        print(f"skipped: {DATA} is absent")
        return 0
    print(f"qt backtest --no-charts, BTC+ETH 1h {args.timerange}, median of {args.runs}:")
    print(f"  {'layer':<36} {'wall s':>8} {'CPU s':>8} {'x first':>8}")
    first: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        run_once(args.timerange, [], "false", tmp)  # fills the candle cache
        for label, extra, brains in LAYERS:
            runs = [run_once(args.timerange, extra, brains, tmp) for _ in range(args.runs)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            first = first or wall
            print(f"  {label:<36} {wall:8.2f} {cpu:8.2f} {wall / first:8.1f}")
    load = os.getloadavg()
    print(f"  (load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
