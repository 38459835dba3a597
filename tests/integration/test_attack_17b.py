"""Adversarial review of start-up reconciliation (``core.services.reconciliation``,
``Engine.unknown_positions``, ``TradingProcess.start``): what a restart finds at the venue,
what lifts the REDUCING it sets, and how the read of the venue's book fails."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.modes import build_run
from core.config import Settings, load_settings
from core.domain.enums import MarketType, PositionSide, TradingState
from core.domain.events import AlertRaised, Event
from core.domain.portfolio import Position
from core.errors import DependencyError, InvariantViolation, OrderRejected, TemporaryError
from core.ports import StateKey
from core.services.reconciliation import reconcile_positions, venue_positions
from storage import open_storage
from tests.integration.test_run_mode import market_data  # noqa: F401  (the fixture)
from tests.unit.services.engine_harness import Harness, ScriptedProvider, clean_settings
from tests.unit.services.test_risk_limits import BTC_LONG, DAY_MS, World

ETH_BY_HAND = Position(
    symbol="ETH/USDT",
    market_type=MarketType.SPOT,
    side=PositionSide.LONG,
    amount=D(2),
    entry_price=D(2_000),
    opened_ms=BTC_LONG.opened_ms,
    updated_ms=BTC_LONG.opened_ms,
)


async def reconcile(w: World, *positions: Position) -> str:
    return await reconcile_positions(
        positions, rule="reduce", trading_state=w.trading_state, bus=w.bus, clock=w.clock
    )


def alerts(w: World) -> list[AlertRaised]:
    return [e for e in w.events if isinstance(e, AlertRaised)]


# --- attack 1: the engine's trade exists, the venue's position differs -----------------------


async def engine_long(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Harness:
    """A process whose engine holds its own filled BTC long (50 units) on paper."""
    provider = ScriptedProvider(entries={1_704_067_200_000: 1})
    h = await Harness(clean_settings(monkeypatch, tmp_path), provider).start()
    await h.candle(0, 100, 100.5, 99.5, 100)
    await h.candle(1, 100, 100.5, 99.5, 100)  # the entry fills
    [held] = await h.paper.fetch_positions()
    assert held.symbol == "BTC/USDT" and held.side is PositionSide.LONG
    assert h.engine.trades["BTC/USDT"].side is PositionSide.LONG
    return h


async def test_attack_a_venue_position_on_the_other_side_of_the_engines_trade_is_unknown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Our long was closed by hand and a short opened in the same symbol (or a hedge-mode
    short beside it): keyed by symbol only, the short was explained by our long and
    reconciliation said nothing. The engine did not open it: it is unknown."""
    h = await engine_long(monkeypatch, tmp_path)
    [held] = await h.paper.fetch_positions()
    short = dataclasses.replace(held, side=PositionSide.SHORT)

    async def venue() -> list[Position]:
        return [short]

    monkeypatch.setattr(h.paper, "fetch_positions", venue)
    assert await h.engine.unknown_positions() == [short]


async def test_attack_the_engines_own_side_is_still_not_unknown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await engine_long(monkeypatch, tmp_path)
    assert await h.engine.unknown_positions() == []


async def test_attack_a_venue_position_much_larger_than_the_engines_trade_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await engine_long(monkeypatch, tmp_path)
    [held] = await h.paper.fetch_positions()
    bigger = dataclasses.replace(held, amount=held.amount * 10)

    async def venue() -> list[Position]:
        return [bigger]

    monkeypatch.setattr(h.paper, "fetch_positions", venue)
    assert await h.engine.unknown_positions() == [bigger]


# --- attack 2: restarts, resumes, halts --------------------------------------------------------


async def test_attack_reduced_then_resumed_then_restarted_with_the_position_is_reported_again() -> (
    None
):
    w = World()
    await reconcile(w, ETH_BY_HAND)
    assert await w.trading_state.current() is TradingState.REDUCING
    await w.trading_state.set(TradingState.ACTIVE, reason="/resume by op", actor="telegram:1")
    again = w.restart()
    said = await reconcile(again, ETH_BY_HAND)
    assert await again.trading_state.current() is TradingState.REDUCING
    assert "ETH/USDT long 2" in said
    [alert] = alerts(again)
    assert alert.severity == "critical"


async def test_attack_an_operator_halt_persisted_stays_halted_at_a_restart_with_a_position() -> (
    None
):
    w = World()
    await w.trading_state.set(TradingState.HALTED, reason="exchange incident", actor="cli")
    again = w.restart()
    said = await reconcile(again, ETH_BY_HAND)
    assert await again.trading_state.current() is TradingState.HALTED
    assert await again.trading_state.reason() == "exchange incident"
    assert "trading is halted" in said


