"""The paper venue liquidates leveraged perps: where, in what order within a candle, at what
cost. No slippage; maker 0.1 %, taker 0.2 %; 10_000 USDT; the default margin tiers (0.4 %
maintenance below 50k notional) and a 1.25 % liquidation fee.

A 5x long of 10 at 100 locks 200 of margin; it is liquidated where 200 + (P - 100) * 10 =
P * 10 * 0.004: P = 800 / 9.96 = 80.3212...
"""

from __future__ import annotations

from core.domain.enums import MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.margin import MarginConfig, MarginMode
from core.domain.orders import OrderRequest, is_liquidation
from core.exchange.paper import PaperExchange
from tests.unit.exchange.builders import BTC, NO_SLIP_FILLS, D, bar, req, started_paper

BUY, SELL = Side.BUY, Side.SELL
PERP = MarketType.PERP
LIQ = D(800) / D("9.96")
ETH = "ETH/USDT"


def preq(cid: str, side: Side, amount: str, symbol: str = BTC, **kw: object) -> OrderRequest:
    return req(cid, side, amount, market_type=PERP, leverage=5, symbol=symbol, **kw)  # type: ignore[arg-type]


async def long_5x(mode: MarginMode = MarginMode.ISOLATED) -> PaperExchange:
    paper = await started_paper(
        fills=NO_SLIP_FILLS, market_type=PERP, max_leverage=10, margin=MarginConfig(mode=mode)
    )
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(preq("open", BUY, "10"))
    await paper.on_candle(BTC, bar(1, 100))  # fee 1000 * 0.002 = 2
    return paper


async def test_positions_carry_their_liquidation_price() -> None:
    paper = await long_5x()
    [pos] = await paper.fetch_positions()
    assert pos.liquidation_price == LIQ


async def test_a_candle_through_the_liquidation_price_liquidates_and_costs_the_margin() -> None:
    paper = await long_5x()
    await paper.create_order(
        preq("tp", SELL, "10", type_=OrderType.LIMIT, price="120", reduce_only=True)
    )

    [fill] = await paper.on_candle(BTC, bar(2, 95, high=96, low=79, close=85))

    assert is_liquidation(fill.client_order_id)
    assert (fill.side, fill.amount, fill.price) == (SELL, D(10), LIQ)
    # loss (LIQ - 100) * 10 = -196.79; the fee (1.25 % of 803.21) is capped at the 3.21 left
    assert fill.fee == D(200) + (LIQ - 100) * 10
    assert await paper.fetch_positions() == []
    usdt = (await paper.fetch_balances())["USDT"]
    assert usdt.total == D(9998) - D(200)  # the whole margin, no more
    tp = await paper.fetch_order("tp", BTC)
    assert (tp.status, tp.reason) == (OrderStatus.CANCELED, "liquidated")
    assert [o.client_order_id for o in paper.take_venue_cancels()] == ["tp"]


async def test_our_stop_inside_the_liquidation_price_fills_first() -> None:
    paper = await long_5x()
    await paper.create_order(
        preq("sl", SELL, "10", type_=OrderType.STOP_MARKET, stop="90", reduce_only=True)
    )
    [fill] = await paper.on_candle(BTC, bar(2, 95, high=96, low=70, close=75))
    assert (fill.client_order_id, fill.price) == ("sl", D(90))


async def test_a_gap_past_bankruptcy_loses_the_margin_and_not_a_cent_more() -> None:
    paper = await long_5x()
    await paper.create_order(
        preq("sl", SELL, "10", type_=OrderType.STOP_MARKET, stop="90", reduce_only=True)
    )
    # opens at 70: past the stop, past the liquidation price, past bankruptcy (80)
    [fill] = await paper.on_candle(BTC, bar(2, 70, high=71, low=69, close=70))
    assert is_liquidation(fill.client_order_id)
    assert (fill.price, fill.fee) == (D(80), D(0))  # closed at the bankruptcy price
    assert (await paper.fetch_balances())["USDT"].total == D(9998) - D(200)
    assert (await paper.fetch_order("sl", BTC)).status is OrderStatus.CANCELED


async def test_a_position_without_orders_is_still_watched() -> None:
    paper = await long_5x()
    assert await paper.fetch_open_orders() == []
    [fill] = await paper.on_candle(BTC, bar(2, 85, high=86, low=80, close=82))
    assert is_liquidation(fill.client_order_id)


async def test_reachable_orders_include_the_liquidation_stop_for_fast_replays() -> None:
    paper = await long_5x()
    [trigger] = await paper.reachable_orders(BTC)
    assert (trigger.request.type, trigger.request.stop_price) == (OrderType.STOP_MARKET, LIQ)
    assert await paper.fetch_open_orders(BTC) == []  # not an order of anybody's


async def test_cross_margin_backs_the_position_with_the_wallet() -> None:
    paper = await long_5x(MarginMode.CROSS)
    [pos] = await paper.fetch_positions()
    # wallet 9998 backs it: 9998 + (P - 100) * 10 = 0.04 P -> P < 0: out of reach
    assert pos.liquidation_price is None
    # a second, losing position elsewhere eats into what backs the first
    await paper.on_candle(ETH, bar(0, 1000))
    await paper.create_order(preq("eth", SELL, "40", symbol=ETH))
    await paper.on_candle(ETH, bar(1, 1000))
    await paper.on_candle(ETH, bar(2, 1240))  # the short loses 9_600 (its fee was 80)
    [btc, eth] = await paper.fetch_positions()
    # what backs BTC: 9918 - 9600 - ETH's maintenance 49_600 * 0.004 = 119.6
    assert btc.side is PositionSide.LONG
    assert btc.liquidation_price == (D(1000) - D("119.6")) / D("9.96")
    # and ETH, backed by the wallet less BTC's maintenance (4): (9914 + 40_000) / 40.16
    assert eth.liquidation_price == D(49_914) / D("40.16")
    [fill] = await paper.on_candle(BTC, bar(2, 95, high=96, low=88, close=90))
    assert is_liquidation(fill.client_order_id)  # cross: ETH's loss took BTC down


async def test_cross_liquidation_comes_before_a_stop_the_moved_level_passed() -> None:
    """ETH's loss lifts BTC's liquidation price above BTC's own stop (85): a candle falling
    from 95 to 80 meets the liquidation first."""
    paper = await long_5x(MarginMode.CROSS)
    await paper.create_order(
        preq("sl", SELL, "10", type_=OrderType.STOP_MARKET, stop="85", reduce_only=True)
    )
    await paper.on_candle(ETH, bar(0, 1000))
    await paper.create_order(preq("eth", SELL, "40", symbol=ETH))
    await paper.on_candle(ETH, bar(1, 1000))
    await paper.on_candle(ETH, bar(2, 1240))
    [btc, _] = await paper.fetch_positions()
    assert btc.liquidation_price is not None and btc.liquidation_price > 85
    [fill] = await paper.on_candle(BTC, bar(2, 95, high=96, low=80, close=82))
    assert is_liquidation(fill.client_order_id)
    assert (await paper.fetch_order("sl", BTC)).status is OrderStatus.CANCELED
