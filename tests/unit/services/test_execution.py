"""The execution service: deterministic client ids, the risk gate before the venue, events."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from decimal import Decimal as D

import pytest

from core.brains.limits import LimitContext
from core.brains.risk_gate import OrderIntent
from core.clock import SimClock
from core.domain.enums import MarketType, OrderStatus, OrderType, PositionSide, Side, TradingState
from core.domain.events import (
    Event,
    OrderCanceled,
    OrderDenied,
    OrderRejected,
    OrderSubmitted,
)
from core.domain.orders import OrderRequest
from core.domain.policy import Policy
from core.domain.portfolio import Position
from core.errors import DataError
from core.errors import OrderRejected as VenueRejected
from core.services.bus import EventBus
from core.services.execution import MAX_CLIENT_ID_LEN, ExecutionService, client_order_id
from core.services.portfolio import AccountView
from tests.fakes import FakeExchange, quiet_limits

T0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
HOUR_MS = 3_600_000
CID_CHARS = re.compile(r"^[A-Za-z0-9-]+$")


# --- client order ids -------------------------------------------------------------------------


def test_client_id_is_deterministic() -> None:
    a = client_order_id("BTC/USDT", T0_MS, "e")
    assert a == client_order_id("BTC/USDT", T0_MS, "e")
    # 1_704_067_200 s in base 36 is "s6k2o0" (int("s6k2o0", 36) == 1_704_067_200); "uqe1p" is
    # the first 64 bits of sha256("BTC/USDT") mod 36**5, in base 36
    assert a == "qt-BTC-uqe1p-s6k2o0-e"
    digest = int.from_bytes(hashlib.sha256(b"BTC/USDT").digest()[:8], "big")
    assert int("uqe1p", 36) == digest % 36**5


def test_client_id_differs_by_symbol_candle_and_tag() -> None:
    base = client_order_id("BTC/USDT", T0_MS, "e")
    others = {
        client_order_id("ETH/USDT", T0_MS, "e"),
        client_order_id("BTC/USDT", T0_MS + HOUR_MS, "e"),
        client_order_id("BTC/USDT", T0_MS, "t1"),
    }
    assert base not in others
    assert len(others) == 3


@pytest.mark.parametrize(
    ("symbol", "tag"),
    [
        ("BTC/USDT", "e"),
        ("1000PEPE/USDT:USDT", "s12"),
        ("VERYLONGNAMECOIN/USDT", "x_99"),
        ("A.B-C/USDT", "t-1"),
    ],
)
def test_client_id_is_short_and_venue_safe(symbol: str, tag: str) -> None:
    for ts_ms in (0, T0_MS, 4_102_444_800_000):  # 1970, 2024, 2100
        cid = client_order_id(symbol, ts_ms, tag)
        assert len(cid) <= MAX_CLIENT_ID_LEN == 36
        assert CID_CHARS.match(cid), cid


def test_client_ids_keep_symbols_apart_that_look_alike() -> None:
    # Real Binance perps share their first 8 characters; bases repeat across quotes and markets.
    lookalikes = [
        "BROCCOLI714/USDT",
        "BROCCOLIF3B/USDT",
        "BROCCOLI714/USDT:USDT",
        "BTC/USDT",
        "BTC/USDC",
        "BTC/USDT:USDT",
        "1000PEPE/USDT",
        "1000PEPE2/USDT",
        "1MBABYDOGE/USDT",
        "1MBABYDOGE2/USDT",
    ]
    ids = {client_order_id(s, T0_MS, "e") for s in lookalikes}
    assert len(ids) == len(lookalikes)
    # and thousands of made-up long names sharing one prefix stay apart too
    many = {client_order_id(f"LONGPREFIX{i}/USDT", T0_MS, "x12") for i in range(5_000)}
    assert len(many) == 5_000
    assert all(len(cid) <= MAX_CLIENT_ID_LEN and CID_CHARS.match(cid) for cid in many)


def test_client_id_too_long_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="longer than 36"):
        client_order_id("BTC/USDT", T0_MS, "x" * 20)


# --- submit and cancel ------------------------------------------------------------------------


class Recorder:
    """Collect every published event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def make_service(
    state: TradingState = TradingState.ACTIVE,
    *,
    equity: str = "10000",
    policy: Policy | None = None,
) -> tuple[ExecutionService, FakeExchange, Recorder]:
    clock = SimClock(T0_MS)
    exchange = FakeExchange(balances={"USDT": D(equity)}, clock=clock)
    recorder = Recorder()
    bus = EventBus()
    bus.subscribe("*", recorder)

    async def trading_state() -> TradingState:
        return state

    async def exposure(symbol: str) -> tuple[D, int, D]:
        return D(equity), 0, D(0)

    async def limits(intent: OrderIntent, account: AccountView | None) -> LimitContext:
        return quiet_limits(clock.now_ms(), D(equity))  # nothing recorded yet

    service = ExecutionService(
        exchange=exchange,
        bus=bus,
        clock=clock,
        trading_state=trading_state,
        policy=lambda: policy or Policy(),
        exposure=exposure,
        limits=limits,
    )
    return service, exchange, recorder


