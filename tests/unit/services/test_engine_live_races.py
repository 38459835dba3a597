"""Live races: fills that happen while we cancel, orders whose answers never come, cancels that
time out. The venue is ``ReduceOnlyVenue``: the test suite's FakeExchange (orders rest until the
test fills them) plus the venue rules these races turn on, pinned here:

* a reduce-only order is refused when there is no position to reduce (Binance -2022);
* a reduce-only market order fills at most the position; the venue expires the rest.

The engine enters 50 at 100 (decided on candle 0): TP1 15, TP2 15, TP3 20, stop 50.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from core.domain.enums import OrderStatus, OrderType
from core.domain.events import OrderFilled, TradeClosed
from core.domain.market import Candle
from core.domain.orders import Order, OrderRequest
from core.errors import DataError, OrderRejected, TemporaryError
from core.services.execution import client_order_id
from tests.fakes import FakeExchange
from tests.unit.services.engine_harness import SYMBOL, at
from tests.unit.services.test_engine_venue_sync import ENTRY, STOP, TP1, Live, live, quiet


class ReduceOnlyVenue(FakeExchange):
    """FakeExchange with the two reduce-only rules of real venues (see module docstring)."""

    async def create_order(self, request: OrderRequest) -> Order:
        if request.reduce_only and request.client_order_id not in self.orders:
            if not any(p.symbol == request.symbol for p in self.positions):
                self._enter("create_order", request)
                raise OrderRejected(f"{self.name}: ReduceOnly Order is rejected")
        return await super().create_order(request)

    def fill_market_exits(self, price: D) -> None:
        """Fill every open reduce-only market order up to the position; expire the rest."""
        for cid, order in list(self.orders.items()):
            req = order.request
            if not (order.is_open and req.type is OrderType.MARKET and req.reduce_only):
                continue
            held = sum((p.amount for p in self.positions if p.symbol == req.symbol), D(0))
            if held > 0:
                self.script_fill(cid, price, amount=min(held, order.remaining))
            if self.orders[cid].is_open:
                self.orders[cid] = self.orders[cid].with_(status=OrderStatus.CANCELED)


def exit_candle(i: int) -> Candle:
    return Candle(ts_ms=at(i), open=100, high=102, low=99.8, close=101, volume=1)


async def entered(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **script: object
) -> tuple[Live, ReduceOnlyVenue]:
    lv = await live(monkeypatch, tmp_path, venue_class=ReduceOnlyVenue, **script)
    assert isinstance(lv.venue, ReduceOnlyVenue)
    lv.venue.script_fill(ENTRY, D(100))
    await lv.engine.sync_with_venue()  # the ladder and the stop go out
    return lv, lv.venue


def fills(lv: Live) -> list[tuple[str, D]]:
    return [(e.client_order_id, e.amount) for e in lv.events if isinstance(e, OrderFilled)]


def closed(lv: Live) -> list[TradeClosed]:
    return [e for e in lv.events if isinstance(e, TradeClosed)]


async def test_a_take_profit_that_filled_while_we_cancel_it_is_booked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await entered(monkeypatch, tmp_path, exit_long={at(1)})
    venue.script_fill(TP1, D("101.95"))  # between two polls: nobody has told us yet

    await lv.engine.on_candle(SYMBOL, exit_candle(1))  # the exit signal cancels the legs

    assert (TP1, D(15)) in fills(lv)  # the cancel found the fill and reported it
    [exit_order] = [o for o in venue.orders.values() if o.request.tag.startswith("EXIT")]
    assert exit_order.request.amount == D(35)  # what is left, not the plan's 50
    venue.fill_market_exits(D(101))
    await lv.engine.sync_with_venue()
    [done] = closed(lv)
    assert done.amount == D(50) and done.exit_reason == "SIGNAL"
    assert SYMBOL not in lv.engine.trades
    assert lv.open_cids() == []  # the stop went with it


async def test_a_take_profit_partly_filled_when_canceled_reports_its_part(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await entered(monkeypatch, tmp_path, exit_long={at(1)})
    venue.script_fill(TP1, D("101.95"), amount=D(5))  # 5 of 15, then our cancel

    await lv.engine.on_candle(SYMBOL, exit_candle(1))

    assert (TP1, D(5)) in fills(lv)
    [exit_order] = [o for o in venue.orders.values() if o.request.tag.startswith("EXIT")]
    assert exit_order.request.amount == D(45)


async def test_a_refused_market_exit_is_sent_again_on_the_next_cycle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await entered(monkeypatch, tmp_path, exit_long={at(1)})
    venue.fail_next("create_order", OrderRejected("binance -4131: PERCENT_PRICE filter"))
    await lv.engine.on_candle(SYMBOL, exit_candle(1))  # refused: nothing went out
    assert not [o for o in venue.orders.values() if o.request.tag.startswith("EXIT")]
    assert STOP in lv.open_cids()  # the stop still guards the position

    await lv.engine.on_candle(SYMBOL, quiet(2))  # no signal now, but the plan is exiting
    [exit_order] = [o for o in venue.orders.values() if o.request.tag.startswith("EXIT")]
    assert exit_order.request.amount == D(50)
    venue.fill_market_exits(D(100))
    await lv.engine.sync_with_venue()
    assert [e.exit_reason for e in closed(lv)] == ["SIGNAL"]


async def test_a_market_exit_whose_answer_timed_out_is_tracked_until_the_venue_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await entered(monkeypatch, tmp_path, exit_long={at(1)})
    original = venue.create_order

    async def accepted_then_timed_out(request: OrderRequest) -> Order:
        order = await original(request)
        if request.type is OrderType.MARKET:
            raise TemporaryError("binance POST /fapi/v1/order: RequestTimeout")
        return order

    venue.create_order = accepted_then_timed_out  # type: ignore[method-assign]
    await lv.engine.on_candle(SYMBOL, exit_candle(1))
    venue.create_order = original  # type: ignore[method-assign]
    [exit_order] = [o for o in venue.orders.values() if o.request.tag.startswith("EXIT")]

    venue.fill_market_exits(D("99.9"))  # it had reached the venue, and fills
    await lv.engine.sync_with_venue()

    assert (exit_order.client_order_id, D(50)) in fills(lv)
    assert [e.exit_reason for e in closed(lv)] == ["SIGNAL"]
    assert len([o for o in venue.orders.values() if o.request.tag.startswith("EXIT")]) == 1


async def test_a_cancel_that_timed_out_is_asked_again_and_no_stop_outlives_its_trade(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await entered(monkeypatch, tmp_path)
    venue.script_fill(TP1, D("101.95"))
    for _ in range(2):  # the cancel, and its retry at the end of the same sync
        venue.fail_next("cancel_order", TemporaryError("binance DELETE /fapi/v1/order: timeout"))
    await lv.engine.sync_with_venue()  # TP1: the stop moves to break-even; the old cancel fails

    trade = lv.engine.trades[SYMBOL]
    assert STOP in trade.canceling  # not forgotten: the venue has not confirmed
    assert venue.orders[STOP].is_open

    await lv.engine.sync_with_venue()  # asked again: now it goes
    assert not venue.orders[STOP].is_open and trade.canceling == {}
    stops = [o for o in venue.orders.values() if o.is_open and o.request.stop_price is not None]
    assert len(stops) == 1 and stops[0].request.amount == D(35)


async def test_a_trade_is_kept_until_its_last_cancel_is_confirmed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await entered(monkeypatch, tmp_path, exit_long={at(1)})
    for _ in range(3):  # the cancels of TP1..TP3 and of the stop keep timing out
        venue.fail_next("cancel_order", TemporaryError("RequestTimeout"))
    await lv.engine.on_candle(SYMBOL, exit_candle(1))
    venue.fill_market_exits(D(101))
    for _ in range(3):
        venue.fail_next("cancel_order", TemporaryError("RequestTimeout"))
    await lv.engine.sync_with_venue()  # flat, recorded; the stop's cancel is unconfirmed

    assert len(closed(lv)) == 1
    trade = lv.engine.trades.get(SYMBOL)
    assert trade is not None and trade.finished and trade.canceling  # no new entry here yet
    await lv.engine.sync_with_venue()
    await lv.engine.sync_with_venue()
    assert SYMBOL not in lv.engine.trades
    assert lv.open_cids() == []
    assert len(closed(lv)) == 1  # recorded once


class OneSymbolBroken(ReduceOnlyVenue):
    """Every question about BTC/USDT's orders gets an answer the adapter cannot use."""

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        if symbol == "BTC/USDT":
            self._enter("fetch_order", client_order_id, symbol)
            raise DataError("binance: malformed order answer")
        return await super().fetch_order(client_order_id, symbol)


