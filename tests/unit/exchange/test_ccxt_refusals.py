"""Venue refusals through the ccxt adapter (issue 8, item 4): one mapping, by what a call is for.

A venue that refuses an order (its amount, price, funds, reduce-only, the market's state) says
so with ccxt's BadRequest family as often as with InvalidOrder: Binance USD-M answers -4005
"Quantity greater than max quantity", -1111 precision and -4014 tick size as BadRequest. On a
call that places or cancels an order every one of them is our ``OrderRejected``, which the
order path records (``order.rejected``) and falls back from. A refused *lookup* says nothing
about the order, so it must not read as "the venue does not know it" (that is what
``OrderRejected`` from ``fetch_order`` means to the engine, which would place the order again).
"""

from __future__ import annotations

from decimal import Decimal

import ccxt.async_support as ccxt_async
import pytest

from core.clock import SimClock
from core.domain.enums import MarketType, OrderType, Side, TradingState
from core.domain.events import Event
from core.domain.events import OrderRejected as OrderRejectedEvent
from core.domain.orders import OrderRequest
from core.domain.policy import Policy
from core.errors import (
    DataError,
    DependencyError,
    OperationalError,
    OrderRejected,
    QTError,
    RateLimited,
    TemporaryError,
)
from core.exchange.ccxt import CallKind, map_ccxt_error
from core.services.bus import EventBus
from core.services.execution import ExecutionService
from tests.fakes_ccxt import T0, FakeCcxt, adapter

MAX_QTY = 'binance {"code":-4005,"msg":"Quantity greater than max quantity."}'

REFUSALS = [
    ccxt_async.BadRequest,
    ccxt_async.BadSymbol,
    ccxt_async.InvalidOrder,
    ccxt_async.OrderImmediatelyFillable,
    ccxt_async.OrderNotFillable,
    ccxt_async.InsufficientFunds,
    ccxt_async.OperationRejected,
    ccxt_async.MarketClosed,
    ccxt_async.ContractUnavailable,
]


@pytest.mark.parametrize("ccxt_error", REFUSALS)
def test_every_venue_refusal_of_an_order_is_order_rejected(ccxt_error: type[Exception]) -> None:
    mapped = map_ccxt_error(ccxt_error(MAX_QTY), "binance create_order qt-1", CallKind.ORDER)
    assert type(mapped) is OrderRejected
    assert str(mapped) == f"binance create_order qt-1: {ccxt_error.__name__}: {MAX_QTY}"


@pytest.mark.parametrize(
    ("ccxt_error", "ours"),
    [
        (ccxt_async.RequestTimeout, TemporaryError),  # retried: the order may have landed
        (ccxt_async.NetworkError, TemporaryError),
        (ccxt_async.ExchangeNotAvailable, TemporaryError),
        (ccxt_async.OnMaintenance, TemporaryError),
        (ccxt_async.RateLimitExceeded, RateLimited),
        (ccxt_async.DDoSProtection, RateLimited),
        (ccxt_async.BadResponse, TemporaryError),  # a malformed answer is no refusal
        (ccxt_async.NullResponse, TemporaryError),
        (ccxt_async.AuthenticationError, OperationalError),
        (ccxt_async.RestrictedLocation, OperationalError),  # an OperationRejected, but a human's
        (ccxt_async.ManualInteractionNeeded, OperationalError),
        (ccxt_async.NotSupported, DependencyError),  # our call is wrong for the venue: no refusal
        (ccxt_async.ArgumentsRequired, DependencyError),
    ],
)
def test_what_is_no_refusal_keeps_its_kind_on_order_calls(
    ccxt_error: type[Exception], ours: type[QTError]
) -> None:
    for kind in CallKind:
        assert type(map_ccxt_error(ccxt_error("x"), "", kind)) is ours


@pytest.mark.parametrize("ccxt_error", [ccxt_async.BadRequest, ccxt_async.BadSymbol])
def test_a_refused_request_for_data_stays_a_data_error(ccxt_error: type[Exception]) -> None:
    assert type(map_ccxt_error(ccxt_error("x"), "binance fetch_ohlcv")) is DataError