def buy(cid: str = "qt-BTC-1-e", amount: str = "10", *, reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol="BTC/USDT",
        side=Side.SELL if reduce_only else Side.BUY,
        type=OrderType.MARKET,
        amount=D(amount),
        reduce_only=reduce_only,
        tag="entry",
    )


async def test_allowed_order_reaches_the_exchange_and_is_published() -> None:
    service, exchange, recorder = make_service()
    submitted = await service.submit(buy(), reference_price=D(100))
    order = submitted.order
    assert submitted.sent and not submitted.denied and order is not None
    assert order.status is OrderStatus.OPEN
    assert [c.args[0] for c in exchange.calls_to("create_order")] == [buy()]
    [event] = recorder.of(OrderSubmitted)
    assert isinstance(event, OrderSubmitted)
    assert event.client_order_id == "qt-BTC-1-e"
    assert event.exchange_order_id == "fake-qt-BTC-1-e"
    assert (event.side, event.type, event.amount, event.tag) == ("buy", "market", D(10), "entry")
    assert event.ts_ms == T0_MS


@pytest.mark.parametrize(
    ("state", "reduce_only", "type_", "reason"),
    [
        (TradingState.HALTED, False, OrderType.MARKET, "halted"),
        (TradingState.HALTED, True, OrderType.LIMIT, "halted"),  # a take-profit
        (TradingState.REDUCING, False, OrderType.MARKET, "reducing_only"),
    ],
)
async def test_denied_order_never_reaches_the_exchange(
    state: TradingState, reduce_only: bool, type_: OrderType, reason: str
) -> None:
    service, exchange, recorder = make_service(state)
    request = replace(buy(reduce_only=reduce_only), type=type_, price=D(99))
    submitted = await service.submit(request, reference_price=D(100))
    assert not submitted.sent and submitted.denied
    assert exchange.calls_to("create_order") == []
    assert exchange.orders == {}
    [event] = recorder.events
    assert isinstance(event, OrderDenied)
    assert event.client_order_id == "qt-BTC-1-e"
    assert event.symbol == "BTC/USDT"
    assert event.reason == reason


@pytest.mark.parametrize(
    ("type_", "price", "stop"),
    [(OrderType.MARKET, None, None), (OrderType.STOP_MARKET, None, D(95))],
)
async def test_a_halt_lets_reduce_only_stops_and_market_exits_through(
    type_: OrderType, price: D | None, stop: D | None
) -> None:
    service, exchange, recorder = make_service(TradingState.HALTED)
    request = replace(buy(reduce_only=True), type=type_, price=price, stop_price=stop)
    assert (await service.submit(request, reference_price=D(100))).sent
    assert [type(e) for e in recorder.events] == [OrderSubmitted]
    assert [c.args[0] for c in exchange.calls_to("create_order")] == [request]


async def test_reducing_lets_a_reduce_only_order_through() -> None:
    service, exchange, recorder = make_service(TradingState.REDUCING)
    assert (await service.submit(buy(reduce_only=True), reference_price=D(100))).sent
    assert len(exchange.calls_to("create_order")) == 1
    assert [type(e) for e in recorder.events] == [OrderSubmitted]


