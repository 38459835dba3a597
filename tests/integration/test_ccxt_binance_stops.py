"""Stops on Binance USD-M through the real ccxt.binance (issue 8, item 1), against tests/fakes_fapi.

ccxt 4.5.90 sends every linear conditional order to Binance's Algo Order service
(``/fapi/v1/algoOrder``), and reaches it again only with the ``trigger`` flag: asked on the
regular endpoint, a resting stop "does not exist". The adapter must find, cancel and list a
stop where ccxt put it, follow a triggered stop to the order that filled it, and take a
resubmitted id's -20132 "client algo id is duplicated" for the order that already exists.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from bot.trading import build_engine
from core.clock import SimClock
from core.config import load_settings
from core.domain.enums import MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.events import Event, OrderCanceled, OrderFilled
from core.domain.market import Candle
from core.domain.orders import OrderRequest
from core.domain.portfolio import Balance, Position
from core.exchange.ccxt import CcxtExchange
from core.services.bus import EventBus
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.fakes_fapi import T0_MS, FakeFapi, binance_usdm
from tests.unit.services.engine_harness import ScriptedProvider, at

SYMBOL = "BTC/USDT"
ALGO = "/fapi/v1/algoOrder"


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def fapi() -> AsyncIterator[FakeFapi]:
    async with FakeFapi(price="100") as fake:
        yield fake


Connect = Callable[[], CcxtExchange]


@pytest.fixture
async def connect(fapi: FakeFapi) -> AsyncIterator[Connect]:
    """Return a factory of fresh adapters on the fake venue (each one a restart: it remembers
    nothing); all are closed at the end."""
    made: list[CcxtExchange] = []

    def new() -> CcxtExchange:
        exchange = CcxtExchange(
            binance_usdm(fapi.base_url),
            clock=SimClock(T0_MS),
            market_type=MarketType.PERP,
            sleep=no_sleep,
            rng=random.Random(0),
        )
        made.append(exchange)
        return exchange

    yield new
    for exchange in made:
        await exchange.close()


@pytest.fixture
def venue(connect: Connect) -> CcxtExchange:
    return connect()


def stop(cid: str = "qt-BTC-1-s0", amount: str = "0.05") -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol=SYMBOL,
        side=Side.SELL,
        type=OrderType.STOP_MARKET,
        amount=Decimal(amount),
        stop_price=Decimal("95"),
        reduce_only=True,
        market_type=MarketType.PERP,
    )


def take_profit(cid: str = "qt-BTC-1-t1") -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol=SYMBOL,
        side=Side.SELL,
        type=OrderType.LIMIT,
        amount=Decimal("0.05"),
        price=Decimal("105"),
        reduce_only=True,
        market_type=MarketType.PERP,
    )


def paths(fapi: FakeFapi, method: str) -> list[str]:
    return [path for m, path, _ in fapi.requests if m == method and path != "/fapi/v1/leverage"]


async def test_a_stop_rests_in_the_algo_service_and_is_found_there(
    fapi: FakeFapi, venue: CcxtExchange
) -> None:
    placed = await venue.create_order(stop())
    assert paths(fapi, "POST") == [ALGO]
    assert fapi.algo("qt-BTC-1-s0")["triggerPrice"] == "95"
    found = await venue.fetch_order("qt-BTC-1-s0", SYMBOL)
    assert (found.status, found.exchange_order_id) == (OrderStatus.OPEN, placed.exchange_order_id)
    assert paths(fapi, "GET") == [ALGO]  # straight where it rests


async def test_after_a_restart_a_stop_is_still_found(
    fapi: FakeFapi, venue: CcxtExchange, connect: Connect
) -> None:
    await venue.create_order(stop())
    fresh = connect()  # knows nothing of the stop: asks the regular endpoint, then the algo one
    found = await fresh.fetch_order("qt-BTC-1-s0", SYMBOL)
    assert found.status is OrderStatus.OPEN
    assert found.request.type is OrderType.STOP_MARKET
    assert found.request.stop_price == Decimal(95)
    assert found.request.amount == Decimal("0.05")
    await fresh.fetch_order("qt-BTC-1-s0", SYMBOL)  # learnt: one request this time
    assert paths(fapi, "GET") == ["/fapi/v1/order", ALGO, ALGO]


async def test_a_stop_is_cancelled_where_it_rests(fapi: FakeFapi, venue: CcxtExchange) -> None:
    await venue.create_order(stop())
    canceled = await venue.cancel_order("qt-BTC-1-s0", SYMBOL)
    assert canceled.status is OrderStatus.CANCELED
    assert fapi.open_algos() == []
    assert paths(fapi, "DELETE") == [ALGO]
    again = await venue.cancel_order("qt-BTC-1-s0", SYMBOL)  # already ended: its final state
    assert again.status is OrderStatus.CANCELED


async def test_open_stops_are_listed_with_the_other_open_orders(
    fapi: FakeFapi, venue: CcxtExchange, connect: Connect
) -> None:
    await venue.create_order(stop())
    await venue.create_order(take_profit())
    for symbol in (SYMBOL, None):
        listed = await connect().fetch_open_orders(symbol)
        assert sorted((o.client_order_id, o.request.type) for o in listed) == [
            ("qt-BTC-1-s0", OrderType.STOP_MARKET),
            ("qt-BTC-1-t1", OrderType.LIMIT),
        ]
        assert {o.symbol for o in listed} == {SYMBOL}
    assert "/api/v3/openOrders" not in paths(fapi, "GET")  # never the spot account


async def test_a_resubmitted_stop_is_the_one_that_rests(
    fapi: FakeFapi, venue: CcxtExchange, connect: Connect
) -> None:
    first = await venue.create_order(stop())
    for exchange in (venue, connect()):  # the same process, and after a restart
        again = await exchange.create_order(stop())
        assert (again.exchange_order_id, again.status) == (
            first.exchange_order_id,
            OrderStatus.OPEN,
        )
    assert len(fapi.open_algos()) == 1


async def test_a_stop_whose_answer_was_lost_is_found_not_placed_twice(
    fapi: FakeFapi, venue: CcxtExchange
) -> None:
    fapi.fail_next("POST", ALGO, 503, landed=True)
    placed = await venue.create_order(stop())
    assert placed.status is OrderStatus.OPEN
    assert len(fapi.algos) == 1


async def test_a_triggered_stop_reports_the_fill_of_its_order(
    fapi: FakeFapi, venue: CcxtExchange, connect: Connect
) -> None:
    placed = await venue.create_order(stop())
    fapi.trigger("qt-BTC-1-s0", "94.9", fill=False)  # in the book, not filled yet
    working = await venue.fetch_order("qt-BTC-1-s0", SYMBOL)
    assert (working.status, working.filled) == (OrderStatus.OPEN, Decimal(0))
    actual = fapi.order(f"algo{placed.exchange_order_id}")
    fapi._fill(actual, Decimal("0.05"), Decimal("94.9"), maker=False)
    fapi.algo("qt-BTC-1-s0")["algoStatus"] = "FINISHED"
    for exchange in (venue, connect()):
        done = await exchange.fetch_order("qt-BTC-1-s0", SYMBOL)
        assert (done.status, done.filled, done.average_price) == (
            OrderStatus.FILLED,
            Decimal("0.05"),
            Decimal("94.9"),
        )
        assert done.exchange_order_id == placed.exchange_order_id
        assert done.request.type is OrderType.STOP_MARKET


async def test_a_triggered_stop_whose_order_is_not_visible_yet_is_still_working(
    fapi: FakeFapi, venue: CcxtExchange
) -> None:
    # Never "filled with nothing": the engine would take the stop for done and leave the
    # position bare.
    await venue.create_order(stop())
    fapi.algo("qt-BTC-1-s0").update(algoStatus="TRIGGERED", actualOrderId="")
    order = await venue.fetch_order("qt-BTC-1-s0", SYMBOL)
    assert (order.status, order.filled) == (OrderStatus.OPEN, Decimal(0))


# --- the engine on it: what the lookups are for ------------------------------------------------


class UsdmVenue(CcxtExchange):
    """The real adapter on the fake; balances and positions are read from the fake's book (their
    endpoints are not what this checks)."""

    def __init__(self, fapi: FakeFapi) -> None:
        super().__init__(
            binance_usdm(fapi.base_url),
            clock=SimClock(T0_MS),
            market_type=MarketType.PERP,
            sleep=no_sleep,
            rng=random.Random(0),
        )
        self.fapi = fapi

    async def fetch_balances(self) -> dict[str, Balance]:
        return {"USDT": Balance(asset="USDT", free=Decimal(10_000))}

    async def fetch_positions(self) -> list[Position]:
        net = self.fapi.position.get("BTCUSDT", Decimal(0))
        if net == 0:
            return []
        side = PositionSide.LONG if net > 0 else PositionSide.SHORT
        return [
            Position(
                symbol=SYMBOL,
                market_type=MarketType.PERP,
                side=side,
                amount=abs(net),
                entry_price=Decimal(100),
                opened_ms=T0_MS,
                updated_ms=T0_MS,
            )
        ]


async def test_the_engine_keeps_one_stop_through_syncs_and_sees_it_fill(
    fapi: FakeFapi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Before: every sync asked the regular endpoint for the stop, took "does not exist" for a
    # stop the venue dropped and placed another full-size one (300 of stops on a 50 position
    # after six syncs); the stop's own fill was never seen.
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        exchange={"market_type": "perp"}, market={"amount_step": "0.001", "price_tick": "0.1"}
    )
    venue = UsdmVenue(fapi)
    storage = MemoryStorage()
    bus = EventBus(sink=storage.events.append)
    events: list[Event] = []

    async def record(event: Event) -> None:
        events.append(event)

    bus.subscribe("*", record)
    clock = SimClock(T0_MS)
    engine = build_engine(
        settings,
        clock=clock,
        bus=bus,
        exchange=venue,
        trading_state=TradingStateService(storage.state, bus, clock),
        provider=ScriptedProvider(entries={at(0): 1}),
        state=storage.state,
    )
    try:
        await engine.on_candle(
            SYMBOL, Candle(ts_ms=at(0), open=100, high=100.5, low=99.5, close=100, volume=1)
        )
        await engine.sync_with_venue()  # the entry's fill: the stop and the ladder go out
        position = fapi.position["BTCUSDT"]
        [placed] = fapi.open_algos()
        for _ in range(6):  # a minute of venue_sync
            await engine.sync_with_venue()
        assert fapi.open_algos() == [placed]
        assert Decimal(placed["quantity"]) == position
        assert not [e for e in events if isinstance(e, OrderCanceled)]
        fapi.trigger(placed["clientAlgoId"], "97.9")
        await engine.sync_with_venue()
        assert SYMBOL not in engine.trades  # the stop's fill closed the trade
        assert fapi.position["BTCUSDT"] == 0
        assert [o for o in fapi.orders.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")] == []
        [sl] = [
            e for e in events if isinstance(e, OrderFilled) and e.client_order_id.endswith("s0")
        ]
        assert (sl.amount, sl.price) == (position, Decimal("97.9"))
    finally:
        await venue.close()
