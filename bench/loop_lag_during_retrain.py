"""The running demo's event loop and trading cycle while the learning manager retrains, and
one retrain's wall time per member (issue 14's performance figures).

1. **The process** (``--phase process``): ``qt demo`` as the CLI starts it (``build_demo``,
   ``TradingProcess.start``), on its synthetic market (2 symbols, 1h), with the members
   xgb, lgbm and nhits (``QT__MODELS__MEMBERS``) and its default ``--history`` (3000) warm-up
   candles (with fewer the leak guard refuses the features and the baseline trades on),
   replayed at ``--speed`` (10) candles per second; ``--replay`` (8000) candles are enough
   for the three phases, and few enough that the synthetic prices (trending 6x) stay near
   the rules inferred from them.
   Once that training has handed its ensemble over (``process.learning.hold()`` false, the
   ensemble serving), two phases are measured: idle for ``--idle-s`` (30) seconds, then a
   full retrain (``process.learning.request("bench")`` until ``not
   process.learning.training``). In each: the event loop's lag (a probe task sleeping 10 ms,
   its overshoot: p50/p99/max) and the trading cycle's latency: one close, from the feed
   handing the market service the close's candles (the engine's ``before_batch``: the
   symbols' signals prepared together in a worker thread) to the end of the last symbol's
   ``engine.on_candle`` (the order path); the signals' share is printed beside it. The
   schedule's retrains are switched off (``QT__LEARNING__EVERY_HOURS``; a drift's early
   retrain waits a quarter of it too) so that idle is idle and the only retrain is the
   bench's. The heap is frozen when settled, as ``qt demo``'s runner does (``bot.heap``).
   Targets: lag p99 < 20
   ms during the retrain, cycle p50 during it within 1.5x of idle.
2. **One retrain per member** (``--phase fit``): ``--symbols`` (10) synthetic symbols x
   ``--days`` (730) of 1h candles through ``bot.learning.train_in_workers`` (the manager's
   own path: a spawned pool, one thread per worker, rows prepared in it), once per member
   (xgb, lgbm, nhits; patchtst with ``--with-patchtst``, it is slow), no champion. Prints
   the seconds of each (the worker's spawn and the rows' preparation included).

Offline; everything in a temporary folder deleted at the end. Exits 1 when a target of
phase 1 is missed.

Usage: .venv/bin/python bench/loop_lag_during_retrain.py [--phase both|process|fit]
       [--speed 10] [--idle-s 30] [--history 3000] [--replay 8000] [--symbols 10] [--days 730]
       [--with-patchtst]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROBE_S = 0.010  # the lag probe's sleep
T0 = 1_672_531_200_000  # 2023-01-01, the fit phase's first candle
PRICES = (0.01, 100_000.0, 1_000.0, 1.0, 10_000.0, 0.1, 100.0, 10.0, 5.0, 50.0)
LAG_P99_MS = 20.0
CYCLE_RATIO = 1.5


def _percentiles(ms: list[float]) -> str:
    if not ms:
        return "no samples"
    ordered = sorted(ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms, max {ordered[-1]:.1f} ms"


def _p(ms: list[float], q: float) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _clean_env() -> None:
    """Drop the caller's QT__ settings: the figures are of the settings given here."""
    for name in [n for n in os.environ if n.startswith("QT__")]:
        del os.environ[name]


class Phases:
    """The samples of each phase (lag and cycles), tagged by the phase they began in."""

    def __init__(self) -> None:
        self.now: str | None = None
        self.lag: dict[str, list[float]] = {}
        self.cycle: dict[str, list[float]] = {}
        self.signals: dict[str, list[float]] = {}

    def add(self, kind: dict[str, list[float]], phase: str | None, ms: float) -> None:
        if phase is not None:
            kind.setdefault(phase, []).append(ms)


