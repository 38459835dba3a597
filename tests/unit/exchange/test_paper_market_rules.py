"""The paper venue refuses what the symbol's own rules refuse: off its grid, below its minimums."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from core.domain.enums import MarketType, OrderType, Side
from core.domain.market_rules import MarketRules
from core.errors import OrderRejected
from core.market.rules_book import RulesBook
from tests.unit.exchange.builders import bar, req, started_paper

BUY, SELL = Side.BUY, Side.SELL
DOGE = "DOGE/USDT"


def book() -> RulesBook:
    rules = RulesBook(
        MarketRules(symbol="*", amount_step=D("0.00001"), price_tick=D("0.01"), min_notional=D(5))
    )
    rules.use_venue(
        {
            DOGE: MarketRules(
                symbol=DOGE,
                amount_step=D(1),
                price_tick=D("0.00001"),
                min_amount=D(10),
                min_notional=D(1),
            )
        }
    )
    return rules


async def test_an_amount_off_the_step_or_a_price_off_the_tick_is_refused_naming_both() -> None:
    paper = await started_paper(rules=book().rules)
    await paper.on_candle(DOGE, bar(0, 0.1))
    with pytest.raises(OrderRejected, match=r"DOGE/USDT: amount 50.5 is not a multiple of .* 1"):
        await paper.create_order(req("a", BUY, "50.5", symbol=DOGE))
    with pytest.raises(OrderRejected, match=r"price 0.100005 is not a multiple of the tick"):
        await paper.create_order(
            req("p", BUY, "50", OrderType.LIMIT, price="0.100005", symbol=DOGE)
        )
    with pytest.raises(OrderRejected, match=r"price 0.090001 is not a multiple"):  # a stop too
        await paper.create_order(
            req("s", SELL, "50", OrderType.STOP_MARKET, stop="0.090001", symbol=DOGE)
        )
    placed = await paper.create_order(
        req("ok", BUY, "50", OrderType.LIMIT, price="0.09999", symbol=DOGE)
    )
    assert placed.request.amount == D(50)


async def test_each_symbol_has_its_own_minimums() -> None:
    paper = await started_paper(rules=book().rules)
    await paper.on_candle(DOGE, bar(0, 0.1))
    with pytest.raises(OrderRejected, match="amount 9 is below the minimum amount 10"):
        await paper.create_order(req("a", BUY, "9", symbol=DOGE))
    # 12 DOGE at 0.1 is 1.2 quote: under the settings' 5, above DOGE's own 1.
    await paper.create_order(req("b", BUY, "12", symbol=DOGE))
    await paper.on_candle("BTC/USDT", bar(0, 100))
    with pytest.raises(OrderRejected, match="below the minimum notional 5"):  # the fallback
        await paper.create_order(req("c", BUY, "0.01"))


async def test_perp_reduce_only_orders_may_be_below_the_minimum_amount() -> None:
    paper = await started_paper(rules=book().rules, market_type=MarketType.PERP, max_leverage=2)
    await paper.on_candle(DOGE, bar(0, 0.1))
    await paper.create_order(req("b", BUY, "20", symbol=DOGE, market_type=MarketType.PERP))
    await paper.on_candle(DOGE, bar(1, 0.1))
    stop = req(
        "s", SELL, "5", OrderType.STOP_MARKET, stop="0.09", reduce_only=True, symbol=DOGE,
        market_type=MarketType.PERP,
    )  # fmt: skip
    await paper.create_order(stop)
    with pytest.raises(OrderRejected, match="not a multiple"):  # but never off the grid
        await paper.create_order(
            req("t", SELL, "5.5", OrderType.LIMIT, price="0.2", reduce_only=True, symbol=DOGE,
                market_type=MarketType.PERP)
        )  # fmt: skip
