"""``QT__TRADING__UNKNOWN_POSITIONS=adopt``: a venue position the bot did not open is taken over
as its own trade with a stop at the venue, stored and managed like any other; when the stop
cannot be placed it is handled as ``reduce`` handles it (issue 17)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.trading import build_engine
from core.domain.enums import OrderType, PositionSide, TradingState
from core.domain.events import AlertRaised, ExitPlanned, OrderCanceled, TradeClosed
from core.domain.orders import Order, OrderRequest
from core.errors import OrderRejected, TemporaryError
from core.market.rules_book import RulesBook
from core.ports import StateKey, TradeRepo
from core.services.adoption import ADOPT_PROVIDER
from core.services.bus import EventBus
from core.services.commands import CommandCore
from core.services.market import MarketService
from core.services.reconciliation import reconcile_positions
from core.services.trading_state import TradingStateService
from tests.unit.services.engine_harness import Harness, ScriptedProvider, _NoFeed
from tests.unit.services.test_reconciliation import bought_by_hand

SOL = "SOL/USDT"


async def by_hand(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Harness:
    """10 SOL bought by hand at about 20 on the paper venue, the engine's trades stored."""
    h = await bought_by_hand(monkeypatch, tmp_path)
    await h.engine.stop()
    # a process that trades SOL: its candles fed, so a position in it may be adopted
    h.settings = h.settings.with_market([*h.settings.trading.symbols, SOL], "1h")
    restart(h)  # the same venue and database, an engine that persists its trades
    return h


def restart(h: Harness, book: RulesBook | None = None, trades: TradeRepo | None = None) -> None:
    """The process restarts on the same venue and database: a fresh bus, state service,
    engine and market loop (the old ones hear nothing more); ``book``: the venue's rules,
    ``trades``: where closed trades are recorded (as a running process does)."""
    h.bus = EventBus(sink=h.storage.events.append)
    h.bus.subscribe("*", h._record, name="harness.record")
    h.trading_state = TradingStateService(h.storage.state, h.bus, h.clock)
    h.engine = build_engine(
        h.settings,
        clock=h.clock,
        bus=h.bus,
        exchange=h.paper,
        trading_state=h.trading_state,
        provider=ScriptedProvider(),
        state=h.storage.state,
        book=book,
        trades=trades,
    )
    h.market = MarketService(
        feed=_NoFeed(),
        clock=h.clock,
        candles=None,
        bus=h.bus,
        source="test",
        timeframe="1h",
        venue=h.paper,
    )
    h.market.on_candle(h.engine.on_candle, before_fills=h.engine.before_fills)


async def reconcile(h: Harness) -> str:
    return await reconcile_positions(
        await h.engine.unknown_positions(),
        rule="adopt",
        trading_state=h.trading_state,
        bus=h.bus,
        clock=h.clock,
        adopt=h.engine.adopt,
    )


async def sol_orders(h: Harness) -> list[Order]:
    return await h.paper.fetch_open_orders(SOL)


def stops(orders: list[Order]) -> list[Order]:
    return [o for o in orders if o.request.type is OrderType.STOP_MARKET]


async def test_an_unknown_position_is_adopted_with_a_stop_at_the_venue_and_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await by_hand(monkeypatch, tmp_path)
    await h.engine.start()
    said = await reconcile(h)

    assert "adopted as its own trades" in said and "SOL/USDT long 10" in said
    assert await h.trading_state.current() is TradingState.ACTIVE  # nothing left unexplained
    trade = h.engine.trades[SOL]
    assert (trade.side, trade.amount, trade.provider) == (PositionSide.LONG, 10, ADOPT_PROVIDER)
    assert trade.entry_price == D("20.004")  # the venue's entry price (the hand fill)
    assert trade.plan is not None and trade.plan.stop is not None
    [stop] = stops(await sol_orders(h))
    assert stop.request.reduce_only and stop.request.amount == 10
    assert stop.request.stop_price == trade.plan.stop.price < trade.entry_price
    assert stop.client_order_id.endswith("-as0")  # a-prefixed: never a candle trade's id
    assert len(await sol_orders(h)) == 1 + len(trade.plan.legs)  # and the take-profits
    [planned] = h.of(ExitPlanned)
    assert isinstance(planned, ExitPlanned) and planned.reason == "adopted from the venue"
    [alert] = h.of(AlertRaised)
    assert isinstance(alert, AlertRaised) and alert.severity == "warning"
    assert alert.title == "positions adopted"
    topics = {e.topic for e in await h.storage.events.list_events()}  # the audit trail
    assert {"exits.planned", "alert.raised", "order.submitted"} <= topics
    assert "adopted" in (await h.storage.state.get(StateKey.ENGINE_TRADES) or "")
    core = CommandCore(SimpleNamespace(engine=h.engine, quote="USDT"))  # type: ignore[arg-type]
    status = (await core.positions()).text()
    assert "SOL/USDT long 10" in status and "(adopted from the venue)" in status
    assert "stop 19.61" in status


async def test_after_a_restart_the_adopted_trade_is_the_engines_and_leaves_by_its_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await by_hand(monkeypatch, tmp_path)
    await h.engine.start()
    await reconcile(h)
    before = await sol_orders(h)
    stop_price = h.engine.trades[SOL].plan.stop.price  # type: ignore[union-attr]

    await h.engine.stop()
    restart(h)
    await h.engine.start()
    assert await h.engine.unknown_positions() == []  # not unknown: not adopted twice
    assert await reconcile(h) == ""
    assert h.engine.trades[SOL].provider == ADOPT_PROVIDER
    assert [o.client_order_id for o in await sol_orders(h)] == [
        o.client_order_id for o in before
    ]  # no second stop, no second ladder
    assert len(h.of(AlertRaised)) == 1  # the adoption's; nothing said after the restart

    low = float(stop_price) - 0.5
    await h.candle(2, 20, 20.1, low, low + 0.1, symbol=SOL)  # through the stop
    [closed] = h.of(TradeClosed)
    assert isinstance(closed, TradeClosed) and closed.provider == ADOPT_PROVIDER
    assert closed.exit_reason == "SL" and closed.amount == 10
    assert SOL not in h.engine.trades and await sol_orders(h) == []  # nothing left behind
    assert await h.paper.fetch_positions() == []