async def probe_lag(phases: Phases) -> None:
    """Sleep 10 ms again and again; each overshoot is one lag sample."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(PROBE_S)
        phases.add(phases.lag, phases.now, (time.perf_counter() - before - PROBE_S) * 1000)


def time_cycles(market: Any, phases: Phases) -> None:
    """Time each close from its ``before_batch`` hooks to its last candle's handlers.

    The engine's hooks were bound into the market service's lists when the process was
    wired, so they are wrapped there (the bench's only reach into private state).
    """
    open_batch: dict[str, Any] = {}  # the close under way: started, phase, candles left

    def wrap_batch(hook: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def timed(batch: Any) -> None:
            started = time.perf_counter()
            open_batch.update(started=started, phase=phases.now, left=len(batch))
            await hook(batch)
            phases.add(phases.signals, open_batch["phase"], (time.perf_counter() - started) * 1e3)

        return timed

    def wrap_handler(
        handler: Callable[[str, Any], Awaitable[None]],
    ) -> Callable[[str, Any], Awaitable[None]]:
        async def timed(symbol: str, candle: Any) -> None:
            await handler(symbol, candle)
            if not open_batch:
                return  # a close of one symbol (no batch hook): not a cycle measured here
            open_batch["left"] -= 1
            if open_batch["left"] == 0:
                took = (time.perf_counter() - open_batch["started"]) * 1000
                phases.add(phases.cycle, open_batch["phase"], took)
                open_batch.clear()

        return timed

    market._before_batch[:] = [wrap_batch(h) for h in market._before_batch]
    # the last handler is the engine's cycle (the only one the process wires)
    market._handlers[-1] = wrap_handler(market._handlers[-1])


async def _until(what: str, done: Callable[[], bool], process: Any, timeout_s: float) -> float:
    """Wait until ``done()``; return the seconds it took. Raise when the replay ends first."""
    started = time.perf_counter()
    while not done():
        if process.finished.is_set():
            raise RuntimeError(f"the replay ended before {what}: raise --replay")
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"{what}: not after {timeout_s:.0f} s")
        await asyncio.sleep(0.1)
    return time.perf_counter() - started


def _ensemble_serves(process: Any) -> bool:
    from core.ml.ensemble import EnsembleProvider

    provider = process.engine.signals.provider
    return isinstance(getattr(provider, "current", provider), EnsembleProvider)


async def bench_process(args: argparse.Namespace, tmp: Path) -> bool:
    """Phase 1 (see module docstring); return whether both targets were met."""
    from bot.heap import freeze_when_settled, release
    from bot.modes import build_demo
    from core.config import load_settings

    members = ["xgb", "lgbm", "nhits"]
    settings = load_settings(
        app={"data_dir": str(tmp / "demo")},
        strategy={"provider": "ensemble"},
        models={"members": members},
        demo={
            "history_candles": args.history,
            "replay_candles": args.replay,
            "candles_per_second": args.speed,
        },
        # no retrain but the bench's: idle stays idle
        learning={"every_hours": 1e9},
    )
    print(
        f"qt demo: {len(settings.trading.symbols)} symbols, 1h, {args.history} warm-up candles, "
        f"replay {args.speed:g} candles/s, members {', '.join(members)}; "
        f"{os.cpu_count()} core(s), load {_load()}"
    )
    phases = Phases()
    process = await build_demo(settings)
    assert process.learning is not None, "the demo runs no learning manager"
    learning = process.learning
    time_cycles(process.market, phases)
    freeze_when_settled(process.bus)  # as qt demo's runner does
    probe = asyncio.create_task(probe_lag(phases), name="bench-lag-probe")
    await process.start()
    try:
        phases.now = "first training"
        took = await _until(
            "the demo's first training",
            lambda: not learning.hold() and _ensemble_serves(process),
            process,
            args.timeout_s,
        )
        print(f"  the demo's own first training handed its ensemble over after {took:.1f} s")
        await asyncio.sleep(2.0)  # the manager's first checks adopt the registry
        if learning.training:
            raise RuntimeError("the manager is training on its own: not idle")
        phases.now = "idle"
        await asyncio.sleep(args.idle_s)
        if learning.training:
            raise RuntimeError("the manager started a training run during the idle phase")
        phases.now = "retrain"
        print(f"  retrain: {learning.request('bench')}")
        took = await _until("the retrain", lambda: not learning.training, process, 3600)
        phases.now = None
        report = learning.reports[-1] if learning.reports else None
        print(f"  the retrain took {took:.1f} s wall (load {_load()})")
        for line in report.lines if report else []:
            print(f"    {line}")
    finally:
        phases.now = None
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
        try:
            await process.stop("bench")
        finally:
            release()
    for phase in ("idle", "retrain"):
        lag, cycle = phases.lag.get(phase, []), phases.cycle.get(phase, [])
        print(f"  {phase}: event-loop lag ({len(lag)} probes of 10 ms) {_percentiles(lag)}")
        print(
            f"  {phase}: trading cycle ({len(cycle)} closes) {_percentiles(cycle)}; "
            f"of which the signals (before_batch) {_percentiles(phases.signals.get(phase, []))}"
        )
    lag_p99 = _p(phases.lag.get("retrain", []), 0.99)
    idle_p50 = statistics.median(phases.cycle.get("idle", [0.0]))
    retrain_p50 = statistics.median(phases.cycle.get("retrain", [0.0]))
    ratio = retrain_p50 / idle_p50 if idle_p50 else float("inf")
    lag_ok, cycle_ok = lag_p99 < LAG_P99_MS, ratio <= CYCLE_RATIO
    print(
        f"  targets: lag p99 during the retrain {lag_p99:.1f} ms < {LAG_P99_MS:g} ms: "
        f"{'met' if lag_ok else 'MISSED'}; cycle p50 retrain/idle {ratio:.2f}x <= "
        f"{CYCLE_RATIO:g}x: {'met' if cycle_ok else 'MISSED'}"
    )
    return lag_ok and cycle_ok


async def bench_fit(args: argparse.Namespace) -> None:
    """Phase 2 (see module docstring)."""
    from bot.learning import train_in_workers
    from core.config import load_settings
    from core.market.synthetic import generate_candles

    members = ["xgb", "lgbm", "nhits", *(["patchtst"] if args.with_patchtst else [])]
    settings = load_settings(models={"members": members})
    n = round(args.days * 24)
    series = [
        generate_candles(
            f"S{i}/USDT", "1h", n, seed=10 + i, start_ms=T0, start_price=PRICES[i % len(PRICES)]
        )
        for i in range(args.symbols)
    ]
    print(
        f"one retrain per member: {args.symbols} symbols x {n:,} 1h candles (synthetic), "
        f"train_in_workers, one thread per worker; load {_load()}"
    )
    for member in members:
        started = time.perf_counter()
        run = await train_in_workers(settings, series, [member], {})
        took = time.perf_counter() - started
        if member in run.failures:
            print(f"  {member}: failed after {took:.1f} s: {run.failures[member]}")
            continue
        metrics, data = run.fits[member].fit.metrics, run.data
        print(
            f"  {member}: {took:.1f} s ({len(data.y_train):,} + {len(data.y_valid):,} rows; "
            f"validation log-loss {metrics.get('log_loss', float('nan')):.4f}), load {_load()}"
        )
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"  peak RSS of the largest worker {rss:.0f} MiB")


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    # At replay speed every job's interval is the scheduler's 50 ms floor: a run that takes
    # longer skips the next one, said each time; the figures are the bench's, not the log's.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    _clean_env()
    met = True
    with tempfile.TemporaryDirectory(prefix="qt-bench-") as tmp:
        here = os.getcwd()
        os.chdir(tmp)  # no .env of the caller's folder is read
        try:
            if args.phase in ("both", "process"):
                met = await bench_process(args, Path(tmp))
            if args.phase in ("both", "fit"):
                await bench_fit(args)
        finally:
            os.chdir(here)
    return 0 if met else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--phase", choices=("both", "process", "fit"), default="both")
    parser.add_argument("--speed", type=float, default=10.0, help="demo candles per second")
    parser.add_argument("--idle-s", type=float, default=30.0, help="seconds measured idle")
    parser.add_argument("--history", type=int, default=3000, help="demo warm-up candles")
    parser.add_argument("--replay", type=int, default=8000, help="demo replay candles")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="the first training's")
    parser.add_argument("--symbols", type=int, default=10, help="fit phase")
    parser.add_argument("--days", type=float, default=730.0, help="fit phase, of 1h candles")
    parser.add_argument("--with-patchtst", action="store_true", help="fit phase: PatchTST too")
    sys.exit(asyncio.run(main(parser.parse_args())))
