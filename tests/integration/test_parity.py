"""Backtest and the demo/run path produce the same orders and fills on the same candles."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bot.app import TradingProcess
from bot.backtest import BacktestResult, run_backtest
from bot.market_rules import resolved
from bot.modes import build_demo, demo_market, paper_exchange
from bot.runner import run_process
from bot.trading import provider_from
from core.clock import AcceleratedClock
from core.config import Settings, load_settings
from core.domain.market import Candle, CandleSeries, timeframe_to_ms
from core.domain.orders import Fill
from core.market.feeds import ReplayFeed
from core.signals.base import SignalFrame, SignalProvider
from jobs.registry import JobContext, JobSpec
from storage import open_storage


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings(
        app={"data_dir": str(tmp_path / "ud")},
        demo={
            "candles_per_second": 10_000.0,
            "history_candles": 300,
            "replay_candles": 600,
            "seed": 11,
        },
        strategy={"provider": "ema_rsi"},  # the same provider in both, from the first candle
        # The demo's scheduler fires the brains at market-time intervals from its start, not in
        # lockstep with its candles: when a mode changes relative to a candle is not a
        # backtest's. This is the engine's parity; the brains have their own tests.
        brains={"enabled": False},
    )


def _key(fill: Fill) -> tuple[str, str, Decimal, Decimal, Decimal]:
    # The fill's timestamp is left out: the demo's clock is real (accelerated) time.
    return (fill.client_order_id, fill.side.value, fill.amount, fill.price, fill.fee)


async def test_demo_and_backtest_make_the_same_orders_and_fills(settings: Settings) -> None:
    built: list[TradingProcess] = []

    async def build() -> TradingProcess:
        built.append(await build_demo(settings))
        return built[0]

    assert await run_process(build, console=Console(record=True)) == "feed ended"
    demo_storage = built[0].storage
    await demo_storage.start()
    try:
        demo_orders = await demo_storage.orders.list_all()
        demo_fills = await demo_storage.fills.list_fills()
    finally:
        await demo_storage.stop()

    markets, replay_start_ms = demo_market(settings)
    for fast in (True, False):
        result = await run_backtest(
            settings,
            markets,
            start_ms=replay_start_ms,
            fast=fast,
            rules=resolved(settings, markets, series=markets),
        )
        assert len(demo_fills) >= 10, "the scenario must trade to prove anything"
        # Same fills; listed in fill-time order, which the demo's real clock can shuffle a little.
        assert sorted(map(_key, result.fills)) == sorted(map(_key, demo_fills))
        # every order the demo sent, the backtest sent too (same deterministic client ids)
        backtest_ids = {f.client_order_id for f in result.fills}
        filled_demo_ids = {o.client_order_id for o in demo_orders if o.filled > 0}
        assert backtest_ids == filled_demo_ids


async def test_restart_mid_trade_continues_exactly(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Stop the demo while a trade is open, restart on the same database, finish the replay:
    the fills are those of one uninterrupted backtest."""
    markets, replay_start_ms = demo_market(settings)
    stop = asyncio.Event()
    built: list[TradingProcess] = []
    handled: dict[str, int] = {}  # per symbol, the open time of the last candle handled whole

    async def build() -> TradingProcess:
        process = await build_demo(settings)

        async def stop_mid_trade(symbol: str, candle: Candle) -> None:
            handled[symbol] = candle.ts_ms  # the last handler: the engine is done with it
            trades = process.engine.trades.values()
            if process.market.stats.candles > 200 and any(t.working for t in trades):
                stop.set()

        process.market.on_candle(stop_mid_trade)
        built.append(process)
        return process

    assert await run_process(build, console=Console(record=True), stop=stop) == "signal"
    first = built[0]
    open_before = {s: (t.trade_id, dict(t.working)) for s, t in first.engine.trades.items()}
    assert open_before, "the test needs an open trade at the stop"

    # Restart: fresh objects on the same database; the feed resumes after the last candle the
    # stopped process handled whole (a stop landing between storing a candle and filling it
    # leaves one stored but unhandled: the restart handles it, the venue skips what it saw).
    storage = open_storage(first.parts.database_url)
    await storage.start()
    resume, last_close_ms = {}, 0
    for symbol, series in markets.items():
        last = await storage.candles.last_ts_ms("synthetic", symbol, series.timeframe)
        assert last is not None and last >= handled[symbol]
        resume[symbol] = series.between(handled[symbol] + 1, None)
        last_close_ms = max(last_close_ms, last + timeframe_to_ms(series.timeframe))
    await storage.stop()
    # The restart happens once the newest stored candle has closed, where the stopped clock
    # stood: a stop often lands between the symbols of one close (BTC's candle handled, ETH's
    # not), and a clock started at ETH's open would make BTC's stored candle one from the
    # future, left out of the restarted engine's history and prices (other signals, sizes).
    assert last_close_ms <= first.clock.now_ms()
    clock = AcceleratedClock(start_ms=last_close_ms, speed=first.parts.speed)
    storage = open_storage(first.parts.database_url)
    paper = paper_exchange(settings, storage, clock, first.parts.book)
    second = TradingProcess(
        replace(
            first.parts,
            clock=clock,
            storage=storage,
            exchange=paper,
            venue=paper,
            feed=ReplayFeed(resume, clock),
            before_start=[],
        )
    )
    restored: dict[str, tuple[str, dict[str, str]]] = {}

    async def build_again() -> TradingProcess:
        async def note_restored(_symbol: str, _candle: object) -> None:
            if not restored:
                restored.update(
                    {s: (t.trade_id, dict(t.working)) for s, t in second.engine.trades.items()}
                )

        second.market.on_candle(note_restored)
        return second

    assert await run_process(build_again, console=Console(record=True)) == "feed ended"
    for symbol, (trade_id, _working) in open_before.items():
        assert restored[symbol][0] == trade_id  # the engine picked the same trade back up
    # ... on the whole stored history: no stored candle was dated after the restart's clock
    assert "left out, breaking a rule" not in caplog.text

    await storage.start()
    try:
        fills = await storage.fills.list_fills()
    finally:
        await storage.stop()
    result = await run_backtest(
        settings,
        markets,
        start_ms=replay_start_ms,
        rules=resolved(settings, markets, series=markets),
    )
    assert sorted(map(_key, fills)) == sorted(map(_key, result.fills))