async def test_order_over_the_position_cap_is_denied_with_its_reason() -> None:
    # cap = 0.5 * 10_000 = 5_000; 60 units at 100 = 6_000
    service, exchange, recorder = make_service()
    assert (await service.submit(buy(amount="60"), reference_price=D(100))).denied
    assert exchange.calls_to("create_order") == []
    [event] = recorder.events
    assert isinstance(event, OrderDenied)
    assert event.reason == "max_position_size"
    assert "6000.00 > cap 5000.00" in event.detail


@pytest.mark.parametrize(
    "refusal",
    [
        VenueRejected("insufficient balance"),
        # a bad request (Binance -4005) the adapter did not class as an order refusal: still
        # refused, never an escape that leaves a stop believed working (review r04)
        DataError('binance {"code":-4005,"msg":"insufficient balance, quantity too big"}'),
    ],
)
async def test_venue_rejection_is_published_and_not_retried(refusal: Exception) -> None:
    service, exchange, recorder = make_service()
    exchange.fail_next("create_order", refusal)  # type: ignore[arg-type]
    submitted = await service.submit(buy(), reference_price=D(100))
    assert not submitted.sent and not submitted.denied  # the venue said no, not our gate
    assert len(exchange.calls_to("create_order")) == 1  # tried once, never again
    [event] = recorder.events
    assert isinstance(event, OrderRejected)
    assert event.client_order_id == "qt-BTC-1-e"
    assert "insufficient balance" in event.reason


async def test_cancel_of_an_open_order_is_published() -> None:
    service, _, recorder = make_service()
    await service.submit(buy(), reference_price=D(100))
    order = await service.cancel("qt-BTC-1-e", "BTC/USDT", reason="leg canceled")
    assert order is not None
    assert order.status is OrderStatus.CANCELED
    [event] = recorder.of(OrderCanceled)
    assert isinstance(event, OrderCanceled)
    assert (event.client_order_id, event.reason) == ("qt-BTC-1-e", "leg canceled")


async def test_cancel_of_a_filled_order_publishes_nothing() -> None:
    service, exchange, recorder = make_service()
    await service.submit(buy(), reference_price=D(100))
    exchange.script_fill("qt-BTC-1-e", D(100))
    published = len(recorder.events)
    order = await service.cancel("qt-BTC-1-e", "BTC/USDT", reason="position closed")
    assert order is not None
    assert order.status is OrderStatus.FILLED
    assert exchange.calls_to("cancel_order") == []  # finished: nothing to send
    assert len(recorder.events) == published
    assert recorder.of(OrderCanceled) == []


async def test_cancel_refused_by_the_venue_returns_none_quietly() -> None:
    service, _, recorder = make_service()
    assert await service.cancel("qt-unknown", "BTC/USDT", reason="x") is None
    assert recorder.events == []


async def test_position_amount_reads_the_venue() -> None:
    service, exchange, _ = make_service()
    assert await service.position_amount("BTC/USDT") == 0
    exchange.positions = [
        Position(
            symbol="ETH/USDT",
            market_type=MarketType.SPOT,
            side=PositionSide.LONG,
            amount=D("2.5"),
            entry_price=D(2000),
            opened_ms=T0_MS,
            updated_ms=T0_MS,
        )
    ]
    assert await service.position_amount("ETH/USDT") == D("2.5")
    assert await service.position_amount("BTC/USDT") == 0


async def test_resubmitting_the_same_decision_makes_no_second_order() -> None:
    # After a crash the engine decides the same entry on the same candle: same id, one order.
    service, exchange, _ = make_service()
    cid = client_order_id("BTC/USDT", T0_MS, "e")
    first = (await service.submit(buy(cid), reference_price=D(100))).order
    again = (await service.submit(buy(cid), reference_price=D(100))).order
    assert first is not None and again is not None
    assert again.exchange_order_id == first.exchange_order_id
    assert list(exchange.orders) == [cid]
