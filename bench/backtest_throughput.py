"""Backtest throughput on real candles: BTC/USDT + ETH/USDT 1h from ../shared/data.

Prints, for the EMA/RSI baseline with the Exit Brain (the Risk/CEO/Strategy brains off,
``QT__BRAINS__ENABLED=false``, as the 10x target is defined; ``--brains`` turns them on):

1. the simulation phase in-process (fast replay, and the full path for comparison);
2. the whole `qt backtest --no-charts` command end to end, split into its phases (median of
   ``--runs``): interpreter start, imports, load, signals, set-up, simulation, metrics, report,
   the rest of the command (settings, market rules, the CLI) and the interpreter's exit, so a
   regression shows where it came from (bench/backtest_phases.py times them inside the real
   command); and once with charts;

next to the Freqtrade figures measured on this machine class (research/freqtrade-baseline.md:
baseline A, EMA 20/50 cross + RSI, 2022-01-01 -> 2026-01-01, 70,128 candles, 5.39 s end to end,
13,011 candles/s; 30,530 candles/s in its indicator+simulation phase).

Usage: .venv/bin/python bench/backtest_throughput.py [--range 20180101-20260101] [--runs 5]
[--brains] (the issue's range; 20220101-20260101 is the other one Freqtrade was measured on).
With ``--brains`` most of the added time is the Risk Brain's Monte Carlo VaR (its Student-t
quantile): 2024-2026, brains on 15.9 s CPU against 2.0 s off (README, Benchmarks).
The commands run this checkout's code (PYTHONPATH), whatever checkout the venv was installed
from. Skips (exit 0) when ../shared/data is absent.

Where the simulation's time goes: quiet candles are skipped (FastReplay), so nearly all of it
is the few thousand candles that trade, spread over the paper book, dataclass construction, the
Exit Brain, execution, the bus and the regimes (research/backtest-profile.md profiles it, on an
earlier commit: its figures are not this code's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
FREQTRADE = {
    "20220101-20260101": (5.39, 13_011, 30_530),
    "20180101-20260101": (8.19, 17_125, 31_920),
}
PHASES = (
    ("interpreter start", "start"),
    ("imports", "imports"),
    ("load (files, checks)", "load"),
    ("signals", "signals"),
    ("replay set-up, results", "setup"),
    ("simulation", "simulation"),
    ("equity curve + metrics", "metrics"),
    ("report (print + files)", "report"),
    ("rest (settings, rules, CLI)", "rest"),
    ("interpreter exit", "exit"),
)


def _peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _env(tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT__")}
    env["QT__APP__DATA_DIR"] = tmp
    env["QT__BRAINS__ENABLED"] = os.environ["QT__BRAINS__ENABLED"]
    env["PYTHONPATH"] = str(ROOT)  # this checkout, not the one the venv's editable install names
    return env


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


def _qt_args(timerange: str, *, charts: bool) -> list[str]:
    args = ["backtest", "--timerange", timerange, "--name", "bench"]
    args.append("--charts" if charts else "--no-charts")
    for f in FILES:
        args += ["--data", str(f)]
    return args


def _phases_once(timerange: str, tmp: str) -> dict[str, float]:
    """Run `qt backtest --no-charts` once in a child that times its phases; return them.
    ``tmp`` is the data folder: the candle cache a run leaves there serves the next."""
    out = Path(tmp) / "phases.json"
    child = [sys.executable, str(ROOT / "bench" / "backtest_phases.py"), str(out), "--"]
    spawned = time.monotonic()
    subprocess.run(  # noqa: S603
        [*child, *_qt_args(timerange, charts=False)],
        check=True,
        capture_output=True,
        env=_env(tmp),
        cwd=tmp,
    )
    reaped = time.monotonic()
    t = json.loads(out.read_text())
    timed = ("load", "signals", "setup", "simulation", "metrics", "report")
    command = t["done"] - t["imported"]
    return {
        "start": t["started"] - spawned,
        "imports": t["imported"] - t["started"],
        **{k: t[k] for k in timed},
        "rest": command - sum(t[k] for k in timed),
        "exit": reaped - t["done"],
        "total": reaped - spawned,
    }


def _end_to_end(timerange: str, *, charts: bool) -> float:
    qt = ROOT / ".venv" / "bin" / "qt"
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run(  # noqa: S603
            [str(qt), *_qt_args(timerange, charts=charts)],
            check=True,
            capture_output=True,
            env=_env(tmp),
            cwd=tmp,
        )
        return time.perf_counter() - started


def _print_phases(timerange: str, runs: int) -> float:
    """Print the median of each phase over ``runs`` runs after a first one that fills the
    candle cache (its load is printed too); return the median total."""
    with tempfile.TemporaryDirectory() as tmp:
        first = _phases_once(timerange, tmp)
        samples = [_phases_once(timerange, tmp) for _ in range(runs)]
    print(
        f"  first run (no candle cache yet): load {first['load'] * 1000:.0f} ms, "
        f"total {first['total']:.2f} s"
    )
    print(f"  `qt backtest --no-charts` by phase, candle cache filled (median of {runs}, ms):")
    for label, key in (*PHASES, ("total (spawn to reap)", "total")):
        values = [s[key] * 1000 for s in samples]
        print(
            f"    {label:<30} {statistics.median(values):7.0f}"
            f"   ({min(values):.0f}-{max(values):.0f})"
        )
    return statistics.median(s["total"] for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--range", default="20180101-20260101", dest="timerange")
    parser.add_argument("--runs", type=int, default=5, help="end-to-end runs per figure")
    parser.add_argument(
        "--brains", action="store_true", help="the Risk/CEO/Strategy brains on (~1 min a run)"
    )
    args = parser.parse_args()
    if not all(f.exists() for f in FILES):
        print(f"skipped: {DATA} not found (the real-candle data set is not beside this clone)")
        return
    os.environ["QT__BRAINS__ENABLED"] = "true" if args.brains else "false"
    brains = "with the brains on" if args.brains else "brains off"
    print(f"BTC/USDT + ETH/USDT 1h, timerange {args.timerange}, EMA/RSI + Exit Brain, {brains}")
    sim_rate = 0.0
    candles = 0
    for fast in (True, False):
        candles, trades, wall_s = asyncio.run(_in_process(args.timerange, fast))
        sim_rate = max(sim_rate, candles / wall_s)
        label = "fast replay" if fast else "full path  "
        print(
            f"  simulation, {label}: {candles:,} candles, {trades} trades, {wall_s:.2f} s, "
            f"{candles / wall_s:,.0f} candles/s"
        )
    print(f"  peak RSS in-process: {_peak_rss_mib():.0f} MiB")
    total = _print_phases(args.timerange, args.runs)
    print(f"  end to end, no charts: {total:.2f} s, {candles / total:,.0f} candles/s")
    with_charts = _end_to_end(args.timerange, charts=True)
    print(f"  end to end with charts (one run): {with_charts:.2f} s")
    print(f"  peak RSS of the CLI runs: {_peak_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB")
    if args.timerange in FREQTRADE:
        ft_wall, ft_rate, ft_sim = FREQTRADE[args.timerange]
        # Freqtrade's backtest writes results but draws no charts: compare like for like.
        print(
            f"  Freqtrade (same data, equivalent strategy): {ft_wall:.2f} s end to end "
            f"({ft_rate:,} candles/s), {ft_sim:,} candles/s in its simulation phase"
        )
        print(
            f"  speed-up vs Freqtrade: end to end {ft_wall / total:.1f}x (no charts), "
            f"simulation {sim_rate / ft_sim:.1f}x"
        )


if __name__ == "__main__":
    main()
