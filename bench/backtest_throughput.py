"""Backtest throughput on real candles: BTC/USDT + ETH/USDT 1h from ../shared/data.

Prints candles/s, wall time and peak RSS for
  1. the simulation phase in-process (fast replay, and the full path for comparison), and
  2. the whole `qt backtest` command end to end (interpreter start, imports, data load,
     backtest, report files with charts),
next to the Freqtrade figures measured on this machine class (research/freqtrade-baseline.md:
baseline A, EMA 20/50 cross + RSI, 2022-01-01 -> 2026-01-01, 70,128 candles, 5.39 s end to end,
13,011 candles/s; 30,530 candles/s in its indicator+simulation phase).

Usage: .venv/bin/python bench/backtest_throughput.py [--range 20180101-20260101]
(the issue's range; 20220101-20260101 is the other one Freqtrade was measured on).
Skips (exit 0) when ../shared/data is absent.

Where the time goes (py-spy, 2022-2026): quiet candles are skipped (FastReplay), so ~97 % of
the simulation is the ~2,300 candles that trade: ~1 ms of Python per round trip (6 orders, 3
cancels, 3 fills, 18 events, 2 exit plans), spread over the paper book (~25 %), dataclass
construction (~12 %), the Exit Brain (~8 %), execution, bus and storage. Tried and measured:
compiling the 12 hot modules (engine, execution, exit executor, bus, market, replay, paper
exchange, fill model, brains) with mypyc: no gain (0.74 s vs 0.73 s); no audit sink in
backtests: 5 % (adopted: the backtest's storage is thrown away); dropping every paper-exchange
write as well: 3 % more (kept: one exchange code path). No single hot loop is left to vectorise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FILES = [DATA / "BTC_USDT-1h.csv.gz", DATA / "ETH_USDT-1h.csv.gz"]
FREQTRADE = {
    "20220101-20260101": (5.39, 13_011, 30_530),
    "20180101-20260101": (8.19, 17_125, 31_920),
}


def _peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


async def _in_process(timerange: str, fast: bool) -> tuple[int, int, float]:
    sys.path.insert(0, str(ROOT))
    from bot.backtest import run_backtest
    from bot.cli_backtest import parse_timerange
    from core.config import Settings
    from core.market.importers import read_candle_file

    series = {s.symbol: s for s in (read_candle_file(f).series for f in FILES)}
    start_ms, end_ms = parse_timerange(timerange)
    started = time.perf_counter()
    result = await run_backtest(Settings(), series, start_ms=start_ms, end_ms=end_ms, fast=fast)
    return result.candles, len(result.trades), time.perf_counter() - started


def _end_to_end(timerange: str, *, charts: bool) -> float:
    qt = ROOT / ".venv" / "bin" / "qt"
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QT__")}
        env["QT__APP__DATA_DIR"] = tmp
        args = [str(qt), "backtest", "--timerange", timerange, "--name", "bench"]
        args.append("--charts" if charts else "--no-charts")
        for f in FILES:
            args += ["--data", str(f)]
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, env=env, cwd=tmp)  # noqa: S603
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--range", default="20180101-20260101", dest="timerange")
    args = parser.parse_args()
    if not all(f.exists() for f in FILES):
        print(f"skipped: {DATA} not found (the real-candle data set is not beside this clone)")
        return
    print(f"BTC/USDT + ETH/USDT 1h, timerange {args.timerange}, baseline EMA/RSI + Exit Brain")
    sim_rate = 0.0
    for fast in (True, False):
        candles, trades, wall_s = asyncio.run(_in_process(args.timerange, fast))
        sim_rate = max(sim_rate, candles / wall_s)
        label = "fast replay" if fast else "full path  "
        print(
            f"  simulation, {label}: {candles:,} candles, {trades} trades, {wall_s:.2f} s, "
            f"{candles / wall_s:,.0f} candles/s"
        )
    print(f"  peak RSS in-process: {_peak_rss_mib():.0f} MiB")
    results = {}
    for charts in (False, True):
        walls = sorted(_end_to_end(args.timerange, charts=charts) for _ in range(3))
        results[charts] = walls[1]
        print(
            f"  end to end `qt backtest` {'with' if charts else 'without'} charts (median of 3): "
            f"{walls[1]:.2f} s, {candles / walls[1]:,.0f} candles/s"
        )
    print(f"  peak RSS of the CLI runs: {_peak_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB")
    if args.timerange in FREQTRADE:
        ft_wall, ft_rate, ft_sim = FREQTRADE[args.timerange]
        # Freqtrade's backtest writes results but draws no charts: compare like for like.
        print(
            f"  Freqtrade (same data, equivalent strategy): {ft_wall:.2f} s end to end "
            f"({ft_rate:,} candles/s), {ft_sim:,} candles/s in its simulation phase"
        )
        print(
            f"  speed-up vs Freqtrade: end to end {ft_wall / results[False]:.1f}x (no charts), "
            f"simulation {sim_rate / ft_sim:.1f}x"
        )


if __name__ == "__main__":
    main()