async def test_a_started_process_knows_every_symbols_price_before_its_first_candle(
    settings: Settings,
) -> None:
    """After a restart the engine values holdings of every symbol at their stored closes, so
    the first entry is sized on the same equity as without the restart."""
    process = await build_demo(settings)
    await process.start()
    try:
        assert set(process.engine.prices) == set(settings.trading.symbols)
        assert all(price > 0 for price in process.engine.prices.values())
    finally:
        await process.stop("test")


class _FlipAfterJobs:
    """The configured provider with each job run switching the exit signals of every later
    candle off or on again: a job that changes the signals mid-backtest, causally (candles
    closed by the run keep theirs)."""

    def __init__(self, inner: SignalProvider) -> None:
        self.inner = inner
        self.name = "flip"
        self.warmup_candles = inner.warmup_candles
        self.flips_ms: list[int] = []

    def compute(self, series: CandleSeries) -> SignalFrame:
        frame = self.inner.compute(series)
        close_ms = series.ts_ms + timeframe_to_ms(series.timeframe)
        off = np.searchsorted(np.array(self.flips_ms, np.int64), close_ms) % 2 == 1
        return replace(frame, exit_long=frame.exit_long & ~off, exit_short=frame.exit_short & ~off)


async def test_fast_and_full_backtests_agree_with_jobs_that_change_the_signals(
    settings: Settings,
) -> None:
    markets, replay_start_ms = demo_market(settings)
    every_s = 37 * timeframe_to_ms(settings.trading.timeframe) / 1000  # off the candle grid too

    async def run(fast: bool, with_jobs: bool) -> tuple[BacktestResult, list[tuple[int, str]]]:
        provider = _FlipAfterJobs(provider_from(settings))
        seen: list[tuple[int, str]] = []

        async def flip(ctx: JobContext) -> str:
            assert ctx.clock is not None
            snap = await ctx.portfolio.snapshot()  # valued at every symbol's close by now
            seen.append((ctx.clock.now_ms(), f"{snap.equity:.6f}"))
            provider.flips_ms.append(ctx.clock.now_ms())
            return "flipped"

        spec = JobSpec(
            job_id="flip",
            every_market_s=every_s,
            target=flip,
            in_backtest=True,
            changes_signals=True,
        )
        result = await run_backtest(
            settings,
            markets,
            start_ms=replay_start_ms,
            fast=fast,
            provider=provider,
            rules=resolved(settings, markets, series=markets),
            jobs=(spec,) if with_jobs else (),
        )
        return result, seen

    (fast, fast_seen), (full, full_seen) = [await run(f, True) for f in (True, False)]
    plain, _ = await run(True, False)
    assert len(fast.job_runs) >= 10 and fast.job_runs == full.job_runs
    assert fast_seen == full_seen  # same clock and the same prices known at every run
    assert [t for _, t in fast.job_runs] == [t for t, _ in fast_seen]
    assert len(fast.fills) >= 10, "the scenario must trade to prove anything"
    assert list(map(_key, fast.fills)) == list(map(_key, full.fills))
    assert [f.ts_ms for f in fast.fills] == [f.ts_ms for f in full.fills]
    assert list(map(_key, plain.fills)) != list(map(_key, fast.fills))  # the jobs mattered
