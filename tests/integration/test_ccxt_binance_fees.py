"""Fees of live fills on Binance USD-M through the real ccxt.binance (issue 8, item 10).

Binance USD-M order objects carry no commission (it is only in ``/fapi/v1/userTrades``), so
ccxt's orders have no fee and every live fill was booked with fee 0. The adapter takes the fee
from the order's trades; only when the venue gives none does it fall back to the venue's fee
schedule (ccxt's market ``taker``/``maker``), and says so in the log.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from core.clock import SimClock
from core.domain.enums import MarketType, OrderType, Side
from core.domain.orders import OrderRequest
from core.exchange.ccxt import CcxtExchange
from tests.fakes_fapi import T0_MS, FakeFapi, binance_usdm

SYMBOL = "BTC/USDT"
TRADES = "/fapi/v1/userTrades"
VIP_TAKER, VIP_MAKER = "0.00045", "0.00018"  # the account's rates, below the schedule's


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def fapi() -> AsyncIterator[FakeFapi]:
    async with FakeFapi(price="97000", taker=VIP_TAKER, maker=VIP_MAKER) as fake:
        yield fake


@pytest.fixture
async def venue(fapi: FakeFapi) -> AsyncIterator[CcxtExchange]:
    exchange = CcxtExchange(
        binance_usdm(fapi.base_url),
        clock=SimClock(T0_MS),
        market_type=MarketType.PERP,
        sleep=no_sleep,
        rng=random.Random(0),
    )
    yield exchange
    await exchange.close()


def market_buy(cid: str = "qt-BTC-1-e") -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol=SYMBOL,
        side=Side.BUY,
        type=OrderType.MARKET,
        amount=Decimal("0.05"),
        market_type=MarketType.PERP,
    )


def request(cid: str, type_: OrderType, **prices: Decimal) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol=SYMBOL,
        side=Side.SELL,
        type=type_,
        amount=Decimal("0.05"),
        reduce_only=True,
        market_type=MarketType.PERP,
        **prices,
    )


async def test_a_market_fill_books_the_commission_of_its_trades(
    fapi: FakeFapi, venue: CcxtExchange
) -> None:
    placed = await venue.create_order(market_buy())
    assert "commission" not in fapi.order("qt-BTC-1-e")  # the venue's order: no fee in it
    expected = Decimal("0.05") * 97000 * Decimal(VIP_TAKER)  # 2.1825, not 0
    assert placed.fee_paid == expected
    assert (await venue.fetch_order("qt-BTC-1-e", SYMBOL)).fee_paid == expected
    [(_, _, asked)] = [r for r in fapi.requests if r[1] == TRADES][:1]
    assert asked["orderId"] == placed.exchange_order_id


async def test_a_limit_books_the_fees_of_its_fills_so_far(
    fapi: FakeFapi, venue: CcxtExchange
) -> None:
    await venue.create_order(request("qt-BTC-1-t1", OrderType.LIMIT, price=Decimal(98000)))
    assert (await venue.fetch_order("qt-BTC-1-t1", SYMBOL)).fee_paid == 0  # nothing filled
    fapi.fill("qt-BTC-1-t1", qty="0.02")
    part = await venue.fetch_order("qt-BTC-1-t1", SYMBOL)
    assert (part.filled, part.fee_paid) == (
        Decimal("0.02"),
        Decimal("0.02") * 98000 * Decimal(VIP_MAKER),
    )
    fapi.fill("qt-BTC-1-t1")
    done = await venue.fetch_order("qt-BTC-1-t1", SYMBOL)
    assert done.fee_paid == Decimal("0.05") * 98000 * Decimal(VIP_MAKER)


async def test_a_triggered_stop_books_the_fee_of_the_order_it_became(
    fapi: FakeFapi, venue: CcxtExchange
) -> None:
    await venue.create_order(
        request("qt-BTC-1-s0", OrderType.STOP_MARKET, stop_price=Decimal(95000))
    )
    fapi.trigger("qt-BTC-1-s0", "94990")
    stop = await venue.fetch_order("qt-BTC-1-s0", SYMBOL)
    assert stop.fee_paid == Decimal("0.05") * 94990 * Decimal(VIP_TAKER)


async def test_without_trades_the_fee_is_the_venues_schedule_and_says_so(
    fapi: FakeFapi, venue: CcxtExchange, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(4):  # every retry of one lookup
        fapi.fail_next("GET", TRADES, 503)
    with caplog.at_level(logging.WARNING):
        order = await venue.create_order(market_buy())
    assert order.fee_paid == Decimal("0.05") * 97000 * Decimal("0.0005")  # the schedule's taker
    assert "fee schedule" in caplog.text
    # An estimate is not kept: once the trades answer, the fee is theirs.
    assert (await venue.fetch_order("qt-BTC-1-e", SYMBOL)).fee_paid == Decimal("2.1825")
