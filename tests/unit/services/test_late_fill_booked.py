"""A spot exit order the venue filled after its trade closed, past the position (a take-profit
that filled as the stop did, before our cancel came: a spot limit sell is not reduce-only), is
booked, not only alerted: a record of its own beside the trade's (exit LATE, the fill's amount,
price and fee), in the engine's closed trades and the trades table, so the books hold every
coin the venue sold for the trade. A perp's exits are reduce-only: there the fill's amount is
in the trade's record already, and nothing more is booked.

The venue is the test suite's FakeExchange (``test_closed_trades_recorded``'s rig: 50 bought
at 100 on candle 0, the stop at 98, the first take-profit 15 at 103).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.domain.enums import MarketType, PositionSide, Side
from core.domain.events import AlertRaised, OrderFilled, TradeClosed
from core.services.open_trade import LATE_FILL_REASON, OpenTrade
from storage.memory import MemoryStorage
from tests.unit.services.engine_harness import SYMBOL, at
from tests.unit.services.test_closed_trades_recorded import (
    ENTRY0,
    STOP0,
    Rig,
    entered_on_a_failing_disk,
    rig,
)


def sold_at_venue(r: Rig, trade_id: str) -> D:
    """Return what the venue sold for the trade's orders (its ids share the entry's head)."""
    head = trade_id.rpartition("-")[0]
    return sum(
        (
            f.amount
            for f in r.venue.fills
            if f.side is Side.SELL and f.client_order_id.startswith(head)
        ),
        D(0),
    )


def sold_in_books(records: list) -> D:  # type: ignore[type-arg]
    return sum((leg.amount for t in records for leg in t.legs), D(0))


async def stopped_out_and_late_leg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outage: bool
) -> tuple[Rig, MemoryStorage, str]:
    """The stop fills 50 at 98 and, before our cancel comes, the first take-profit 15 at 103;
    the database refuses writes meanwhile when ``outage``, then takes them again."""
    r, storage, trades, kv = await entered_on_a_failing_disk(monkeypatch, tmp_path)
    first_leg = r.engine.trades[SYMBOL].working["TP1"]
    trades.down = kv.down = outage
    r.venue.script_fill(STOP0, D(98))
    r.venue.script_fill(first_leg, D(103), fee=D("0.75"))
    await r.engine.sync_with_venue()
    trades.down = kv.down = False
    await r.engine.sync_with_venue()
    await r.engine.sync_with_venue()
    return r, storage, first_leg


@pytest.mark.parametrize("outage", [False, True], ids=["database up", "database down"])
async def test_a_spot_take_profit_that_filled_after_the_stop_closed_the_trade_is_booked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outage: bool
) -> None:
    r, storage, first_leg = await stopped_out_and_late_leg(monkeypatch, tmp_path, outage)

    closed, late = r.engine.closed_trades
    assert closed.trade_id == ENTRY0 and closed.exit_reason == "SL" and closed.amount == 50
    assert late.exit_reason == LATE_FILL_REASON and late.trade_id.startswith(first_leg)
    assert (late.amount, late.exit_price, late.fees) == (15, 103, D("0.75"))
    assert late.pnl == D("-0.75")  # the coins it sold were not the trade's: only its fee
    assert late.market_type is MarketType.SPOT and late.side is PositionSide.LONG
    # the books hold every coin the venue sold for the trade: 65, of which 50 were bought
    assert sold_in_books([closed, late]) == sold_at_venue(r, ENTRY0) == 65
    assert await storage.trades.list_closed() == [closed, late]  # stored, once each
    [said] = [e for e in r.events if isinstance(e, AlertRaised) and first_leg in e.detail]
    assert said.severity == "critical" and f"booked as {late.trade_id}" in said.detail
    assert f"holds {late.amount} less of the base coin" in said.detail
    # no round trip of a decision: sizing and the loss limits hear only the trade's close
    assert [e.trade_id for e in r.events if isinstance(e, TradeClosed)] == [ENTRY0]


async def test_a_late_fill_heard_again_is_booked_once_in_the_process_and_after_a_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Heard twice (a sync and a cancel's answer; a restart that asks again before its save):
    the record's id is the order's and the fill's time, so it is one record."""
    r, storage, first_leg = await stopped_out_and_late_leg(monkeypatch, tmp_path, False)
    [fill] = [e for e in r.events if isinstance(e, OrderFilled) and e.client_order_id == first_leg]
    trade = r.engine._closed_orders.get(first_leg) or r.engine.trades[SYMBOL]
    again = await r.engine._exits.book_late_fill(trade, fill)
    assert [t.trade_id for t in r.engine.closed_trades].count(again.trade_id) == 1
    restarted = rig(monkeypatch, tmp_path, storage, storage.trades, venue=r.venue)
    await restarted.engine._exits.book_late_fill(trade, fill)
    stored = await storage.trades.list_closed()
    assert [t.trade_id for t in stored] == [ENTRY0, again.trade_id]