async def test_a_price_past_the_planned_stop_puts_the_stop_as_far_beyond_the_price(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await by_hand(monkeypatch, tmp_path)
    await h.engine.start()
    h.engine.prices[SOL] = D("19")  # below where the plan's stop would be (19.61)
    await reconcile(h)
    plan = h.engine.trades[SOL].plan
    assert plan is not None and plan.stop is not None
    distance = D("20.004") - D("19.61")  # the Exit Brain's distance from the entry
    assert plan.stop.price == D("18.60") == (D("19") - distance).quantize(D("0.01"), "ROUND_FLOOR")
    [stop] = stops(await sol_orders(h))
    assert stop.request.stop_price == D("18.60")
    assert plan.initial_stop == D("19.61")  # its risk unit stays the planned one


@pytest.mark.parametrize("failure", ["refused", "in doubt"])
async def test_a_stop_that_cannot_be_placed_falls_back_to_reduce_with_an_alert(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failure: str
) -> None:
    h = await by_hand(monkeypatch, tmp_path)
    await h.engine.start()
    create = h.paper.create_order

    async def no_stop(request: OrderRequest, *args: Any, **kwargs: Any) -> Order:
        if request.type is not OrderType.STOP_MARKET:
            return await create(request, *args, **kwargs)
        if failure == "refused":
            raise OrderRejected("stop orders are not supported for this symbol")
        await create(request, *args, **kwargs)  # the hard case: it is at the venue
        raise TemporaryError("timed out")

    monkeypatch.setattr(h.paper, "create_order", no_stop)
    said = await reconcile(h)

    assert await h.trading_state.current() is TradingState.REDUCING
    assert "not adopted" in said and "SOL/USDT long 10" in said
    [alert] = h.of(AlertRaised)
    assert isinstance(alert, AlertRaised) and alert.severity == "critical"
    assert "stop" in alert.detail
    assert SOL not in h.engine.trades  # nothing of it kept
    assert await sol_orders(h) == []  # no take-profit placed, the stop in doubt canceled:
    canceled = [e.client_order_id for e in h.of(OrderCanceled)]  # type: ignore[attr-defined]
    assert canceled == ([] if failure == "refused" else ["qt-SOL-4uwdq-s6k880-as0"])
    assert "SOL" not in (await h.storage.state.get(StateKey.ENGINE_TRADES) or "")
    await h.engine.stop()
    restart(h)
    await h.engine.start()
    assert [p.symbol for p in await h.engine.unknown_positions()] == [SOL]  # asked again


async def test_a_position_the_engine_holds_a_trade_against_is_not_adopted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One trade per symbol: the other side of an adopted (or any) trade is left to reduce."""
    h = await by_hand(monkeypatch, tmp_path)
    await h.engine.start()
    [held] = await h.engine.unknown_positions()
    assert await h.engine.adopt(held) == ""
    short = dataclasses.replace(held, side=PositionSide.SHORT)
    assert await h.engine.adopt(short) == "the engine holds a long trade in SOL/USDT already"
    said = await reconcile_positions(
        [short],
        rule="adopt",
        trading_state=h.trading_state,
        bus=h.bus,
        clock=h.clock,
        adopt=h.engine.adopt,
    )
    assert "not adopted: SOL/USDT short: the engine holds a long trade" in said
    assert await h.trading_state.current() is TradingState.REDUCING
    assert h.engine.trades[SOL].side is PositionSide.LONG  # the adopted trade untouched


async def test_a_stop_beyond_the_liquidation_price_is_no_plan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await by_hand(monkeypatch, tmp_path)
    await h.engine.start()
    [held] = await h.engine.unknown_positions()
    near = dataclasses.replace(held, liquidation_price=D("19.8"))  # above the stop (19.61)
    why = await h.engine.adopt(near)
    assert why == (
        "no exit plan fits it: its stop 19.61 would sit beyond the venue's liquidation price 19.8"
    )
    assert SOL not in h.engine.trades and await sol_orders(h) == []
    assert await h.engine.adopt(dataclasses.replace(held, liquidation_price=D("15"))) == ""


async def test_a_refused_flatten_keeps_the_adopted_trade_and_its_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A trade taken over only to be closed (a flatten's) is forgotten when its market exit
    is refused; an adopted trade is managed like an own one: kept, its stop still working."""
    h = await by_hand(monkeypatch, tmp_path)
    await h.engine.start()
    await reconcile(h)
    create = h.paper.create_order

    async def no_market(request: OrderRequest, *args: Any, **kwargs: Any) -> Order:
        if request.type is OrderType.MARKET:
            raise OrderRejected("market orders are disabled")
        return await create(request, *args, **kwargs)

    monkeypatch.setattr(h.paper, "create_order", no_market)
    cut = await h.engine.reduce_exposure(0.0, "test flatten")
    assert cut.closed == () and SOL in cut.not_closed[0]
    assert h.engine.trades[SOL].provider == ADOPT_PROVIDER
    assert len(stops(await sol_orders(h))) == 1
