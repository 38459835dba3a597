"""The closed trades table, for both Storage implementations."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import text

from core.domain.enums import MarketType, PositionSide
from core.domain.explanations import EntryExplanation, FeaturePush, MemberVote
from core.domain.trades import ClosedTrade, ExitLeg
from core.errors import InvariantViolation
from core.ports import Storage
from storage.repositories import SqlStorage
from tests.contract.test_repositories import Boom
from tests.contract.test_repositories import storage as storage  # the fixture: both kinds

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000


def explanation() -> EntryExplanation:
    return EntryExplanation(
        provider="ensemble",
        p_up=0.6123456789012345,
        members=(
            MemberVote(member="xgb", p_up=0.63, weight=0.55),
            MemberVote(member="nhits", p_up=None, weight=0.0),  # left out at that candle
        ),
        regime="trend_low_vol",
        top_features=(FeaturePush(member="xgb", feature="rsi_14", value=-0.125),),
    )


def trade(tid: str, closed_ms: int, *, pnl: str = "12.3400") -> ClosedTrade:
    """Return a short perp round trip with awkward exact Decimals and every field set."""
    return ClosedTrade(
        trade_id=tid,
        symbol="BTC/USDT",
        side=PositionSide.SHORT,
        market_type=MarketType.PERP,
        leverage=3,
        opened_ms=closed_ms - HOUR_MS,
        closed_ms=closed_ms,
        amount=D("0.00012340"),
        entry_price=D("43210.10"),
        exit_price=D("43100.05"),
        fees=D("0.0021"),
        pnl=D(pnl),
        pnl_pct=0.0123456789012345,
        exit_reason="TP2",
        legs=(
            ExitLeg(
                reason="TP1",
                ts_ms=closed_ms - 60_000,
                price=D("43150.5"),
                amount=D("0.0000617"),
                fee=D("0.00105"),
                pnl=D("6.1"),
            ),
            ExitLeg(
                reason="TP2",
                ts_ms=closed_ms,
                price=D("43049.60"),
                amount=D("0.0000617"),
                fee=D("0.00105"),
                pnl=D(pnl) - D("6.1"),
            ),
        ),
        funding=D("-0.25"),
        liquidation_price=D("57000.0"),
        provider="ensemble",
        regime="trend_low_vol",
        exit_profile="trend",
        explanation=explanation(),
    )


async def test_every_field_of_a_trade_comes_back_exactly(storage: Storage) -> None:
    full = trade("qt-a", T0)
    bare = replace(
        trade("qt-b", T0 + 1),
        legs=(),
        liquidation_price=None,
        explanation=None,
        provider="",
        regime="",
        exit_profile="",
    )
    assert await storage.trades.add(full) is True
    assert await storage.trades.add(bare) is True
    back = await storage.trades.list_closed()
    assert back == [full, bare]
    assert str(back[0].amount) == "0.00012340" and str(back[0].pnl) == "12.3400"  # every digit
    assert type(back[0].side) is PositionSide and type(back[0].market_type) is MarketType


async def test_adding_a_known_trade_id_again_is_refused_and_keeps_the_first(
    storage: Storage,
) -> None:
    first = trade("qt-a", T0)
    assert await storage.trades.add(first)
    replayed = replace(first, pnl=D(-999), closed_ms=T0 + HOUR_MS)  # a replay after a crash
    assert await storage.trades.add(replayed) is False
    assert await storage.trades.list_closed() == [first]
    assert await storage.trades.count() == 1


async def test_ranges_are_since_inclusive_until_exclusive_oldest_first(storage: Storage) -> None:
    for i, tid in enumerate(["c", "a", "d", "b"]):  # recorded out of order
        await storage.trades.add(trade(tid, T0 + [2, 0, 3, 1][i] * HOUR_MS))
    ids = [t.trade_id for t in await storage.trades.list_closed()]
    assert ids == ["a", "b", "c", "d"]

    window = await storage.trades.list_closed(since_ms=T0 + HOUR_MS, until_ms=T0 + 3 * HOUR_MS)
    assert [t.trade_id for t in window] == ["b", "c"]
    assert await storage.trades.list_closed(since_ms=T0 + 4 * HOUR_MS) == []
    assert await storage.trades.list_closed(since_ms=T0, until_ms=T0) == []  # empty range
    assert await storage.trades.count(since_ms=T0 + HOUR_MS) == 3
    assert await storage.trades.count(since_ms=T0 + 4 * HOUR_MS) == 0


async def test_a_limit_keeps_the_newest_of_the_range_still_oldest_first(storage: Storage) -> None:
    for i in range(5):
        await storage.trades.add(trade(f"t{i}", T0 + i * HOUR_MS))

    async def ids(**kw: int) -> list[str]:
        return [t.trade_id for t in await storage.trades.list_closed(**kw)]

    assert await ids(limit=2) == ["t3", "t4"]
    assert await ids(limit=2, until_ms=T0 + 3 * HOUR_MS) == ["t1", "t2"]
    assert await ids(limit=2, since_ms=T0 + 4 * HOUR_MS) == ["t4"]  # fewer than the limit
    assert await ids(limit=50) == ["t0", "t1", "t2", "t3", "t4"]
    assert await ids(limit=0) == [] and await ids(limit=-3) == []


async def test_trades_closed_at_the_same_ms_keep_the_order_recorded(storage: Storage) -> None:
    for tid in ["z", "m", "a"]:  # not in id order: the order recorded decides
        await storage.trades.add(trade(tid, T0))
    assert [t.trade_id for t in await storage.trades.list_closed()] == ["z", "m", "a"]
    assert [t.trade_id for t in await storage.trades.list_closed(limit=2)] == ["m", "a"]


async def test_an_empty_store_has_no_trades(storage: Storage) -> None:
    assert await storage.trades.list_closed() == []
    assert await storage.trades.list_closed(limit=3) == []
    assert await storage.trades.count() == 0


async def test_a_trade_written_in_a_failed_unit_of_work_is_not_kept(storage: Storage) -> None:
    await storage.trades.add(trade("kept", T0))
    with pytest.raises(Boom):
        async with storage.atomic():
            assert await storage.trades.add(trade("undone", T0 + 1))
            raise Boom
    assert [t.trade_id for t in await storage.trades.list_closed()] == ["kept"]
    assert await storage.trades.add(trade("undone", T0 + 1))  # free again after the rollback


async def test_trades_survive_a_restart_of_the_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3"
    first = SqlStorage(url)
    await first.start()
    await first.trades.add(trade("qt-a", T0))
    await first.stop()
    again = SqlStorage(url)
    await again.start()
    try:
        assert await again.trades.list_closed() == [trade("qt-a", T0)]
        assert await again.trades.add(trade("qt-a", T0)) is False
    finally:
        await again.stop()


@pytest.mark.parametrize(
    ("column", "value"),
    [("pnl", "lots"), ("legs", "[{"), ("legs", '[{"reason": "TP1"}]'), ("side", "sideways")],
)
async def test_a_hand_edited_row_is_an_invariant_violation_naming_the_trade(
    tmp_path: Path, column: str, value: str
) -> None:
    store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3")
    await store.start()
    try:
        await store.trades.add(trade("qt-edited", T0))
        async with store.uow.connection() as conn:
            await conn.execute(text(f"UPDATE trades SET {column} = :v"), {"v": value})  # noqa: S608
        with pytest.raises(InvariantViolation, match="qt-edited"):
            await store.trades.list_closed()
    finally:
        await store.stop()
