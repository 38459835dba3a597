"""Halts and resumes at any moment of a trade: protection is never refused, what a halt held
back comes back on resume, and pending entries are canceled.

Harness defaults (see ``engine_harness``): entries decided at 100 are 50 units, filled at 100.02;
the plan is TP1 101.97, TP2 103.27, TP3 105.22 and the stop 98.02.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import Settings
from core.domain.enums import OrderType, TradingState
from core.domain.events import OrderCanceled, OrderDenied, OrderFilled
from core.domain.market import Candle
from core.domain.orders import Fill
from core.exchange.paper import PaperExchange
from core.ports import StateKey
from core.services.bus import EventBus
from core.services.trading_state import TradingStateService
from tests.unit.services.engine_harness import SYMBOL, Harness, ScriptedProvider, at, clean_settings


@pytest.fixture
def st_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    return clean_settings(monkeypatch, tmp_path)


async def set_elsewhere(h: Harness, state: TradingState) -> None:
    """Change the state as another process on the same database does (``qt state halt``)."""
    await TradingStateService(h.storage.state, EventBus(), h.clock).set(
        state, reason="operator", actor="cli"
    )


def kinds(orders: list) -> list[tuple[str, D | None, D]]:  # type: ignore[type-arg]
    return sorted(
        (o.request.type.value, o.request.price or o.request.stop_price, o.remaining) for o in orders
    )


class HaltsAsItFills(PaperExchange):
    """A venue that fills the waiting entry in the very moment an operator halts (live, a
    market entry fills as it is sent: a halt can always come just too late)."""

    halt_on_next_candle = False

    async def on_candle(self, symbol: str, candle: Candle) -> list[Fill]:
        if self.halt_on_next_candle:
            self.halt_on_next_candle = False
            await self._storage.state.set(StateKey.TRADING_STATE, TradingState.HALTED.value)
        return await super().on_candle(symbol, candle)


async def halted_as_the_entry_fills(settings_: Settings) -> Harness:
    h = Harness(settings_, ScriptedProvider(entries={at(0): 1}), paper_class=HaltsAsItFills)
    await h.start()
    await h.candle(0, 100, 100.2, 99.8, 100)  # the entry is sent
    assert isinstance(h.paper, HaltsAsItFills)
    h.paper.halt_on_next_candle = True
    await h.candle(1, 100, 100.2, 99.9, 100)  # the venue fills it as the halt comes in
    return h


async def test_an_entry_filling_during_a_halt_gets_its_stop_and_the_stop_works(
    st_settings: Settings,
) -> None:
    h = await halted_as_the_entry_fills(st_settings)

    assert kinds(await h.open_orders()) == [("stop_market", D("98.02"), D(50))]
    denied = [e for e in h.of(OrderDenied) if isinstance(e, OrderDenied)]
    assert [e.reason for e in denied] == ["halted"] * 3  # the three take-profits wait

    await h.candle(2, 99, 99, 95, 95.5)  # through the stop
    [trade] = h.engine.closed_trades
    assert trade.exit_reason == "SL"
    assert await h.paper.fetch_positions() == []
    assert -trade.pnl <= D(10_000) * D("0.02")  # the risk budget, not the -4.5 % drop


async def test_resume_places_the_take_profits_the_halt_held_back(st_settings: Settings) -> None:
    h = await halted_as_the_entry_fills(st_settings)
    await h.candle(2, 100, 100.2, 99.9, 100)  # still halted: nothing more goes out
    assert len(await h.open_orders()) == 1

    await set_elsewhere(h, TradingState.ACTIVE)
    await h.candle(3, 100, 100.2, 99.9, 100)  # the first cycle after the resume

    assert kinds(await h.open_orders()) == [
        ("limit", D("101.97"), D(15)),
        ("limit", D("103.27"), D(15)),
        ("limit", D("105.22"), D(20)),
        ("stop_market", D("98.02"), D(50)),
    ]
    await h.candle(4, 100, 103.5, 99.9, 103)  # TP1 and TP2; the stop follows
    assert kinds(await h.open_orders()) == [
        ("limit", D("105.22"), D(20)),
        ("stop_market", D("101.97"), D(20)),
    ]


async def test_a_halt_from_another_process_withdraws_the_waiting_entry_before_it_fills(
    st_settings: Settings,
) -> None:
    h = await Harness(st_settings, ScriptedProvider(entries={at(0): 1})).start()
    await h.candle(0, 100, 100.2, 99.8, 100)  # the entry is sent; it fills on the next open
    await set_elsewhere(h, TradingState.HALTED)  # `qt state halt`: nobody here has read it
    await h.candle(1, 100, 100.2, 99.9, 100)
    assert h.of(OrderFilled) == []
    assert await h.paper.fetch_positions() == []
    [canceled] = [e for e in h.of(OrderCanceled) if isinstance(e, OrderCanceled)]
    assert canceled.reason == "halted"


async def test_a_halt_cancels_the_entry_still_waiting_for_its_fill(st_settings: Settings) -> None:
    h = await Harness(st_settings, ScriptedProvider(entries={at(0): 1})).start()
    await h.candle(0, 100, 100.2, 99.8, 100)
    [entry] = await h.open_orders()

    await h.trading_state.set(TradingState.HALTED, reason="/halt", actor="test")

    canceled = [e for e in h.of(OrderCanceled) if isinstance(e, OrderCanceled)]
    assert [(e.client_order_id, e.reason) for e in canceled] == [(entry.client_order_id, "halted")]
    await h.candle(1, 100, 100.2, 99.9, 100)
    assert h.of(OrderFilled) == []
    assert h.engine.trades == {}
    assert await h.paper.fetch_positions() == []


async def test_a_market_exit_refused_once_is_sent_again(st_settings: Settings) -> None:
    """The exit signal's market order is denied (a state no order passes: here a hand-edited
    database, which reads as HALTED... but a halt lets exits through, so we make the venue
    refuse it instead); the plan waits on a market exit that never went out, and the next
    cycle sends it again."""
    h = await Harness(st_settings, ScriptedProvider(entries={at(0): 1}, exit_long={at(2)})).start()
    await h.candles([(0, 100, 100.2, 99.8, 100), (1, 100, 100.2, 99.9, 100)])
    original = h.paper.create_order

    async def refuse_market(request):  # type: ignore[no-untyped-def]
        if request.type is OrderType.MARKET:
            from core.errors import OrderRejected

            raise OrderRejected("venue busy")
        return await original(request)

    h.paper.create_order = refuse_market  # type: ignore[method-assign]
    await h.candle(2, 100, 100.2, 99.9, 100)  # the exit signal: the market exit is refused
    assert [o.request.type for o in await h.open_orders()] == [OrderType.STOP_MARKET]
    h.paper.create_order = original  # type: ignore[method-assign]

    await h.candle(3, 100, 100.2, 99.9, 100)  # the next cycle sends it again
    assert [o.request.type for o in await h.open_orders()] == [
        OrderType.STOP_MARKET,
        OrderType.MARKET,
    ]
    await h.candle(4, 100, 100.2, 99.9, 100)
    [trade] = h.engine.closed_trades
    assert trade.exit_reason == "SIGNAL"
    assert await h.open_orders() == []


# --- the property: protection at every candle, whatever the sequence of states ---------------

STATES = [None, TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[tuple[float, float, float, float]], dict, list]:  # type: ignore[type-arg]
    """Mild candles (positions live for a while and reach take-profits now and then), an entry
    on the first candle and maybe later ones, exit signals, and a state change (in this
    process or another one) before any candle."""
    n = draw(st.integers(6, 20))
    rows, close = [], 100.0
    for _ in range(n):
        open_ = close * (1 + draw(st.floats(-0.005, 0.005)))
        close = open_ * (1 + draw(st.floats(-0.025, 0.025)))
        high = max(open_, close) * (1 + draw(st.floats(0, 0.015)))
        low = min(open_, close) * (1 - draw(st.floats(0, 0.015)))
        rows.append((round(open_, 2), round(high, 2), round(low, 2), round(close, 2)))
    entries = {0} | draw(st.sets(st.integers(1, n - 1), max_size=3))
    exits = draw(st.sets(st.integers(1, n - 1), max_size=2))
    changes = draw(
        st.lists(st.tuples(st.sampled_from(STATES), st.booleans()), min_size=n, max_size=n)
    )
    changes[0] = (None, False)  # the first entry is decided; anything may happen after
    return rows, {"entries": entries, "exits": exits}, changes


def _fixed(rows: list[tuple[float, float, float, float]]) -> list[tuple[float, ...]]:
    out = []
    for o, h, lo, c in rows:
        out.append((o, max(h, o, c), min(lo, o, c), c))
    return out


async def _run(settings_: Settings, scenario: tuple) -> None:  # type: ignore[type-arg]
    rows, signals, changes = scenario
    provider = ScriptedProvider(
        entries={at(i): 1 for i in signals["entries"]},
        exit_long={at(i) for i in signals["exits"]},
    )
    h = await Harness(settings_, provider).start()
    allowed_for = 0  # cycles in a row in which trading could reduce
    for i, (row, (state, in_process)) in enumerate(zip(_fixed(rows), changes, strict=True)):
        if state is not None:
            if in_process:
                await h.trading_state.set(state, reason="test", actor="test")
            else:
                await h.storage.state.set(StateKey.TRADING_STATE, state.value)
        await h.candle(i, *row)
        now = await h.trading_state.current()
        allowed_for = 0 if now is TradingState.HALTED else allowed_for + 1
        orders = await h.open_orders()
        for position in await h.paper.fetch_positions():
            stops = sum(
                (o.remaining for o in orders if o.request.type is OrderType.STOP_MARKET), D(0)
            )
            exiting = any(o.request.type is OrderType.MARKET for o in orders)
            assert exiting or stops >= position.amount, (i, position, orders)
        trade = h.engine.trades.get(SYMBOL)
        if trade is not None and trade.plan is not None and allowed_for >= 2:
            # One whole cycle after a resume, everything the plan holds is on the venue.
            assert not h.engine._exits.incomplete(trade), (i, trade.plan, trade.working)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenarios())
def test_property_no_position_is_ever_left_without_its_stop(
    st_settings: Settings,
    scenario: tuple,  # type: ignore[type-arg]
) -> None:
    asyncio.run(_run(st_settings, scenario))
