"""The paper exchange on USDT-margined perpetuals: margin, leverage, PnL, flips, reduce-only.

No slippage here so the sums stay short: maker 0.1 %, taker 0.2 %, 10 000 USDT to start.
"""

from __future__ import annotations

import pytest

from core.domain.enums import MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.orders import OrderRequest
from core.errors import OrderRejected
from core.exchange.paper import PaperExchange
from core.exchange.paper_book import REMAINDER_CANCELED
from tests.unit.exchange.builders import BTC, NO_SLIP_FILLS, D, bar, req, started_paper

BUY, SELL = Side.BUY, Side.SELL
PERP = MarketType.PERP


def preq(cid: str, side: Side, amount: str, **kw: object) -> OrderRequest:
    kw.setdefault("leverage", 5)
    return req(cid, side, amount, market_type=PERP, **kw)  # type: ignore[arg-type]


async def perp_with(side: Side, amount: str = "10", leverage: int = 5) -> PaperExchange:
    """Return a perp account holding a position opened at 100 by a market order."""
    paper = await started_paper(fills=NO_SLIP_FILLS, market_type=PERP, max_leverage=10)
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(preq("open", side, amount, leverage=leverage))
    await paper.on_candle(BTC, bar(1, 100))
    return paper


async def test_long_locks_notional_over_leverage_as_margin_and_pays_the_taker_fee() -> None:
    paper = await perp_with(BUY)

    usdt = (await paper.fetch_balances())["USDT"]
    # notional 1000, margin 1000 / 5 = 200, fee 1000 * 0.002 = 2
    assert (usdt.total, usdt.used, usdt.free) == (D(9998), D(200), D(9798))
    [pos] = await paper.fetch_positions()
    assert (pos.side, pos.amount, pos.entry_price, pos.leverage, pos.margin) == (
        PositionSide.LONG,
        D(10),
        D(100),
        5,
        D(200),
    )


async def test_long_take_profit_books_the_gain_and_releases_margin() -> None:
    paper = await perp_with(BUY)
    await paper.create_order(
        preq("tp", SELL, "10", type_=OrderType.LIMIT, price="110", reduce_only=True)
    )

    [fill] = await paper.on_candle(BTC, bar(2, 105, high=111, low=104))

    # realized (110 - 100) * 10 = 100; maker fee 1100 * 0.001 = 1.1; 9998 + 100 - 1.1
    assert (fill.price, fill.fee) == (D(110), D("1.1"))
    usdt = (await paper.fetch_balances())["USDT"]
    assert (usdt.total, usdt.used) == (D("10096.9"), D(0))
    assert await paper.fetch_positions() == []


async def test_short_stopped_out_books_the_loss() -> None:
    paper = await perp_with(SELL, leverage=2)
    usdt = (await paper.fetch_balances())["USDT"]
    assert (usdt.total, usdt.used) == (D(9998), D(500))  # margin 1000 / 2

    await paper.create_order(
        preq("sl", BUY, "10", type_=OrderType.STOP_MARKET, stop="105", leverage=2, reduce_only=True)
    )
    [fill] = await paper.on_candle(BTC, bar(2, 102, high=106, low=101))

    # realized (100 - 105) * 10 = -50; taker fee 1050 * 0.002 = 2.1; 9998 - 50 - 2.1
    assert fill.price == D(105)
    usdt = (await paper.fetch_balances())["USDT"]
    assert (usdt.total, usdt.used) == (D("9945.9"), D(0))
    assert await paper.fetch_positions() == []


async def test_partial_close_releases_margin_in_proportion() -> None:
    paper = await perp_with(BUY)
    await paper.create_order(preq("half", SELL, "4", reduce_only=True))

    await paper.on_candle(BTC, bar(2, 120))

    # realized 20 * 4 = 80, fee 480 * 0.002 = 0.96, margin 200 - 80 released
    [pos] = await paper.fetch_positions()
    assert (pos.amount, pos.margin, pos.realized_pnl, pos.entry_price) == (
        D(6),
        D(120),
        D(80),
        D(100),
    )
    usdt = (await paper.fetch_balances())["USDT"]
    assert (usdt.total, usdt.used) == (D("10077.04"), D(120))


