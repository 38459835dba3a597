"""Fees of live fills when the venue's order has none (issue 8, item 10), on a fake ccxt client.

The fee of a fill is what the venue's trades of that order say (in the quote, or in the base
valued at the trade's price); only what the trades do not cover (no trades endpoint, a fee in a
third asset such as BNB, trades not visible yet) is estimated from the venue's fee schedule,
maker for a limit, taker otherwise, and logged. Never a silent 0.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import ccxt.async_support as ccxt_async
import pytest

from core.domain.enums import MarketType, OrderType, Side
from core.domain.orders import OrderRequest
from tests.fakes_ccxt import FakeCcxt, adapter

NOTIONAL = Decimal("0.05") * Decimal("100.1")  # the fake fills market orders at 100.1


def market_buy() -> OrderRequest:
    return OrderRequest(
        client_order_id="qt-e",
        symbol="BTC/USDT",
        side=Side.BUY,
        type=OrderType.MARKET,
        amount=Decimal("0.05"),
        market_type=MarketType.PERP,
    )


def trade(order: str, amount: float, cost: float, currency: str = "USDT") -> dict[str, object]:
    return {
        "symbol": "BTC/USDT:USDT",
        "order": order,
        "amount": amount,
        "price": 100.1,
        "fee": {"cost": cost, "currency": currency},
    }


def venue(**trades: list[dict[str, object]]) -> FakeCcxt:
    fake = FakeCcxt("binance", default_type="swap")
    fake.order_fees = False
    fake.trades = trades.get("trades", [])
    return fake


async def test_an_order_that_states_its_fee_needs_no_trades() -> None:
    fake = FakeCcxt("binance", default_type="swap")
    order = await adapter(fake, MarketType.PERP).create_order(market_buy())
    assert order.fee_paid == Decimal("0.1001")
    assert fake.trades_calls == []


async def test_the_fee_is_the_sum_of_the_orders_trades_only() -> None:
    fake = venue(trades=[trade("x1", 0.02, 0.001), trade("x1", 0.03, 0.0015), trade("x9", 1, 9)])
    order = await adapter(fake, MarketType.PERP).create_order(market_buy())
    assert order.fee_paid == Decimal("0.0025")  # not the other order's 9
    assert fake.trades_calls == [("BTC/USDT:USDT", {"orderId": "x1"})]


async def test_a_fee_in_the_base_is_valued_at_the_trades_price() -> None:
    fake = venue(trades=[trade("x1", 0.05, 0.00001, currency="BTC")])
    order = await adapter(fake, MarketType.PERP).create_order(market_buy())
    assert order.fee_paid == Decimal("0.00001") * Decimal("100.1")


async def test_a_fee_in_a_third_asset_is_estimated_from_the_schedule(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = venue(trades=[trade("x1", 0.05, 0.0001, currency="BNB")])
    with caplog.at_level(logging.WARNING):
        order = await adapter(fake, MarketType.PERP).create_order(market_buy())
    assert order.fee_paid == NOTIONAL * Decimal("0.0005")  # the market's taker rate
    assert "fee schedule" in caplog.text


async def test_trades_covering_part_of_the_fill_leave_the_rest_to_the_schedule() -> None:
    fake = venue(trades=[trade("x1", 0.02, 0.001)])
    order = await adapter(fake, MarketType.PERP).create_order(market_buy())
    rest = Decimal("0.03") * Decimal("100.1") * Decimal("0.0005")
    assert order.fee_paid == Decimal("0.001") + rest


@pytest.mark.parametrize(
    "error",
    [ccxt_async.NotSupported("no trades here"), ccxt_async.BadRequest("orderId unknown")],
)
async def test_no_trades_from_the_venue_means_the_schedule(error: Exception) -> None:
    fake = venue()
    fake.fail_next("fetch_my_trades", error)
    order = await adapter(fake, MarketType.PERP).create_order(market_buy())
    assert order.fee_paid == NOTIONAL * Decimal("0.0005")


async def test_a_venue_without_a_trades_call_uses_the_maker_rate_for_a_limit() -> None:
    fake = venue()
    fake.has = {"fetchMyTrades": False}
    ex = adapter(fake, MarketType.PERP)
    tp = OrderRequest(
        client_order_id="qt-tp",
        symbol="BTC/USDT",
        side=Side.SELL,
        type=OrderType.LIMIT,
        amount=Decimal("0.05"),
        price=Decimal("105"),
        reduce_only=True,
        market_type=MarketType.PERP,
    )
    await ex.create_order(tp)
    fake.orders["qt-tp"].update(status="closed", filled=0.05, average=105.0)
    order = await ex.fetch_order("qt-tp", "BTC/USDT")
    assert order.fee_paid == Decimal("0.05") * 105 * Decimal("0.0002")
    assert fake.trades_calls == []


async def test_the_trades_of_a_fill_already_seen_are_not_asked_for_again() -> None:
    fake = venue(trades=[trade("x1", 0.05, 0.0025)])
    ex = adapter(fake, MarketType.PERP)
    await ex.create_order(market_buy())
    for _ in range(3):
        assert (await ex.fetch_order("qt-e", "BTC/USDT")).fee_paid == Decimal("0.0025")
    assert len(fake.trades_calls) == 1