@pytest.mark.parametrize("ccxt_error", REFUSALS)
def test_a_refused_lookup_is_no_news_about_the_order(ccxt_error: type[Exception]) -> None:
    mapped = map_ccxt_error(ccxt_error("x"), "binance fetch_order qt-1", CallKind.LOOKUP)
    assert type(mapped) is DependencyError


def stop(cid: str = "qt-sl") -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol="BTC/USDT",
        side=Side.SELL,
        type=OrderType.STOP_MARKET,
        amount=Decimal("0.05"),
        stop_price=Decimal("95"),
        reduce_only=True,
        market_type=MarketType.PERP,
    )


async def test_a_bad_request_answer_to_an_order_is_rejected_and_not_retried() -> None:
    fake = FakeCcxt()
    fake.create_errors = [(ccxt_async.BadRequest(MAX_QTY), False)]
    with pytest.raises(OrderRejected, match="-4005"):
        await adapter(fake, MarketType.PERP).create_order(stop())
    assert len(fake.create_calls) == 1


async def test_the_order_path_records_a_refused_stop() -> None:
    fake = FakeCcxt()
    fake.create_errors = [(ccxt_async.BadRequest(MAX_QTY), False)]
    events: list[Event] = []

    async def record(event: Event) -> None:
        events.append(event)

    async def active() -> TradingState:
        return TradingState.ACTIVE

    async def exposure(symbol: str) -> tuple[Decimal, int, Decimal]:
        return Decimal(10_000), 0, Decimal(0)

    bus = EventBus()
    bus.subscribe("*", record)
    execution = ExecutionService(
        exchange=adapter(fake, MarketType.PERP),
        bus=bus,
        clock=SimClock(T0),
        trading_state=active,
        policy=Policy,
        exposure=exposure,
    )
    submission = await execution.submit(stop(), reference_price=Decimal(100))
    assert not submission.sent and not submission.denied  # the venue refused: a fallback applies
    [rejected] = [e for e in events if isinstance(e, OrderRejectedEvent)]
    assert rejected.client_order_id == "qt-sl"
    assert "-4005" in rejected.reason


async def test_a_malformed_order_answer_is_not_a_rejection() -> None:
    fake = FakeCcxt()

    async def garbled(*args: object, **kwargs: object) -> dict[str, object]:
        return {"id": "x1", "clientOrderId": "qt-sl", "status": "open", "filled": "lots"}

    fake.create_order = garbled  # type: ignore[method-assign]
    with pytest.raises(DependencyError, match="non-numeric") as info:
        await adapter(fake, MarketType.PERP).create_order(stop())
    assert not isinstance(info.value, OrderRejected)


async def test_a_refused_lookup_does_not_read_as_an_unknown_order() -> None:
    fake = FakeCcxt()
    ex = adapter(fake, MarketType.PERP)
    await ex.create_order(stop())
    fake.fail_next("fetch_order", ccxt_async.BadRequest('binance {"code":-1102,"msg":"..."}'))
    with pytest.raises(DependencyError) as info:
        await ex.fetch_order("qt-sl", "BTC/USDT")
    assert not isinstance(info.value, OrderRejected)


async def test_a_refused_cancel_is_order_rejected() -> None:
    fake = FakeCcxt()
    ex = adapter(fake, MarketType.PERP)
    await ex.create_order(stop())
    fake.fail_next("cancel_order", ccxt_async.BadRequest('binance {"code":-1102,"msg":"..."}'))
    with pytest.raises(OrderRejected, match="-1102"):
        await ex.cancel_order("qt-sl", "BTC/USDT")


async def test_leverage_that_is_already_set_is_no_refusal() -> None:
    # Bybit answers a leverage equal to the current one with 110043 (ccxt: BadRequest); after a
    # restart the adapter sets it again, and the entry must still go out.
    fake = FakeCcxt()
    fake.fail_next(
        "set_leverage",
        ccxt_async.BadRequest('bybit {"retCode":110043,"retMsg":"Set leverage not modified"}'),
    )
    order = await adapter(fake, MarketType.PERP).create_order(stop())
    assert order.client_order_id == "qt-sl"
    assert len(fake.create_calls) == 1