async def test_an_order_larger_than_the_position_flips_it() -> None:
    paper = await perp_with(BUY)
    await paper.create_order(preq("flip", SELL, "15"))

    await paper.on_candle(BTC, bar(2, 120))

    # close 10: +200; open short 5 at 120 with margin 120; fee 1800 * 0.002 = 3.6
    [pos] = await paper.fetch_positions()
    assert (pos.side, pos.amount, pos.entry_price, pos.margin) == (
        PositionSide.SHORT,
        D(5),
        D(120),
        D(120),
    )
    usdt = (await paper.fetch_balances())["USDT"]
    assert (usdt.total, usdt.used) == (D("10194.4"), D(120))


async def test_reduce_only_never_flips_its_remainder_is_canceled() -> None:
    paper = await perp_with(BUY)
    await paper.create_order(preq("close", SELL, "15", reduce_only=True))

    [fill] = await paper.on_candle(BTC, bar(2, 120))

    assert fill.amount == D(10)
    order = await paper.fetch_order("close", BTC)
    assert (order.status, order.filled, order.reason) == (
        OrderStatus.CANCELED,
        D(10),
        REMAINDER_CANCELED,
    )
    assert await paper.fetch_positions() == []
    # 9998 + 200 - 1200 * 0.002
    assert (await paper.fetch_balances())["USDT"].total == D("10195.6")


async def test_adding_to_a_position_averages_the_entry_and_adds_margin() -> None:
    paper = await perp_with(BUY)
    await paper.create_order(preq("add", BUY, "10"))

    await paper.on_candle(BTC, bar(2, 110))

    [pos] = await paper.fetch_positions()
    # entry (1000 + 1100) / 20 = 105; margin 200 + 1100 / 5 = 420
    assert (pos.amount, pos.entry_price, pos.margin) == (D(20), D(105), D(420))


async def test_leverage_rules_are_enforced_at_submission() -> None:
    paper = await perp_with(BUY)

    with pytest.raises(OrderRejected, match="leverage 20 exceeds the maximum 10"):
        await paper.create_order(preq("x1", BUY, "1", leverage=20))
    with pytest.raises(OrderRejected, match="uses leverage 5, order asks 3"):
        await paper.create_order(preq("x2", BUY, "1", leverage=3))
    with pytest.raises(OrderRejected, match="insufficient USDT"):
        await paper.create_order(preq("x3", BUY, "1000", leverage=5))  # 100 000 / 5 + 200 > 9798
    with pytest.raises(OrderRejected, match="reduce-only buy but no position"):
        await paper.create_order(preq("x4", BUY, "1", reduce_only=True))


@pytest.mark.parametrize(
    ("side", "rate", "cash"),
    [
        (BUY, "0.0001", "-0.1"),  # a long pays 10 * 100 * 0.01 % ...
        (SELL, "0.0001", "0.1"),  # ... to the shorts
        (BUY, "-0.0002", "0.2"),  # a negative rate pays the longs
    ],
)
async def test_funding_settles_on_the_position_at_the_mark(
    side: Side, rate: str, cash: str
) -> None:
    paper = await perp_with(side)
    before = (await paper.fetch_balances())["USDT"].total
    settled = await paper.apply_funding(BTC, D(rate))
    assert settled is not None
    assert (settled.amount, settled.price, settled.cash) == (D(10), D(100), D(cash))
    assert (await paper.fetch_balances())["USDT"].total == before + D(cash)
    [pos] = await paper.fetch_positions()
    assert pos.amount == D(10)  # funding moves cash, not the position


async def test_no_funding_when_flat_or_on_spot() -> None:
    perp = await started_paper(fills=NO_SLIP_FILLS, market_type=PERP, max_leverage=10)
    await perp.on_candle(BTC, bar(0, 100))
    assert await perp.apply_funding(BTC, D("0.0001")) is None  # flat
    spot = await started_paper(fills=NO_SLIP_FILLS)
    await spot.on_candle(BTC, bar(0, 100))
    await spot.create_order(req("buy", BUY, "1"))
    await spot.on_candle(BTC, bar(1, 100))
    assert await spot.apply_funding(BTC, D("0.0001")) is None  # spot has no funding
