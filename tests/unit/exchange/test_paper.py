"""The paper exchange on spot: fills on the next candle, fees, reservations, rejections.

Fees 0.1 % maker / 0.2 % taker, slippage 10 bps, 10 000 USDT to start; sums are done by hand.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import SimClock
from core.domain.enums import Liquidity, MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.orders import Fill
from core.domain.portfolio import Balance
from core.errors import InvariantViolation, OrderRejected, TemporaryError
from core.exchange.paper import PaperExchange
from storage.memory import MemoryFillRepo, MemoryStorage
from tests.unit.exchange.builders import BTC, SPOT_FILLS, T0_MS, D, bar, req, started_paper

BUY, SELL = Side.BUY, Side.SELL


async def test_first_start_seeds_the_starting_balance_once() -> None:
    storage = MemoryStorage()
    first = await started_paper(storage)
    assert await first.fetch_balances() == {"USDT": _usdt(free="10000")}

    second = await started_paper(storage, starting_balance=D(1))

    assert (await second.fetch_balances())["USDT"].total == D(10_000)


async def test_market_order_waits_for_the_next_candle_and_fills_at_its_open() -> None:
    paper = await started_paper()
    await paper.on_candle(BTC, bar(0, 100))

    order = await paper.create_order(req("b1", BUY, "2"))
    # reserved at the mark with slippage and the larger fee: 2 * 100.1 * 1.002
    assert (await paper.fetch_balances())["USDT"] == _usdt(free="9799.3996", used="200.6004")
    assert order.status is OrderStatus.OPEN

    fills = await paper.on_candle(BTC, bar(1, 101, high=102, low=100, close=101.5))

    # 2 * 101 * 1.001 = 202.202, fee 202.202 * 0.002 = 0.404404
    assert [(f.amount, f.price, f.fee, f.liquidity) for f in fills] == [
        (D(2), D("101.101"), D("0.404404"), Liquidity.TAKER)
    ]
    assert fills[0].ts_ms == T0_MS + 60_000
    balances = await paper.fetch_balances()
    assert balances["USDT"] == _usdt(free="9797.393596")
    assert balances["BTC"].total == D(2)
    [position] = await paper.fetch_positions()
    assert (position.side, position.amount, position.entry_price) == (
        PositionSide.LONG,
        D(2),
        D("101.101"),
    )
    done = await paper.fetch_order("b1", BTC)
    assert (done.status, done.filled, done.average_price, done.fee_paid) == (
        OrderStatus.FILLED,
        D(2),
        D("101.101"),
        D("0.404404"),
    )


async def test_selling_holdings_returns_quote_minus_fee_and_closes_the_position() -> None:
    paper = await started_paper()
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("b1", BUY, "2"))
    await paper.on_candle(BTC, bar(1, 101))
    await paper.create_order(req("s1", SELL, "2"))

    [fill] = await paper.on_candle(BTC, bar(2, 110))

    # 2 * 110 * 0.999 = 219.78, fee 0.43956; 9797.393596 + 219.78 - 0.43956
    assert (fill.price, fill.fee) == (D("109.89"), D("0.43956"))
    balances = await paper.fetch_balances()
    assert balances["USDT"] == _usdt(free="10016.734036")
    assert balances["BTC"].total == 0
    assert await paper.fetch_positions() == []


async def test_resting_limit_buy_reserves_quote_fills_as_maker_and_cancel_releases() -> None:
    paper = await started_paper()
    await paper.create_order(req("l1", BUY, "1", OrderType.LIMIT, price="90"))
    await paper.create_order(req("l2", BUY, "1", OrderType.LIMIT, price="80"))
    # 90 * 1.002 + 80 * 1.002
    assert (await paper.fetch_balances())["USDT"].used == D("170.34")

    fills = await paper.on_candle(BTC, bar(0, 100, low=89))
    canceled = await paper.cancel_order("l2", BTC)

    assert [(f.client_order_id, f.price, f.fee, f.liquidity) for f in fills] == [
        ("l1", D(90), D("0.09"), Liquidity.MAKER)
    ]
    assert canceled.status is OrderStatus.CANCELED
    assert (await paper.fetch_balances())["USDT"] == _usdt(free="9909.91")  # 10000 - 90 - 0.09


async def test_buying_more_than_free_is_rejected_and_recorded() -> None:
    storage = MemoryStorage()
    paper = await started_paper(storage)

    with pytest.raises(
        OrderRejected, match=r"insufficient USDT: order needs 10020\.\d*, free 10000"
    ):
        await paper.create_order(req("big", BUY, "100", OrderType.LIMIT, price="100"))

    stored = await storage.orders.get("big")
    assert stored is not None and stored.status is OrderStatus.REJECTED
    assert "insufficient USDT" in stored.reason
    assert (await paper.fetch_order("big", BTC)) == stored
    assert await paper.fetch_open_orders() == []
    assert await paper.fetch_balances() == {"USDT": _usdt(free="10000")}
    # resubmitting the id returns the recorded rejection; nothing new is created
    assert await paper.create_order(req("big", BUY, "100", OrderType.LIMIT, price="100")) == stored
    assert len(await storage.orders.list_all()) == 1


async def test_selling_more_than_held_is_rejected() -> None:
    paper = await started_paper()
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("b1", BUY, "2"))
    await paper.on_candle(BTC, bar(1, 100))

    with pytest.raises(OrderRejected, match="insufficient BTC: order needs 3, free 2"):
        await paper.create_order(req("s1", SELL, "3", OrderType.LIMIT, price="120"))
    with pytest.raises(OrderRejected, match="no position on ETH/USDT"):
        await paper.create_order(
            req("s2", SELL, "1", OrderType.LIMIT, price="1", reduce_only=True, symbol="ETH/USDT")
        )
    assert (await paper.fetch_order("s1", BTC)).status is OrderStatus.REJECTED


async def test_spot_orders_below_the_minimum_notional_are_rejected_like_the_venue() -> None:
    paper = await started_paper(min_notional=D(5))
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("b1", BUY, "1"))
    await paper.on_candle(BTC, bar(1, 100))
    # 0.04 * 101.97 = 4.08: a real spot venue refuses it, reduce-only flag or not
    small = req("tp", SELL, "0.04", OrderType.LIMIT, price="101.97", reduce_only=True)
    with pytest.raises(OrderRejected, match="below the minimum notional 5"):
        await paper.create_order(small)
    with pytest.raises(OrderRejected, match=r"order value 4\.9000 is below"):
        await paper.create_order(req("m", BUY, "0.049"))  # at the mark 100
    await paper.create_order(
        req("ok", SELL, "0.05", OrderType.LIMIT, price="101", reduce_only=True)
    )


async def test_perp_reduce_only_orders_are_exempt_from_the_minimum_notional() -> None:
    paper = await started_paper(market_type=MarketType.PERP, max_leverage=2, min_notional=D(5))
    await paper.on_candle(BTC, bar(0, 100))
    with pytest.raises(OrderRejected, match="below the minimum notional"):
        await paper.create_order(req("o", BUY, "0.01", market_type=MarketType.PERP))
    await paper.create_order(req("b1", BUY, "1", market_type=MarketType.PERP))
    await paper.on_candle(BTC, bar(1, 100))
    # Binance USD-M takes a reduce-only order of any size (a remainder must be closable).
    stop = req(
        "s", SELL, "0.01", OrderType.STOP_MARKET, stop="95", reduce_only=True,
        market_type=MarketType.PERP,
    )  # fmt: skip
    assert (await paper.create_order(stop)).status is OrderStatus.OPEN


async def test_orders_the_account_cannot_trade_are_rejected_with_the_reason() -> None:
    paper = await started_paper()
    cases = {
        "no price seen yet for BTC/USDT": req("m1", BUY, "1"),
        "quoted in EUR": req("e1", BUY, "1", OrderType.LIMIT, price="1", symbol="BTC/EUR"),
        "this paper account trades spot": req(
            "p1", BUY, "1", OrderType.LIMIT, price="1", market_type=MarketType.PERP
        ),
    }
    for reason, request in cases.items():
        with pytest.raises(OrderRejected, match=reason):
            await paper.create_order(request)


async def test_stop_loss_wins_when_a_candle_touches_stop_and_take_profit() -> None:
    paper = await started_paper()
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("entry", BUY, "1"))
    await paper.on_candle(BTC, bar(1, 100))
    await paper.create_order(req("tp", SELL, "1", OrderType.LIMIT, price="110", reduce_only=True))
    await paper.create_order(
        req("sl", SELL, "1", OrderType.STOP_MARKET, stop="95", reduce_only=True)
    )
    # reduce-only orders reserve nothing
    assert (await paper.fetch_balances())["BTC"].used == 0

    fills = await paper.on_candle(BTC, bar(2, 100, high=111, low=94))

    assert [(f.client_order_id, f.price) for f in fills] == [("sl", D("94.905"))]
    tp = await paper.fetch_order("tp", BTC)
    assert (tp.status, tp.reason) == (
        OrderStatus.CANCELED,
        "reduce-only: no position left to reduce",
    )
    assert await paper.fetch_positions() == []


async def test_market_buy_the_account_cannot_pay_at_the_new_open_is_canceled() -> None:
    paper = await started_paper()
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("b1", BUY, "99"))  # 99 * 100.1 * 1.002 = 9929.82 fits

    fills = await paper.on_candle(BTC, bar(1, 110))  # 99 * 110.11 * 1.002 does not

    assert fills == []
    order = await paper.fetch_order("b1", BTC)
    assert order.status is OrderStatus.CANCELED
    assert order.reason.startswith("insufficient USDT at fill")
    assert await paper.fetch_balances() == {"USDT": _usdt(free="10000")}


async def test_a_candle_not_newer_than_the_last_is_ignored() -> None:
    paper = await started_paper()
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("b1", BUY, "1"))

    assert await paper.on_candle(BTC, bar(0, 100)) == []
    assert len(await paper.on_candle(BTC, bar(1, 100))) == 1


async def test_a_failed_write_changes_nothing_and_the_candle_can_be_retried() -> None:
    storage = MemoryStorage()
    flaky = _FlakyFills(storage._journal, storage.orders)
    storage.fills = flaky
    paper = await started_paper(storage)
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("b1", BUY, "1"))
    before = await paper.fetch_balances()

    with pytest.raises(TemporaryError):
        await paper.on_candle(BTC, bar(1, 100))

    assert await paper.fetch_balances() == before
    assert [o.client_order_id for o in await paper.fetch_open_orders()] == ["b1"]
    assert (await storage.orders.get("b1")).status is OrderStatus.OPEN  # type: ignore[union-attr]
    assert len(await paper.on_candle(BTC, bar(1, 100))) == 1
    assert len(await storage.fills.list_fills("b1")) == 1


async def test_reusing_a_client_id_for_a_different_order_is_rejected() -> None:
    paper = await started_paper()
    await paper.create_order(req("c1", BUY, "1", OrderType.LIMIT, price="90"))

    with pytest.raises(OrderRejected, match="already used by a different order"):
        await paper.create_order(req("c1", SELL, "1", OrderType.LIMIT, price="90"))


async def test_calls_before_start_are_refused() -> None:
    paper = PaperExchange(
        storage=MemoryStorage(),
        clock=SimClock(T0_MS),
        fill_config=SPOT_FILLS,
        starting_balance=D(1),
    )
    with pytest.raises(InvariantViolation, match="before start"):
        await paper.fetch_balances()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(1, 400), st.integers(5_000, 20_000)),
        min_size=1,
        max_size=12,
    )
)
def test_spot_cash_and_holdings_are_conserved_up_to_fees(
    steps: list[tuple[bool, int, int]],
) -> None:
    """Quote = start - buys + sells - fees and base = buys - sells, for any market sequence."""
    fills, paper = asyncio.run(_run_market_sequence(steps))
    balances = asyncio.run(paper.fetch_balances())

    spent = sum((f.notional if f.side is BUY else -f.notional for f in fills), D(0))
    fees = sum((f.fee for f in fills), D(0))
    bought = sum((f.amount if f.side is BUY else -f.amount for f in fills), D(0))
    assert balances["USDT"].total == D(10_000) - spent - fees
    assert balances["USDT"].used == 0 and balances["USDT"].free >= 0
    assert (balances["BTC"].total if "BTC" in balances else 0) == bought
    positions = asyncio.run(paper.fetch_positions())
    assert sum((p.amount for p in positions), D(0)) == bought


async def _run_market_sequence(
    steps: list[tuple[bool, int, int]],
) -> tuple[list[Fill], PaperExchange]:
    paper = await started_paper()
    await paper.on_candle(BTC, bar(0, 100))
    fills: list[Fill] = []
    for i, (is_buy, cents, price_cents) in enumerate(steps, start=1):
        try:
            await paper.create_order(req(f"o{i}", BUY if is_buy else SELL, str(D(cents) / 100)))
        except OrderRejected:
            pass  # e.g. selling more than held: recorded, nothing changes
        fills += await paper.on_candle(BTC, bar(i, price_cents / 100))
    for order in await paper.fetch_open_orders():
        raise AssertionError(f"order left open: {order}")
    return fills, paper


class _FlakyFills(MemoryFillRepo):
    """A fill repo whose first write fails like a disk hiccup."""

    failed = False

    async def add(self, fill: Fill) -> None:
        if not self.failed:
            self.failed = True
            raise TemporaryError("disk hiccup")
        await super().add(fill)


def _usdt(*, free: str, used: str = "0") -> Balance:
    # The paper account reports its wallet: unrealized PnL is never in it.
    return Balance(asset="USDT", free=D(free), used=D(used), includes_unrealized_pnl=False)


async def test_balances_are_written_only_when_an_order_or_a_fill_moves_them() -> None:
    storage = MemoryStorage()
    paper = await started_paper(storage)
    writes: list[list[str]] = []
    write = storage.balances.set_balances

    async def counted(balances: list[Balance]) -> None:
        writes.append(sorted(b.asset for b in balances))
        await write(balances)

    storage.balances.set_balances = counted  # type: ignore[method-assign]
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("b1", BUY, "2"))  # reserves quote
    await paper.on_candle(BTC, bar(1, 101))  # fills: quote and BTC move
    assert writes == [["USDT"], ["BTC", "USDT"]]
    # An exit (reduce-only) reserves nothing: placing and canceling it writes no balance.
    tp = req("tp", SELL, "1", OrderType.LIMIT, price="150", reduce_only=True)
    assert (await paper.create_order(tp)).status is OrderStatus.OPEN
    await paper.on_candle(BTC, bar(2, 102))  # the candle reaches nothing: balances as they were
    await paper.cancel_order("tp", BTC)
    assert len(writes) == 2
    assert await storage.balances.get_balances() == await paper.fetch_balances()