# --- attack 3: what lifts REDUCING without an operator ------------------------------------------


async def test_attack_the_next_day_does_not_lift_a_daily_halt_over_an_unknown_position() -> None:
    """The daily loss limit halted trading (it remembers ACTIVE before it); the process
    restarts and finds a position nobody explains: reconciliation leaves the halt (right)
    and says trading stays halted until an operator resumes. At the next UTC day the limits
    restored ACTIVE, their halt looked untouched: the unknown position was forgotten and
    entries resumed without an operator."""
    w = World()
    w.positions = (BTC_LONG,)
    await w.candle()
    w.equity = D(9_000)
    await w.candle()
    assert await w.trading_state.current() is TradingState.HALTED  # the limits' own
    again = w.restart()
    again.positions = (BTC_LONG,)
    said = await reconcile(again, ETH_BY_HAND)
    assert "until an operator" in said
    again.later(DAY_MS)
    await again.candle()  # a new UTC day
    assert await again.trading_state.current() is not TradingState.ACTIVE


async def test_attack_a_daily_halt_on_top_of_reconciliations_reducing_restores_reducing() -> None:
    w = World()
    w.positions = (BTC_LONG,)
    await w.candle()
    await reconcile(w, ETH_BY_HAND)
    w.equity = D(9_000)
    await w.candle()
    assert await w.trading_state.current() is TradingState.HALTED
    w.later(DAY_MS)
    await w.candle()
    assert await w.trading_state.current() is TradingState.REDUCING
    assert "ETH/USDT" in await w.trading_state.reason()


# --- attack 4: the read of the venue's book ---------------------------------------------------


async def test_attack_a_read_that_fails_otherwise_fails_the_start_at_once() -> None:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    for error in (OrderRejected("auth refused"), InvariantViolation("corrupt")):

        async def read(error: Exception = error) -> list[Position]:
            raise error

        with pytest.raises(type(error)):
            await venue_positions(read, sleep=sleep)
    assert slept == []  # not a venue that cannot answer: not asked again


async def test_attack_no_pauses_is_one_try() -> None:
    tries: list[int] = []

    async def read() -> list[Position]:
        tries.append(1)
        raise TemporaryError("down")

    with pytest.raises(DependencyError, match=r"1 tries, the last: down"):
        await venue_positions(read, pauses_s=())
    assert tries == [1]

    async def fine() -> list[Position]:
        return [ETH_BY_HAND]

    assert await venue_positions(fine, pauses_s=()) == [ETH_BY_HAND]


async def test_attack_a_stop_during_the_pause_cancels_the_reads() -> None:
    tries: list[int] = []

    async def read() -> list[Position]:
        tries.append(1)
        raise TemporaryError("down")

    task = asyncio.create_task(venue_positions(read, pauses_s=(30.0, 30.0)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert tries == [1]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tries == [1]


# --- attack 5: the paper process --------------------------------------------------------------


def paper_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings(app={"data_dir": str(tmp_path / "ud")}, trading={"symbols": ["BTC/USDT"]})


async def test_attack_a_paper_run_restarting_on_a_book_the_engine_forgot_starts_reducing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    market_data: tuple[object, object, int],  # noqa: F811
) -> None:
    """``qt run`` on paper keeps its book in the database: a paper position without a
    stored engine trade (its trades lost, a hand order) is reconciled like a live one.
    (``qt demo`` starts on a fresh database every time, book and trades together.)"""
    settings = paper_settings(tmp_path, monkeypatch)
    md, _fake, last_open = market_data
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        await storage.state.set(StateKey.PAPER_INITIALISED, "1")
        await storage.positions.upsert(
            dataclasses.replace(
                BTC_LONG, amount=D("0.05"), opened_ms=last_open, updated_ms=last_open
            )
        )
    finally:
        await storage.stop()
    process = await build_run(settings, market_data=md)  # type: ignore[arg-type]
    heard: list[Event] = []

    async def record(event: Event) -> None:
        heard.append(event)

    process.bus.subscribe("alert.raised", record)
    await process.start()
    try:
        assert await process.trading_state.current() is TradingState.REDUCING
    finally:
        await process.stop("test")
    [alert] = [e for e in heard if isinstance(e, AlertRaised)]
    assert "BTC/USDT long 0.05" in alert.detail
