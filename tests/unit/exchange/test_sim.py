"""The fill model: prices, fees, slippage, triggers, intrabar order and reduce-only caps.

Expected values are computed by hand in the comments: maker 0.1 %, taker 0.2 %, slippage 10 bps.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.domain.enums import Liquidity, OrderStatus, OrderType, Side
from core.domain.market import Candle
from core.domain.orders import Order, OrderRequest
from core.errors import DataError
from core.exchange.sim import (
    FillModelConfig,
    SimFill,
    fill_limit,
    fill_market,
    fill_stop,
    match_candle,
    reduce_only_cap,
    to_price,
)

D = Decimal
CFG = FillModelConfig(maker_fee=D("0.001"), taker_fee=D("0.002"), slippage_bps=D(10))


def candle(open_: float, high: float, low: float, close: float | None = None) -> Candle:
    return Candle(ts_ms=60_000, open=open_, high=high, low=low, close=close or open_, volume=1.0)


def order(
    cid: str,
    side: Side,
    type_: OrderType,
    amount: str = "1",
    *,
    price: str | None = None,
    stop: str | None = None,
    reduce_only: bool = False,
) -> Order:
    request = OrderRequest(
        client_order_id=cid,
        symbol="BTC/USDT",
        side=side,
        type=type_,
        amount=D(amount),
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        reduce_only=reduce_only,
    )
    return Order(
        request=request,
        exchange_order_id=f"x-{cid}",
        status=OrderStatus.OPEN,
        created_ms=0,
        updated_ms=0,
    )


def test_market_orders_fill_at_the_open_with_slippage_against_us_and_taker_fee() -> None:
    buy = fill_market(Side.BUY, D(100), CFG)
    sell = fill_market(Side.SELL, D(100), CFG)

    assert buy.price == D("100.1")  # 100 * 1.001
    assert sell.price == D("99.9")  # 100 * 0.999
    assert buy.liquidity is Liquidity.TAKER and buy.at_open
    assert buy.fee(D(2)) == D("0.4004")  # 2 * 100.1 * 0.002
    assert sell.fee(D(2)) == D("0.3996")  # 2 * 99.9 * 0.002


def test_limit_touched_inside_the_bar_fills_at_the_limit_as_maker() -> None:
    buy = fill_limit(Side.BUY, D(95), candle(100, 101, 94), CFG)
    sell = fill_limit(Side.SELL, D(110), candle(100, 111, 99), CFG)

    assert buy is not None and sell is not None
    assert (buy.price, buy.liquidity, buy.at_open) == (D(95), Liquidity.MAKER, False)
    assert buy.fee(D(1)) == D("0.095")  # 95 * 0.001
    assert (sell.price, sell.liquidity) == (D(110), Liquidity.MAKER)


def test_limit_not_reached_does_not_fill() -> None:
    assert fill_limit(Side.BUY, D(95), candle(100, 101, 95.5), CFG) is None
    assert fill_limit(Side.SELL, D(110), candle(100, 109.99, 99), CFG) is None
    # touching the limit exactly is enough
    assert fill_limit(Side.BUY, D(95), candle(100, 101, 95.0), CFG) is not None


def test_a_resting_limit_the_open_gaps_through_fills_at_its_own_price_as_maker() -> None:
    # Placed when the price was 100: not marketable then, so the venue matches it at its price.
    gap_buy = fill_limit(Side.BUY, D(95), candle(94, 96, 93), CFG, reference=D(100))
    gap_sell = fill_limit(Side.SELL, D(110), candle(112, 113, 109), CFG, reference=D(100))

    assert gap_buy is not None and gap_sell is not None
    assert (gap_buy.price, gap_buy.liquidity, gap_buy.at_open) == (D(95), Liquidity.MAKER, True)
    assert (gap_sell.price, gap_sell.liquidity, gap_sell.at_open) == (
        D(110),
        Liquidity.MAKER,
        True,
    )
    assert gap_buy.moment == D(94)  # it filled at the open's moment


def test_a_limit_marketable_when_placed_takes_the_open_never_worse_than_the_limit() -> None:
    # Placed when the price was already through it (a buy at 95 with the price at 94).
    gap_buy = fill_limit(Side.BUY, D(95), candle(94, 96, 93), CFG, reference=D(94))
    near_buy = fill_limit(Side.BUY, D(95), candle(94.95, 96, 93), CFG, reference=D(94.9))
    gap_sell = fill_limit(Side.SELL, D(110), candle(112, 113, 109), CFG, reference=D(110))

    assert gap_buy is not None and near_buy is not None and gap_sell is not None
    assert (gap_buy.price, gap_buy.liquidity, gap_buy.at_open) == (
        D("94.094"),
        Liquidity.TAKER,
        True,
    )
    assert near_buy.price == D(95)  # 94.95 * 1.001 = 95.04495 is capped at the limit
    assert gap_sell.price == D("111.888")  # 112 * 0.999
    # Marketable when placed, but the open moved away: it rests and fills at its limit.
    moved = fill_limit(Side.BUY, D(95), candle(96, 97, 94.5), CFG, reference=D(94))
    assert moved is not None and (moved.price, moved.liquidity) == (D(95), Liquidity.MAKER)


def test_stop_fills_at_the_worse_of_stop_and_open_plus_slippage() -> None:
    sell = fill_stop(Side.SELL, D(95), candle(100, 101, 94), CFG)
    sell_gap = fill_stop(Side.SELL, D(95), candle(93, 94, 90), CFG)
    buy = fill_stop(Side.BUY, D(105), candle(100, 106, 99), CFG)
    buy_gap = fill_stop(Side.BUY, D(105), candle(107, 108, 106), CFG)

    assert sell is not None and sell_gap is not None and buy is not None and buy_gap is not None
    assert (sell.price, sell.at_open) == (D("94.905"), False)  # 95 * 0.999
    assert (sell_gap.price, sell_gap.at_open) == (D("92.907"), True)  # open 93 * 0.999
    assert buy.price == D("105.105")  # 105 * 1.001
    assert buy_gap.price == D("107.107")  # open 107 * 1.001
    assert sell.liquidity is Liquidity.TAKER and sell.fee(D(1)) == D("0.18981")


def test_stop_not_traded_through_does_not_trigger() -> None:
    assert fill_stop(Side.SELL, D(95), candle(100, 101, 95.01), CFG) is None
    assert fill_stop(Side.BUY, D(105), candle(100, 104.99, 99), CFG) is None
    assert fill_stop(Side.SELL, D(95), candle(100, 101, 95.0), CFG) is not None


def test_candle_touching_stop_and_take_profit_fills_the_stop_first() -> None:
    tp = order("tp", Side.SELL, OrderType.LIMIT, price="110", reduce_only=True)
    sl = order("sl", Side.SELL, OrderType.STOP_MARKET, stop="95", reduce_only=True)

    match = match_candle([tp, sl], candle(100, 111, 94), D(1), CFG)

    assert [(f.order.client_order_id, f.amount, f.fill.price) for f in match.fills] == [
        ("sl", D(1), D("94.905"))
    ]
    assert [(c.order.client_order_id, c.reason) for c in match.canceled] == [
        ("tp", "reduce-only: no position left to reduce")
    ]
    assert match.position == 0


def test_take_profit_gapped_at_the_open_comes_before_an_intrabar_stop() -> None:
    tp = order("tp", Side.SELL, OrderType.LIMIT, price="110", reduce_only=True)
    sl = order("sl", Side.SELL, OrderType.STOP_MARKET, stop="95", reduce_only=True)

    match = match_candle([sl, tp], candle(112, 113, 94), D(1), CFG, reference=D(100))

    assert [(f.order.client_order_id, f.fill.price) for f in match.fills] == [("tp", D(110))]
    assert [c.order.client_order_id for c in match.canceled] == ["sl"]


def test_market_fills_first_and_later_orders_see_the_new_position() -> None:
    sl = order("sl", Side.SELL, OrderType.STOP_MARKET, "1", stop="95", reduce_only=True)
    buy = order("buy", Side.BUY, OrderType.MARKET, "2")

    match = match_candle([sl, buy], candle(100, 101, 94), D(0), CFG)

    assert [(f.order.client_order_id, f.amount) for f in match.fills] == [("buy", 2), ("sl", 1)]
    assert match.position == D(1)


def test_reduce_only_fill_is_capped_at_the_position_and_never_reverses_it() -> None:
    assert reduce_only_cap(Side.SELL, D(1), D("0.5")) == D("0.5")
    assert reduce_only_cap(Side.SELL, D(1), D(3)) == D(1)
    assert reduce_only_cap(Side.BUY, D(1), D(-2)) == D(1)
    assert reduce_only_cap(Side.BUY, D(1), D(2)) == 0  # would increase a long
    assert reduce_only_cap(Side.SELL, D(1), D(0)) == 0

    close = order("close", Side.SELL, OrderType.MARKET, "1", reduce_only=True)
    match = match_candle([close], candle(100, 101, 99), D("0.25"), CFG)
    assert [f.amount for f in match.fills] == [D("0.25")]
    assert match.position == 0


def test_refused_fill_is_canceled_with_the_reason_and_leaves_the_position() -> None:
    buy = order("buy", Side.BUY, OrderType.MARKET, "2")
    seen: list[SimFill] = []

    def refuse(sim_fill: SimFill) -> str:
        seen.append(sim_fill)
        return "insufficient USDT"

    match = match_candle([buy], candle(100, 101, 99), D(0), CFG, refuse)

    assert match.fills == ()
    assert [(c.order.client_order_id, c.reason) for c in match.canceled] == [
        ("buy", "insufficient USDT")
    ]
    assert match.position == 0
    assert seen[0].amount == D(2) and seen[0].fee == D("0.4004")


def test_orders_the_candle_does_not_reach_and_finished_orders_are_left_out() -> None:
    far = order("far", Side.BUY, OrderType.LIMIT, price="50")
    done = order("done", Side.BUY, OrderType.MARKET).with_(status=OrderStatus.FILLED)

    match = match_candle([far, done], candle(100, 101, 99), D(0), CFG)

    assert match.fills == () and match.canceled == ()


def test_candle_floats_become_exact_decimals_and_bad_prices_are_refused() -> None:
    assert to_price(100.1) == D("100.1")
    with pytest.raises(DataError, match="nan"):
        to_price(float("nan"))
    with pytest.raises(DataError, match="-1"):
        to_price(-1.0)


def test_config_refuses_impossible_rates() -> None:
    with pytest.raises(ValueError, match="taker_fee"):
        FillModelConfig(taker_fee=D("-0.001"))
    with pytest.raises(ValueError, match="slippage_bps"):
        FillModelConfig(slippage_bps=D(10_000))
