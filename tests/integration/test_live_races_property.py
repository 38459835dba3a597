"""The live path against a venue that fills on its own, races our cancels, times out and
survives our restarts: hypothesis draws the interleavings.

``RacyVenue`` owns the truth. It fills resting orders whenever its price moves, between our
polls, like a real exchange (stops first, then take-profits; market orders at once;
reduce-only orders never beyond the position, their rest expired; a reduce-only order is
refused when flat). Requests may time out before or after the venue acted on them. The engine
trades it through the same wiring as ``qt run`` live: candles for decisions, ``sync_with_venue``
for what the venue did, a restart on the same database now and then.

After every step: the venue never holds more than one entry's worth (no duplicate exposure)
and never a short. After two syncs in a row without a fault: the engine's books equal the
venue's (its open amount is the venue's position) and a position has a stop covering it or a
market exit working.
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal as D
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.trading import build_engine
from core.clock import SimClock
from core.config import Settings, load_settings
from core.domain.enums import OrderStatus, OrderType, Side
from core.domain.market import Candle
from core.domain.orders import Order, OrderRequest
from core.errors import OrderRejected, TemporaryError
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.fakes import FakeExchange
from tests.unit.services.engine_harness import SYMBOL, T0_MS, ScriptedProvider, at

ZERO = D(0)


class RacyVenue(FakeExchange):
    """A venue that fills by itself as its price moves (see module docstring)."""

    def __init__(self) -> None:
        super().__init__(balances={"USDT": D(10_000)}, clock=SimClock(T0_MS), track_positions=True)
        self.price = D(100)
        self.timeout_after_accept = False  # the next create_order acts, then times out
        self.max_position = ZERO

    def held(self) -> D:
        return sum((p.amount for p in self.positions if p.symbol == SYMBOL), ZERO)

    async def create_order(self, request: OrderRequest) -> Order:
        if request.reduce_only and request.client_order_id not in self.orders and not self.held():
            self._enter("create_order", request)
            raise OrderRejected(f"{self.name}: ReduceOnly Order is rejected")
        order = await super().create_order(request)
        if request.type is OrderType.MARKET and order.is_open:
            self._fill_capped(order.client_order_id, self.price)
        if self.timeout_after_accept:
            self.timeout_after_accept = False
            raise TemporaryError(f"{self.name}: request timed out (after the venue acted)")
        return self.orders[request.client_order_id]

    def move(self, price: D) -> None:
        """Trade at ``price``: fill what it reaches, stops first."""
        self.price = price
        rank = {OrderType.MARKET: 0, OrderType.STOP_MARKET: 1, OrderType.LIMIT: 2}
        for order in sorted(self.orders.values(), key=lambda o: rank[o.request.type]):
            current = self.orders[order.client_order_id]
            if current.is_open and _reached(current.request, price):
                level = current.request.price or current.request.stop_price or price
                self._fill_capped(current.client_order_id, level)

    def _fill_capped(self, cid: str, price: D) -> None:
        order = self.orders[cid]
        amount = order.remaining
        if order.request.reduce_only:
            amount = min(amount, self.held())
        if amount > 0:
            self.script_fill(cid, price, amount=amount, fee=amount * price / 1000)
        order = self.orders[cid]
        if order.is_open and order.request.reduce_only and not self.held():
            self.orders[cid] = order.with_(status=OrderStatus.CANCELED, reason="reduce-only")
        self.max_position = max(self.max_position, self.held())


def _reached(req: OrderRequest, price: D) -> bool:
    if req.type is OrderType.MARKET:
        return True
    if req.type is OrderType.STOP_MARKET:
        assert req.stop_price is not None
        return price <= req.stop_price if req.side is Side.SELL else price >= req.stop_price
    assert req.price is not None
    return price >= req.price if req.side is Side.SELL else price <= req.price


def _settings(tmp: Path) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            del os.environ[name]
    os.chdir(tmp)
    return load_settings()


class Process:
    """The engine of a live `qt run` (no market fills: the venue reports through the sync)."""

    def __init__(self, settings_: Settings, venue: RacyVenue, storage: MemoryStorage) -> None:
        self.settings, self.venue, self.storage = settings_, venue, storage
        # An entry every third candle, an exit signal on the next but one: cancels of the
        # ladder race its fills often.
        self.provider = ScriptedProvider(
            entries={at(i): 1 for i in range(0, 40, 3)},
            exit_long={at(i) for i in range(2, 40, 3)},
        )
        self.engine = self._build()

    def _build(self) -> Engine:
        bus = EventBus(sink=self.storage.events.append)
        clock = self.venue.clock
        return build_engine(
            self.settings,
            clock=clock,
            bus=bus,
            exchange=self.venue,
            trading_state=TradingStateService(self.storage.state, bus, clock),
            provider=self.provider,
            state=self.storage.state,
        )

    async def restart(self) -> None:
        await self.engine.stop()
        self.engine = self._build()
        await self.engine.start()


ACTIONS = st.one_of(
    st.tuples(st.just("move"), st.sampled_from([95, 97.5, 98.5, 100, 101, 102, 103.5, 106])),
    st.tuples(st.just("sync"), st.none()),
    st.tuples(st.just("candle"), st.none()),
    st.tuples(
        st.just("fault"),
        st.sampled_from(["create_before", "create_after", "cancel", "fetch"]),
    ),
    st.tuples(st.just("restart"), st.none()),
)


async def _scenario(tmp: Path, actions: list[tuple[str, object]]) -> None:
    venue = RacyVenue()
    process = Process(_settings(tmp), venue, MemoryStorage())
    await process.engine.start()
    candle_i = 0
    clean_syncs = 0
    armed = False
    for kind, arg in actions:
        if kind == "move":
            venue.move(D(str(arg)))
        elif kind == "sync":
            armed = any(venue._errors.values()) or venue.timeout_after_accept
            await process.engine.sync_with_venue()
        elif kind == "candle":
            venue.clock.advance_to(at(candle_i) + 3_600_000)
            p = float(venue.price)
            candle = Candle(ts_ms=at(candle_i), open=p, high=p, low=p, close=p, volume=1)
            await process.engine.on_candle(SYMBOL, candle)
            candle_i += 1
        elif kind == "restart":
            await process.restart()
        elif arg == "create_before":
            venue.fail_next("create_order", TemporaryError("timed out before the venue"))
        elif arg == "create_after":
            venue.timeout_after_accept = True
        else:
            venue.fail_next(f"{arg}_order", TemporaryError("timed out"))
        if kind in ("sync", "candle"):  # a fault hits the next call or nothing
            for queue in venue._errors.values():
                queue.clear()
            venue.timeout_after_accept = False
        # No duplicate exposure, ever: one entry of 50 at most, never short.
        assert venue.max_position <= D(50), venue.max_position
        assert not any(p.side.value == "short" for p in venue.positions)
        # Once the venue has been asked twice in a row (nothing happening in between), the
        # engine knows all it did and has placed what the position needs.
        # A sync counts as quiet when no fault was waiting to hit it.
        clean_syncs = clean_syncs + 1 if kind == "sync" and not armed else 0
        if clean_syncs >= 2:
            _assert_converged(process.engine, venue)


def _assert_converged(engine: Engine, venue: RacyVenue) -> None:
    held = venue.held()
    trade = engine.trades.get(SYMBOL)
    if held:
        assert trade is not None and trade.plan is not None, (
            "the venue holds a position the engine lost"
        )
        assert trade.plan.remaining == held, (trade.plan.remaining, held)
        open_orders = [o for o in venue.orders.values() if o.is_open and o.request.reduce_only]
        stops = sum(
            (o.remaining for o in open_orders if o.request.type is OrderType.STOP_MARKET), ZERO
        )
        exiting = any(o.request.type is OrderType.MARKET for o in open_orders)
        assert exiting or stops >= held, (held, open_orders)
    elif trade is not None and trade.plan is not None and not trade.finished:
        assert trade.plan.remaining == 0 or trade.amount == 0, (trade.plan, held)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(ACTIONS, min_size=10, max_size=50))
def test_property_the_engines_books_converge_to_the_venues(
    tmp_path: Path, actions: list[tuple[str, object]]
) -> None:
    cwd = os.getcwd()
    try:
        asyncio.run(_scenario(tmp_path, actions))
    finally:
        os.chdir(cwd)
