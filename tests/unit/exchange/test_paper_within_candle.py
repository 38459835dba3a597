"""Orders placed in reaction to a fill inside a candle trade against the rest of that candle.

Fees 0.1 % maker / 0.2 % taker, slippage 10 bps (see builders). The process does this through
``MarketService``; here the reactions are placed by hand between the venue's calls.
"""

from __future__ import annotations

from core.domain.enums import OrderStatus, OrderType, Side
from core.domain.orders import OrderRequest
from tests.unit.exchange.builders import BTC, MINUTE_MS, T0_MS, D, bar, req, started_paper

BUY, SELL = Side.BUY, Side.SELL


def stop(cid: str, price: str, amount: str = "1") -> OrderRequest:
    return req(cid, SELL, amount, OrderType.STOP_MARKET, stop=price, reduce_only=True)


async def test_a_stop_placed_at_the_entry_fill_sees_the_whole_entry_candle() -> None:
    paper = await started_paper()
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("e", BUY, "1"))

    [entry] = await paper.on_candle(BTC, bar(1, 100, high=100.5, low=90, close=99))
    placed = await paper.create_order(stop("s", "98"))
    [stopped] = await paper.on_candle_rest(BTC)
    paper.end_candle(BTC)

    assert placed.created_ms == entry.ts_ms == T0_MS + MINUTE_MS  # it exists from the fill on
    assert (stopped.client_order_id, stopped.price) == ("s", D("97.902"))  # 98 * 0.999
    assert stopped.ts_ms == T0_MS + MINUTE_MS
    assert await paper.fetch_positions() == []


async def test_after_a_fill_inside_the_candle_only_the_move_to_the_close_counts() -> None:
    paper = await started_paper()
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("e", BUY, "2"))
    await paper.on_candle(BTC, bar(1, 100))
    await paper.create_order(req("tp", SELL, "1", OrderType.LIMIT, price="110", reduce_only=True))
    # Opens 100, dips to 95 and rises through 110 (in some order), closes 105.
    [tp] = await paper.on_candle(BTC, bar(2, 100, high=112, low=95, close=105))
    assert (tp.price, tp.ts_ms) == (D(110), T0_MS + 2 * MINUTE_MS)

    # A stop at 104 might have been reached by the dip, but the dip may have come before the
    # take-profit: only 110 -> 105 surely came after it, which does not reach 104.
    await paper.create_order(stop("s1", "104"))
    assert await paper.on_candle_rest(BTC) == []
    await paper.cancel_order("s1", BTC)
    # A stop at 106 is crossed on the way from 110 down to the close at 105.
    await paper.create_order(stop("s2", "106"))
    [stopped] = await paper.on_candle_rest(BTC)
    assert (stopped.client_order_id, stopped.price) == ("s2", D("105.894"))  # 106 * 0.999


async def test_after_end_candle_orders_wait_for_the_next_candle() -> None:
    paper = await started_paper()
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("e", BUY, "1"))
    await paper.on_candle(BTC, bar(1, 100, low=90))
    paper.end_candle(BTC)

    late = await paper.create_order(stop("s", "98"))

    assert late.created_ms == T0_MS  # the clock's time, not the candle's
    assert await paper.on_candle_rest(BTC) == []
    assert (await paper.fetch_order("s", BTC)).status is OrderStatus.OPEN