async def test_a_perp_exit_filled_after_its_trade_closed_is_alerted_not_booked_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Reduce-only: the venue filled no more than the position held, so the amount is in the
    trade's record already (a close found at the venue, at the last price): nothing more is
    booked, the alert says so and names the fill's price."""
    storage = MemoryStorage()
    r = rig(monkeypatch, tmp_path, storage, storage.trades)
    trade = OpenTrade(
        trade_id=ENTRY0,
        symbol=SYMBOL,
        side=PositionSide.LONG,
        decided_ms=at(0),
        entry_cid=ENTRY0,
        confidence=0.6,
        atr=1.0,
        market_type=MarketType.PERP,
        leverage=2,
    )
    exit_cid = f"{ENTRY0[:-2]}-x2"
    trade.roles[exit_cid] = "EXITx2"
    fill = OrderFilled(
        ts_ms=at(3),
        fill_ts_ms=at(3),
        client_order_id=exit_cid,
        symbol=SYMBOL,
        side="sell",
        amount=D("0.115"),
        price=D("38991.7"),
        fee=D("2.24"),
        liquidity="unknown",
    )
    await r.engine._late_fill(trade, fill)
    assert r.engine.closed_trades == [] and await storage.trades.list_closed() == []
    [said] = [e for e in r.events if isinstance(e, AlertRaised)]
    assert said.title == "late fill" and "reduce-only" in said.detail
    assert "38991.7" in said.detail and "in the trade's record already" in said.detail


async def test_a_fill_reported_again_after_its_trade_closed_is_neither_booked_nor_alerted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The paper venue reports a stop's fill twice when a take-profit filled at the candle's
    open (``test_engine_defects``): counted again, the order would have filled more than the
    venue says, so the repeat is only logged; the late leg's own repeat likewise."""
    r, storage, first_leg = await stopped_out_and_late_leg(monkeypatch, tmp_path, False)
    fills = [e for e in r.events if isinstance(e, OrderFilled)]
    stop_fill = next(e for e in fills if e.client_order_id == STOP0)
    leg_fill = next(e for e in fills if e.client_order_id == first_leg)
    alerts = len([e for e in r.events if isinstance(e, AlertRaised)])
    await r.engine._bus.publish(stop_fill)  # type: ignore[attr-defined]
    await r.engine._bus.publish(leg_fill)  # type: ignore[attr-defined]
    assert [t.exit_reason for t in r.engine.closed_trades] == ["SL", LATE_FILL_REASON]
    assert len(await storage.trades.list_closed()) == 2
    assert len([e for e in r.events if isinstance(e, AlertRaised)]) == alerts
    assert f"{STOP0} reported filled" in caplog.text and "not booked twice" in caplog.text


async def test_two_late_partial_fills_of_one_order_at_one_time_are_two_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A venue fills a late order in two parts stamped the same millisecond (two makers
    matched at once): two records, both in the trades table, so the books hold both parts;
    the same part heard again is still one."""
    r, storage, first_leg = await stopped_out_and_late_leg(monkeypatch, tmp_path, False)
    [fill] = [e for e in r.events if isinstance(e, OrderFilled) and e.client_order_id == first_leg]
    trade = r.engine._closed_orders.get(first_leg) or r.engine.trades[SYMBOL]
    part = dataclasses.replace(fill, amount=D(5), fee=D("0.25"))
    await r.engine._exits.book_late_fill(trade, part)
    await r.engine._exits.book_late_fill(trade, part)  # heard again
    stored = await storage.trades.list_closed()
    assert [t.amount for t in stored] == [50, 15, 5]
    assert [t.amount for t in r.engine.closed_trades] == [50, 15, 5]
    assert len({t.trade_id for t in stored}) == 3