async def test_one_symbols_trouble_does_not_starve_the_others_sync(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv = await live(monkeypatch, tmp_path, venue_class=OneSymbolBroken)
    await lv.engine.on_candle("ETH/USDT", quiet(0))  # ETH enters on the same candle
    eth_entry = client_order_id("ETH/USDT", at(0), "e")
    lv.venue.script_fill(eth_entry, D(100))

    for _ in range(2):
        await lv.engine.sync_with_venue()  # BTC fails every time; ETH must still be seen

    eth = lv.engine.trades["ETH/USDT"]
    assert eth.amount > 0 and eth.plan is not None
    assert any(o.symbol == "ETH/USDT" and o.request.stop_price for o in lv.venue.orders.values())


async def test_live_orders_are_sized_and_priced_on_the_venues_grid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The venue trades BTC in steps of 0.001 at ticks of 0.1 (the settings say 0.00001 and
    0.01): every amount and price the engine sends is on the venue's grid, so nothing is cut
    off by the venue and a take-profit that fills is whole."""
    from core.domain.market_rules import MarketRules

    lv = await live(monkeypatch, tmp_path)
    lv.engine.use_market_rules(
        {
            "ETH/USDT": MarketRules(
                symbol="ETH/USDT",
                amount_step=D("0.001"),
                price_tick=D("0.1"),
                min_amount=D("0.001"),
                min_notional=D(5),
            )
        }
    )
    await lv.engine.on_candle("ETH/USDT", quiet(0))
    eth_entry = client_order_id("ETH/USDT", at(0), "e")
    lv.venue.script_fill(eth_entry, D("100.013"))
    await lv.engine.sync_with_venue()

    eth = [o.request for o in lv.venue.orders.values() if o.symbol == "ETH/USDT"]
    assert len(eth) == 5  # the entry, the stop, three take-profits
    for req in eth:
        assert req.amount % D("0.001") == 0, req
        for price in (req.price, req.stop_price):
            assert price is None or price % D("0.1") == 0, req
    trade = lv.engine.trades["ETH/USDT"]
    assert trade.plan is not None
    [tp1] = [
        o for o in lv.venue.orders.values() if o.request.tag == "TP1" and o.symbol == "ETH/USDT"
    ]
    lv.venue.script_fill(tp1.client_order_id, tp1.request.price or D(0))
    await lv.engine.sync_with_venue()
    stop = next(
        o
        for o in lv.venue.orders.values()
        if o.is_open and o.symbol == "ETH/USDT" and o.request.stop_price
    )
    assert (
        stop.request.stop_price is not None and stop.request.stop_price > trade.entry_price
    )  # break-even
