"""One contract suite for every Storage implementation: the in-memory twin and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from core.domain.enums import (
    CandleMarket,
    Liquidity,
    MarketType,
    OrderStatus,
    OrderType,
    PositionSide,
    Side,
)
from core.domain.events import OrderCanceled, ProcessStarted, TradingStateChanged
from core.domain.market import CandleSeries
from core.domain.orders import Fill, Order, OrderRequest
from core.domain.portfolio import Balance, EquitySnapshot, Position
from core.errors import InvariantViolation
from core.ports import SeriesInfo, StateKey, Storage
from storage import open_storage
from storage.memory import MemoryStorage
from storage.repositories import CANDLE_BATCH_ROWS, SqlStorage

MIN_MS = 60_000
T0 = 1_700_000_000_000


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """Yield a started storage of each kind."""
    store: Storage
    if request.param == "memory":
        store = MemoryStorage()
    else:
        store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/db/qt.sqlite3")
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


class Boom(Exception):
    """Raised inside atomic() blocks to force a rollback."""


def candles(start_ms: int, n: int, base: float = 100.0, symbol: str = "BTC/USDT") -> CandleSeries:
    """Return ``n`` 1m candles from ``start_ms`` with distinct values per row."""
    ts = start_ms + np.arange(n, dtype=np.int64) * MIN_MS
    close = base + np.arange(n, dtype=np.float64) * 0.5
    return CandleSeries.from_columns(
        symbol, "1m", ts, close - 0.25, close + 1.0, close - 1.0, close, np.full(n, 0.1) + close
    )


def order(
    cid: str,
    *,
    xid: str | None = None,
    symbol: str = "BTC/USDT",
    status: OrderStatus = OrderStatus.OPEN,
    created_ms: int = T0,
) -> Order:
    """Return a limit order with awkward exact Decimals."""
    request = OrderRequest(
        client_order_id=cid,
        symbol=symbol,
        side=Side.BUY,
        type=OrderType.LIMIT,
        amount=Decimal("0.00012340"),
        price=Decimal("43210.10"),
        tag="entry",
    )
    return Order(
        request=request,
        exchange_order_id=f"x-{cid}" if xid is None else xid,
        status=status,
        created_ms=created_ms,
        updated_ms=created_ms,
    )


def fill(fill_id: str, cid: str, ts_ms: int = T0) -> Fill:
    """Return a fill of order ``cid``."""
    return Fill(
        fill_id=fill_id,
        client_order_id=cid,
        exchange_order_id=f"x-{cid}",
        symbol="BTC/USDT",
        side=Side.BUY,
        amount=Decimal("0.0001"),
        price=Decimal("43210.1"),
        fee=Decimal("1E-8"),
        liquidity=Liquidity.MAKER,
        ts_ms=ts_ms,
    )


def position(
    symbol: str, market_type: MarketType = MarketType.SPOT, amount: str = "1.5"
) -> Position:
    """Return a long position."""
    return Position(
        symbol=symbol,
        market_type=market_type,
        side=PositionSide.LONG,
        amount=Decimal(amount),
        entry_price=Decimal("100.000"),
        opened_ms=T0,
        updated_ms=T0,
    )


# --- candles -------------------------------------------------------------------------------------


async def test_candles_round_trip_exactly(storage: Storage) -> None:
    series = candles(T0, 50)
    assert await storage.candles.upsert("binance", series) == 50
    loaded = await storage.candles.load("binance", "BTC/USDT", "1m")
    assert loaded.symbol == "BTC/USDT" and loaded.timeframe == "1m"
    assert loaded.ts_ms.dtype == np.int64 and loaded.close.dtype == np.float64
    for col in ("ts_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(loaded, col), getattr(series, col))


async def test_candle_upsert_replaces_overlap_without_duplicates(storage: Storage) -> None:
    await storage.candles.upsert("binance", candles(T0, 10, base=100.0))
    await storage.candles.upsert("binance", candles(T0 + 5 * MIN_MS, 10, base=500.0))
    loaded = await storage.candles.load("binance", "BTC/USDT", "1m")
    assert len(loaded) == 15
    np.testing.assert_array_equal(loaded.ts_ms, T0 + np.arange(15) * MIN_MS)
    assert loaded.close[4] == 102.0  # untouched old row
    assert loaded.close[5] == 500.0  # replaced by the newer download
    assert loaded.close[14] == 504.5


async def test_candle_load_range_is_start_inclusive_end_exclusive(storage: Storage) -> None:
    await storage.candles.upsert("binance", candles(T0, 20))
    part = await storage.candles.load("binance", "BTC/USDT", "1m", T0 + 3 * MIN_MS, T0 + 7 * MIN_MS)
    np.testing.assert_array_equal(part.ts_ms, T0 + np.arange(3, 7) * MIN_MS)
    tail = await storage.candles.load("binance", "BTC/USDT", "1m", start_ms=T0 + 18 * MIN_MS)
    assert len(tail) == 2
    head = await storage.candles.load("binance", "BTC/USDT", "1m", end_ms=T0 + 2 * MIN_MS)
    assert len(head) == 2


async def test_candle_load_of_unknown_series_is_empty(storage: Storage) -> None:
    await storage.candles.upsert("binance", candles(T0, 3))
    empty = await storage.candles.load("bybit", "BTC/USDT", "1m")
    assert len(empty) == 0 and empty.symbol == "BTC/USDT" and empty.ts_ms.dtype == np.int64
    assert await storage.candles.upsert("binance", CandleSeries.empty("BTC/USDT", "1m")) == 0


async def test_candle_last_ts_and_series_summary(storage: Storage) -> None:
    assert await storage.candles.last_ts_ms("binance", "BTC/USDT", "1m") is None
    assert await storage.candles.list_series() == []
    await storage.candles.upsert("binance", candles(T0, 10))
    await storage.candles.upsert("binance", candles(T0, 4, symbol="ETH/USDT"))
    await storage.candles.upsert("bybit", candles(T0 + MIN_MS, 2))
    assert await storage.candles.last_ts_ms("binance", "BTC/USDT", "1m") == T0 + 9 * MIN_MS
    assert await storage.candles.list_series() == [
        SeriesInfo(
            exchange="binance",
            market=CandleMarket.SPOT,
            symbol="BTC/USDT",
            timeframe="1m",
            first_ms=T0,
            last_ms=T0 + 9 * MIN_MS,
            rows=10,
        ),
        SeriesInfo(
            exchange="binance",
            market=CandleMarket.SPOT,
            symbol="ETH/USDT",
            timeframe="1m",
            first_ms=T0,
            last_ms=T0 + 3 * MIN_MS,
            rows=4,
        ),
        SeriesInfo(
            exchange="bybit",
            market=CandleMarket.SPOT,
            symbol="BTC/USDT",
            timeframe="1m",
            first_ms=T0 + MIN_MS,
            last_ms=T0 + 2 * MIN_MS,
            rows=2,
        ),
    ]


async def test_spot_perp_and_mark_series_of_one_symbol_are_kept_apart(storage: Storage) -> None:
    spot = storage.candles
    perp = spot.for_market(CandleMarket.PERP)
    mark = perp.for_market(CandleMarket.MARK)
    assert (spot.market, perp.market, mark.market) == ("spot", "perp", "mark")
    await spot.upsert("binance", candles(T0, 10, base=100.0))
    await perp.upsert("binance", candles(T0 + MIN_MS, 5, base=101.0))
    await mark.upsert("binance", candles(T0, 3, base=100.5))
    assert (await spot.load("binance", "BTC/USDT", "1m")).close[0] == 100.0
    assert len(await perp.load("binance", "BTC/USDT", "1m")) == 5
    assert (await mark.load("binance", "BTC/USDT", "1m")).close.tolist()[0] == 100.5
    assert await perp.last_ts_ms("binance", "BTC/USDT", "1m") == T0 + 5 * MIN_MS
    assert await mark.last_ts_ms("binance", "BTC/USDT", "1m") == T0 + 2 * MIN_MS
    assert (
        await storage.candles.for_market(CandleMarket.PERP).last_ts_ms("binance", "ETH/USDT", "1m")
        is None
    )
    listed = await mark.list_series()  # every kind, whichever repo is asked
    assert [(s.market, s.rows) for s in listed] == [("mark", 3), ("perp", 5), ("spot", 10)]
    assert listed == await spot.list_series()


async def test_a_candle_market_repo_writes_in_the_storage_transaction(storage: Storage) -> None:
    perp = storage.candles.for_market(CandleMarket.PERP)
    with pytest.raises(RuntimeError):
        async with storage.atomic():
            await perp.upsert("binance", candles(T0, 3))
            raise RuntimeError("roll back")
    assert await perp.list_series() == []


async def test_candle_upsert_spanning_several_batches(storage: Storage) -> None:
    n = CANDLE_BATCH_ROWS * 2 + 7
    assert await storage.candles.upsert("binance", candles(T0, n)) == n
    loaded = await storage.candles.load("binance", "BTC/USDT", "1m")
    assert len(loaded) == n
    assert loaded.ts_ms[-1] == T0 + (n - 1) * MIN_MS
    assert bool(np.all(np.diff(loaded.ts_ms) == MIN_MS))


async def test_candle_open_times_are_those_load_gives_in_the_range(storage: Storage) -> None:
    perp = storage.candles.for_market(CandleMarket.PERP)
    await storage.candles.upsert("binance", candles(T0, 10))
    await perp.upsert("binance", candles(T0 + 5 * MIN_MS, 10))
    loaded = await storage.candles.load("binance", "BTC/USDT", "1m", T0 + MIN_MS, T0 + 4 * MIN_MS)
    times = await storage.candles.open_times(
        "binance", "BTC/USDT", "1m", T0 + MIN_MS, T0 + 4 * MIN_MS
    )
    assert times.dtype == np.int64 and times.tolist() == loaded.ts_ms.tolist()
    assert len(times) == 3
    assert len(await perp.open_times("binance", "BTC/USDT", "1m")) == 10  # its own series
    assert len(await perp.open_times("binance", "ETH/USDT", "1m")) == 0


async def test_candle_delete_removes_only_the_named_rows_of_its_series(storage: Storage) -> None:
    perp = storage.candles.for_market(CandleMarket.PERP)
    await storage.candles.upsert("binance", candles(T0, 10))
    await perp.upsert("binance", candles(T0, 10))
    gone = [T0 + 2 * MIN_MS, T0 + 9 * MIN_MS, T0 + 99 * MIN_MS]  # the last one is not stored
    assert await storage.candles.delete("binance", "BTC/USDT", "1m", np.array(gone)) == 2
    left = await storage.candles.load("binance", "BTC/USDT", "1m")
    assert left.ts_ms.tolist() == [T0 + k * MIN_MS for k in (0, 1, 3, 4, 5, 6, 7, 8)]
    assert len(await perp.load("binance", "BTC/USDT", "1m")) == 10  # another series
    assert await storage.candles.delete("bybit", "BTC/USDT", "1m", np.array(gone)) == 0
    with pytest.raises(RuntimeError):
        async with storage.atomic():
            await perp.delete("binance", "BTC/USDT", "1m", np.array([T0]))
            raise RuntimeError("roll back")
    assert len(await perp.load("binance", "BTC/USDT", "1m")) == 10


# --- orders and fills ----------------------------------------------------------------------------


async def test_order_round_trips_exact_decimals_and_enums(storage: Storage) -> None:
    original = order("c1").with_(
        status=OrderStatus.PARTIALLY_FILLED,
        filled=Decimal("0.00010000"),
        average_price=Decimal("43210.1"),
        fee_paid=Decimal("1E-8"),
        reason="",
    )
    await storage.orders.upsert(original)
    loaded = await storage.orders.get("c1")
    assert loaded == original
    assert loaded is not None and str(loaded.request.amount) == "0.00012340"
    assert str(loaded.fee_paid) == "1E-8"
    assert await storage.orders.get("missing") is None


async def test_order_upsert_updates_the_one_row_per_client_id(storage: Storage) -> None:
    await storage.orders.upsert(order("c1"))
    done = order("c1").with_(
        status=OrderStatus.FILLED, filled=Decimal("0.00012340"), updated_ms=T0 + 5
    )
    await storage.orders.upsert(done)
    assert await storage.orders.list_all() == [done]
    assert await storage.orders.list_open() == []


async def test_order_lists_are_oldest_first_and_filter_symbol(storage: Storage) -> None:
    await storage.orders.upsert(order("late", created_ms=T0 + 2))
    await storage.orders.upsert(order("early", created_ms=T0))
    await storage.orders.upsert(order("eth", symbol="ETH/USDT", created_ms=T0 + 1))
    await storage.orders.upsert(order("gone", status=OrderStatus.CANCELED, created_ms=T0 + 3))
    await storage.orders.upsert(
        order("nope", status=OrderStatus.REJECTED, xid="", created_ms=T0 + 4)
    )
    all_ids = [o.client_order_id for o in await storage.orders.list_all()]
    assert all_ids == ["early", "eth", "late", "gone", "nope"]
    assert [o.client_order_id for o in await storage.orders.list_open()] == ["early", "eth", "late"]
    assert [o.client_order_id for o in await storage.orders.list_open("BTC/USDT")] == [
        "early",
        "late",
    ]
    assert [o.client_order_id for o in await storage.orders.list_all("ETH/USDT")] == ["eth"]


async def test_exchange_order_id_belongs_to_one_order(storage: Storage) -> None:
    await storage.orders.upsert(order("c1", xid="X1"))
    with pytest.raises(InvariantViolation, match="X1"):
        await storage.orders.upsert(order("c2", xid="X1"))
    assert [o.client_order_id for o in await storage.orders.list_all()] == ["c1"]
    # Orders the venue never acknowledged have no exchange id yet; many may coexist.
    await storage.orders.upsert(order("r1", xid="", status=OrderStatus.REJECTED))
    await storage.orders.upsert(order("r2", xid="", status=OrderStatus.REJECTED))
    r2 = await storage.orders.get("r2")
    assert r2 is not None and r2.exchange_order_id == ""


async def test_an_exchange_id_an_order_gave_up_is_free_for_another(storage: Storage) -> None:
    # The venue re-keys an order (X1 -> X2), or a stored id is cleared: X1 then belongs to no
    # order, and a later order may carry it; the order's new id is still its own.
    await storage.orders.upsert(order("c1", xid="X1"))
    await storage.orders.upsert(order("c1", xid="X2"))
    await storage.orders.upsert(order("c2", xid="X1"))
    with pytest.raises(InvariantViolation, match="X2"):
        await storage.orders.upsert(order("c3", xid="X2"))
    await storage.orders.upsert(order("c2", xid=""))
    await storage.orders.upsert(order("c4", xid="X1"))
    ids = {o.client_order_id: o.exchange_order_id for o in await storage.orders.list_all()}
    assert ids == {"c1": "X2", "c2": "", "c4": "X1"}


async def test_a_rolled_back_exchange_id_change_keeps_the_old_owner(storage: Storage) -> None:
    await storage.orders.upsert(order("c1", xid="X1"))
    with pytest.raises(Boom):
        async with storage.atomic():
            await storage.orders.upsert(order("c1", xid="X2"))
            raise Boom
    with pytest.raises(InvariantViolation, match="X1"):
        await storage.orders.upsert(order("c2", xid="X1"))
    await storage.orders.upsert(order("c2", xid="X2"))  # X2 was never taken


async def test_fills_are_idempotent_on_fill_id(storage: Storage) -> None:
    await storage.orders.upsert(order("c1"))
    await storage.orders.upsert(order("c2"))
    await storage.fills.add(fill("f2", "c1", ts_ms=T0 + 10))
    await storage.fills.add(fill("f1", "c1", ts_ms=T0))
    await storage.fills.add(fill("f1", "c1", ts_ms=T0))
    await storage.fills.add(fill("f3", "c2", ts_ms=T0 + 5))
    assert [f.fill_id for f in await storage.fills.list_fills()] == ["f1", "f3", "f2"]
    of_c1 = await storage.fills.list_fills("c1")
    assert [f.fill_id for f in of_c1] == ["f1", "f2"]
    assert of_c1[0] == fill("f1", "c1", ts_ms=T0)


async def test_fill_of_unknown_order_is_rejected(storage: Storage) -> None:
    with pytest.raises(InvariantViolation, match="ghost"):
        await storage.fills.add(fill("f1", "ghost"))
    assert await storage.fills.list_fills() == []


# --- positions, balances, equity -----------------------------------------------------------------


async def test_positions_upsert_delete_list(storage: Storage) -> None:
    await storage.positions.upsert(position("ETH/USDT"))
    await storage.positions.upsert(position("BTC/USDT", MarketType.PERP))
    await storage.positions.upsert(position("BTC/USDT"))
    await storage.positions.upsert(position("BTC/USDT", amount="2.25"))
    listed = await storage.positions.list_positions()
    assert [(p.symbol, p.market_type) for p in listed] == [
        ("BTC/USDT", MarketType.PERP),
        ("BTC/USDT", MarketType.SPOT),
        ("ETH/USDT", MarketType.SPOT),
    ]
    assert listed[1] == position("BTC/USDT", amount="2.25")
    await storage.positions.delete("BTC/USDT", MarketType.SPOT)
    await storage.positions.delete("DOGE/USDT", MarketType.SPOT)  # absent: no error
    assert [(p.symbol, p.market_type) for p in await storage.positions.list_positions()] == [
        ("BTC/USDT", MarketType.PERP),
        ("ETH/USDT", MarketType.SPOT),
    ]


async def test_balances_replace_per_asset(storage: Storage) -> None:
    assert await storage.balances.get_balances() == {}
    await storage.balances.set_balances(
        [Balance(asset="USDT", free=Decimal("1000.00")), Balance(asset="BTC", free=Decimal("0.5"))]
    )
    await storage.balances.set_balances(
        [Balance(asset="USDT", free=Decimal("900.10"), used=Decimal("99.90"))]
    )
    balances = await storage.balances.get_balances()
    assert list(balances) == ["BTC", "USDT"]
    assert balances["USDT"] == Balance(asset="USDT", free=Decimal("900.10"), used=Decimal("99.90"))
    assert str(balances["USDT"].free) == "900.10"


async def test_equity_snapshots_in_time_order_and_range(storage: Storage) -> None:
    for ts in (T0 + 2, T0, T0 + 1):
        await storage.balances.add_equity(
            EquitySnapshot(ts_ms=ts, equity=Decimal(f"10{ts - T0}.5"), cash=Decimal("100"))
        )
    snaps = await storage.balances.list_equity()
    assert [s.ts_ms for s in snaps] == [T0, T0 + 1, T0 + 2]
    assert snaps[0].equity == Decimal("100.5") and snaps[0].unrealized_pnl == Decimal(0)
    assert [s.ts_ms for s in await storage.balances.list_equity(T0 + 1, T0 + 2)] == [T0 + 1]


# --- events and state ----------------------------------------------------------------------------


async def test_events_append_is_idempotent_and_payload_is_json(storage: Storage) -> None:
    started = ProcessStarted(ts_ms=T0, mode="paper", exchange="binance", symbols=("BTC/USDT",))
    await storage.events.append(started)
    await storage.events.append(started)
    events = await storage.events.list_events()
    assert len(events) == 1
    stored = events[0]
    assert (stored.event_id, stored.topic, stored.ts_ms) == (
        started.event_id,
        "process.started",
        T0,
    )
    assert stored.payload == {"mode": "paper", "exchange": "binance", "symbols": ["BTC/USDT"]}


async def test_event_filters_prefix_since_and_limit(storage: Storage) -> None:
    await storage.events.append(
        OrderCanceled(ts_ms=T0 + 3, client_order_id="c", symbol="S", reason="r")
    )
    await storage.events.append(
        TradingStateChanged(
            ts_ms=T0 + 1, previous="active", current="halted", reason="x", actor="a"
        )
    )
    await storage.events.append(
        OrderCanceled(ts_ms=T0 + 2, client_order_id="b", symbol="S", reason="r")
    )
    await storage.events.append(ProcessStarted(ts_ms=T0, mode="paper", exchange="e", symbols=()))
    assert [e.ts_ms - T0 for e in await storage.events.list_events()] == [0, 1, 2, 3]
    orders = await storage.events.list_events(topic_prefix="order.")
    assert [e.payload["client_order_id"] for e in orders] == ["b", "c"]
    assert [e.ts_ms - T0 for e in await storage.events.list_events(since_ms=T0 + 2)] == [2, 3]
    assert [e.ts_ms - T0 for e in await storage.events.list_events(limit=2)] == [0, 1]
    # The prefix is literal and case-sensitive: '_' and '%' are not wildcards.
    assert await storage.events.list_events(topic_prefix="ORDER.") == []
    assert await storage.events.list_events(topic_prefix="order_") == []
    assert await storage.events.list_events(topic_prefix="%") == []
    assert len(await storage.events.list_events(topic_prefix="trading.state_")) == 1


async def test_key_value_get_set(storage: Storage) -> None:
    assert await storage.state.get(StateKey.TRADING_STATE) is None
    await storage.state.set(StateKey.TRADING_STATE, "active")
    await storage.state.set(StateKey.TRADING_STATE, "halted")
    await storage.state.set(StateKey.TRADING_STATE_REASON, "drawdown 12%")
    assert await storage.state.get(StateKey.TRADING_STATE) == "halted"
    assert await storage.state.get(StateKey.TRADING_STATE_REASON) == "drawdown 12%"


# --- unit of work --------------------------------------------------------------------------------


async def _write_everything(storage: Storage, tag: str) -> None:
    await storage.candles.upsert("binance", candles(T0, 3))
    await storage.orders.upsert(order(f"o-{tag}"))
    await storage.fills.add(fill(f"f-{tag}", f"o-{tag}"))
    await storage.positions.upsert(position(f"{tag}/USDT"))
    await storage.balances.set_balances([Balance(asset=tag, free=Decimal(1))])
    await storage.balances.add_equity(EquitySnapshot(ts_ms=T0, equity=Decimal(1), cash=Decimal(1)))
    await storage.events.append(ProcessStarted(ts_ms=T0, mode="paper", exchange=tag, symbols=()))
    await storage.state.set(StateKey.LAST_CANDLE_MS, tag)


async def _counts(storage: Storage) -> tuple[int, ...]:
    return (
        len(await storage.candles.load("binance", "BTC/USDT", "1m")),
        len(await storage.orders.list_all()),
        len(await storage.fills.list_fills()),
        len(await storage.positions.list_positions()),
        len(await storage.balances.get_balances()),
        len(await storage.balances.list_equity()),
        len(await storage.events.list_events()),
        await storage.state.get(StateKey.LAST_CANDLE_MS) is not None,
    )


async def test_atomic_rolls_back_every_write_on_error(storage: Storage) -> None:
    with pytest.raises(Boom):
        async with storage.atomic():
            await _write_everything(storage, "A")
            assert await storage.orders.get("o-A") is not None  # visible inside the unit
            raise Boom
    assert await _counts(storage) == (0, 0, 0, 0, 0, 0, 0, False)


async def test_atomic_commits_on_success(storage: Storage) -> None:
    async with storage.atomic():
        await _write_everything(storage, "A")
    assert await _counts(storage) == (3, 1, 1, 1, 1, 1, 1, True)


async def test_atomic_rollback_keeps_earlier_commits(storage: Storage) -> None:
    await _write_everything(storage, "A")
    with pytest.raises(Boom):
        async with storage.atomic():
            await storage.orders.upsert(order("o-A").with_(status=OrderStatus.CANCELED))
            await storage.state.set(StateKey.LAST_CANDLE_MS, "B")
            raise Boom
    kept = await storage.orders.get("o-A")
    assert kept is not None and kept.status is OrderStatus.OPEN
    assert await storage.state.get(StateKey.LAST_CANDLE_MS) == "A"


async def test_nested_atomic_rolls_back_only_the_inner_block(storage: Storage) -> None:
    async with storage.atomic():
        await storage.orders.upsert(order("outer"))
        with pytest.raises(Boom):
            async with storage.atomic():
                await storage.orders.upsert(order("inner"))
                raise Boom
        await storage.orders.upsert(order("after"))
    assert [o.client_order_id for o in await storage.orders.list_all()] == ["outer", "after"]


async def test_constraint_error_inside_atomic_rolls_back_the_unit(storage: Storage) -> None:
    with pytest.raises(InvariantViolation):
        async with storage.atomic():
            await storage.orders.upsert(order("c1"))
            await storage.fills.add(fill("f1", "ghost"))
    assert await storage.orders.list_all() == []


# --- implementation specifics --------------------------------------------------------------------


async def test_sqlite_storage_persists_across_restarts(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3"
    first = SqlStorage(url)
    await first.start()
    await _write_everything(first, "A")
    await first.stop()
    second = SqlStorage(url)
    await second.start()
    try:
        assert await _counts(second) == (3, 1, 1, 1, 1, 1, 1, True)
    finally:
        await second.stop()


async def test_in_memory_sqlite_url_works(tmp_path: Path) -> None:
    store = SqlStorage("sqlite+aiosqlite://")
    await store.start()
    try:
        await _write_everything(store, "A")
        assert await _counts(store) == (3, 1, 1, 1, 1, 1, 1, True)
    finally:
        await store.stop()
    assert not any(tmp_path.iterdir())


def test_open_storage_picks_the_implementation(tmp_path: Path) -> None:
    assert isinstance(open_storage("memory://"), MemoryStorage)
    sql = open_storage(f"sqlite+aiosqlite:///{tmp_path}/x.sqlite3")
    assert isinstance(sql, SqlStorage)
