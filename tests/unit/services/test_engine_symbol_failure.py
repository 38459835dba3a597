"""An unexpected error in one symbol's cycle fails that symbol closed: logged, published, no
new entries for it until it has run a day of candles clean (each new failure doubles the wait)
or an operator resumes; its open trade is still protected; every other symbol goes on.

Harness defaults (see ``engine_harness``): entries decided at 100 are 50 units, filled at
100.02, stop 98.02.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.trading import build_engine
from core.config import Settings
from core.domain.enums import TradingState
from core.domain.events import OrderFilled, SymbolFailed, SymbolRecovered
from core.domain.market import Candle, CandleSeries
from core.services.bus import EventBus
from core.services.symbol_health import SymbolHealth
from core.services.trading_state import TradingStateService
from core.signals.base import SignalFrame
from tests.unit.services.engine_harness import (
    HOUR_MS,
    SYMBOL,
    Harness,
    ScriptedProvider,
    at,
    clean_settings,
)
from tests.unit.services.test_engine import NoStopPaper

OTHER = "ETH/USDT"
DAY = 24


@pytest.fixture
def st_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    return clean_settings(monkeypatch, tmp_path)


@dataclass
class BreaksOn(ScriptedProvider):
    """Scripted signals that raise on chosen candles of chosen symbols (a provider's bug)."""

    breaks: set[tuple[str, int]] = field(default_factory=set)

    def compute(self, series: CandleSeries) -> SignalFrame:
        if (series.symbol, int(series.ts_ms[-1])) in self.breaks:
            raise KeyError("feature 'rsi_14' missing")
        return super().compute(series)


def entries_everywhere(n: int) -> dict[int, int]:
    return {at(i): 1 for i in range(n)}


async def both(h: Harness, i: int, o: float, hi: float, lo: float, c: float) -> None:
    """Close candle ``i`` of both symbols, on the same candle time."""
    for symbol in (SYMBOL, OTHER):
        await h.candle(i, o, hi, lo, c, symbol=symbol)


def filled(h: Harness, symbol: str) -> list[OrderFilled]:
    return [e for e in h.of(OrderFilled) if isinstance(e, OrderFilled) and e.symbol == symbol]


def failures(h: Harness) -> list[SymbolFailed]:
    return [e for e in h.of(SymbolFailed) if isinstance(e, SymbolFailed)]


def recoveries(h: Harness) -> list[SymbolRecovered]:
    return [e for e in h.of(SymbolRecovered) if isinstance(e, SymbolRecovered)]


async def test_one_symbols_error_stops_its_entries_and_no_one_elses(st_settings: Settings) -> None:
    provider = BreaksOn(entries=entries_everywhere(40), breaks={(OTHER, at(0))})
    h = await Harness(st_settings, provider).start()
    await both(h, 0, 100, 100.2, 99.8, 100)  # OTHER's cycle raises; BTC's entry goes out

    [failed] = failures(h)
    assert (failed.symbol, failed.candle_open_ms, failed.strikes) == (OTHER, at(0), 1)
    assert failed.error == "KeyError: \"feature 'rsi_14' missing\""
    assert failed.until_ms == at(0) + DAY * HOUR_MS
    for i in range(1, DAY):  # a day of entry signals on OTHER: none taken
        await both(h, i, 100, 100.2, 99.9, 100)
    assert filled(h, OTHER) == []
    assert len(filled(h, SYMBOL)) == 1  # BTC entered on candle 0 (filled on candle 1)
    assert recoveries(h) == []

    await both(h, DAY, 100, 100.2, 99.9, 100)  # its wait is over: entered, filled next candle
    await both(h, DAY + 1, 100, 100.2, 99.9, 100)
    [recovered] = recoveries(h)
    assert (recovered.symbol, recovered.actor) == (OTHER, "engine")
    assert [f.side for f in filled(h, OTHER)] == ["buy"]  # the entry


async def test_a_failed_symbols_open_trade_is_still_protected(st_settings: Settings) -> None:
    """The provider breaks on every candle once the trade is open, and the venue refuses stops
    (the bot watches the stop itself): the engine still manages the trade on each candle and
    exits at the watched stop."""
    provider = BreaksOn(entries={at(0): 1}, breaks={(SYMBOL, at(i)) for i in range(2, 9)})
    h = await Harness(st_settings, provider, paper_class=NoStopPaper).start()
    await h.candle(0, 100, 100.2, 99.8, 100)
    await h.candle(1, 100, 100.2, 99.9, 100)  # filled: take-profits resting, the stop watched
    await h.candle(2, 100, 100.2, 99.9, 100)  # the cycle raises
    await h.candle(3, 100, 100.2, 98.5, 99)  # raises again: one event per pause
    assert [(f.symbol, f.strikes) for f in failures(h)] == [(SYMBOL, 1)]
    assert h.engine.health.failures[SYMBOL].strikes == 2

    await h.candle(4, 99, 99, 97.5, 97.8)  # through the watched stop: the market exit goes
    await h.candle(5, 97.8, 98, 97.5, 97.6)  # and fills
    [trade] = h.engine.closed_trades
    assert trade.exit_reason == "SL"
    assert await h.paper.fetch_positions() == []


async def test_each_new_failure_doubles_the_wait_up_to_a_month() -> None:
    health = SymbolHealth(HOUR_MS)
    waits = []
    t = at(0)
    for _ in range(8):
        failure = health.fail(OTHER, t, "RuntimeError: x")
        waits.append((failure.until_ms - t) // HOUR_MS)
        assert health.recover(OTHER, failure.until_ms - HOUR_MS) is None  # one candle short
        assert health.recover(OTHER, failure.until_ms) == failure
        assert health.blocks(OTHER) is None
        t = failure.until_ms
    assert waits == [24, 48, 96, 192, 384, 720, 720, 720]


async def test_an_operators_resume_lets_the_symbol_enter_at_once(st_settings: Settings) -> None:
    provider = BreaksOn(entries=entries_everywhere(10), breaks={(SYMBOL, at(0))})
    h = await Harness(st_settings, provider).start()
    await h.candle(0, 100, 100.2, 99.8, 100)
    await h.candle(1, 100, 100.2, 99.9, 100)
    assert filled(h, SYMBOL) == []

    await h.trading_state.set(TradingState.HALTED, reason="looking", actor="telegram:1")
    await h.trading_state.set(TradingState.ACTIVE, reason="fixed", actor="telegram:1")
    [recovered] = recoveries(h)
    assert (recovered.symbol, recovered.actor) == (SYMBOL, "telegram:1")
    await h.candle(2, 100, 100.2, 99.9, 100)  # entered
    await h.candle(3, 100, 100.2, 99.9, 100)  # filled
    assert [f.side for f in filled(h, SYMBOL)] == ["buy"]  # the entry

    assert h.engine.health.fail(SYMBOL, at(4), "x").strikes == 1  # the resume forgave the past


async def test_a_restart_keeps_the_symbol_failed(
    st_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = BreaksOn(entries=entries_everywhere(10), breaks={(SYMBOL, at(0))})
    h = await Harness(st_settings, provider, persist=True).start()
    await h.candle(0, 100, 100.2, 99.8, 100)

    bus = EventBus()
    again = build_engine(
        clean_settings(monkeypatch, tmp_path),
        clock=h.clock,
        bus=bus,
        exchange=h.paper,
        trading_state=TradingStateService(h.storage.state, bus, h.clock),
        provider=ScriptedProvider(entries=entries_everywhere(10)),  # no bug any more
        state=h.storage.state,
    )
    await again.start()
    failure = again.health.blocks(SYMBOL)
    assert failure is not None and failure.until_ms == at(0) + DAY * HOUR_MS
    h.clock.advance_to(at(1) + HOUR_MS)
    await again.on_candle(
        SYMBOL, Candle(ts_ms=at(1), open=100, high=100.2, low=99.9, close=100, volume=1)
    )
    assert again.decided[SYMBOL] == at(1)
    assert again.trades == {}  # the entry signal is not taken: still waiting out its day


async def test_qt_state_resume_while_active_clears_the_pause(st_settings: Settings) -> None:
    """Trading never stopped (only one symbol paused): `qt state resume` from another process
    on the same database still counts as the operator's resume, seen at the next read."""
    provider = BreaksOn(entries=entries_everywhere(10), breaks={(SYMBOL, at(0))})
    h = await Harness(st_settings, provider).start()
    await h.candle(0, 100, 100.2, 99.8, 100)
    assert h.engine.health.blocks(SYMBOL) is not None
    assert await h.trading_state.current() is TradingState.ACTIVE  # read, as the console does

    cli = TradingStateService(h.storage.state, EventBus(), h.clock)  # `qt state resume`
    assert await cli.set(TradingState.ACTIVE, reason="bug fixed", actor="cli") is False
    assert await h.trading_state.current() is TradingState.ACTIVE  # the process reads it
    [recovered] = recoveries(h)
    assert (recovered.symbol, recovered.actor) == (SYMBOL, "another process")
    assert await h.trading_state.current() is TradingState.ACTIVE  # seen once, not again
    assert len(recoveries(h)) == 1
    await h.candle(1, 100, 100.2, 99.9, 100)
    await h.candle(2, 100, 100.2, 99.9, 100)
    assert [f.side for f in filled(h, SYMBOL)] == ["buy"]


@dataclass
class ExcludedBreaksOn(BreaksOn):
    """Computes fine; its ``excluded`` (the members left out) raises on the broken candles."""

    computed_to: int = 0

    def compute(self, series: CandleSeries) -> SignalFrame:
        self.computed_to = int(series.ts_ms[-1])
        return ScriptedProvider.compute(self, series)

    def excluded(self, symbol: str) -> dict[str, str]:
        if (symbol, self.computed_to) in self.breaks:
            raise KeyError("member 'xgb' has no health record")
        return {}


@pytest.mark.parametrize("offload", [False, True])
async def test_a_provider_failing_to_say_who_it_left_out_still_protects_the_trade(
    st_settings: Settings, offload: bool
) -> None:
    """As above, with the bug in ``excluded`` (or a compute in the worker thread that raises):
    the symbol fails closed and the watched stop still exits."""
    kind = ExcludedBreaksOn if not offload else BreaksOn
    provider = kind(entries={at(0): 1}, breaks={(SYMBOL, at(i)) for i in range(2, 9)})
    h = await Harness(st_settings, provider, paper_class=NoStopPaper).start()
    h.engine.signals.offload = offload  # a running process computes in a worker thread
    await h.candle(0, 100, 100.2, 99.8, 100)
    await h.candle(1, 100, 100.2, 99.9, 100)
    await h.candle(2, 100, 100.2, 99.9, 100)  # raises
    assert [(f.symbol, f.strikes) for f in failures(h)] == [(SYMBOL, 1)]
    await h.candle(3, 99, 99, 97.5, 97.8)  # through the watched stop, while still raising
    await h.candle(4, 97.8, 98, 97.5, 97.6)
    [trade] = h.engine.closed_trades
    assert trade.exit_reason == "SL"


async def test_a_cycle_cancelled_while_its_signals_compute_is_decided_again_after_a_restart(
    st_settings: Settings,
) -> None:
    """A stop while the worker thread computes the candle's signals: that candle was not
    decided (its exits not run), so the restart's repeated candle is decided, not skipped."""
    import asyncio
    import threading

    release = threading.Event()

    @dataclass
    class Blocking(ScriptedProvider):
        def compute(self, series: CandleSeries) -> SignalFrame:
            if int(series.ts_ms[-1]) == at(1):
                release.wait(5)
            return super().compute(series)

    h = await Harness(st_settings, Blocking(entries={at(0): 1}), persist=True).start()
    h.engine.signals.offload = True
    await h.candle(0, 100, 100.2, 99.8, 100)
    h.clock.advance_to(at(1) + HOUR_MS)
    candle = Candle(ts_ms=at(1), open=100, high=100, low=99, close=99.5, volume=1)
    cycle = asyncio.create_task(h.engine.on_candle(SYMBOL, candle))
    await asyncio.sleep(0.05)
    cycle.cancel()  # the process stops meanwhile
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await cycle
    await h.engine.stop()  # the final save
    assert h.engine.decided[SYMBOL] == at(0)
