"""SQL repositories behind the storage ports, and ``SqlStorage`` bundling them.

Every repository asks the shared :class:`~storage.db.UnitOfWork` for a connection, so calls made
inside ``SqlStorage.atomic()`` share one transaction and calls outside it commit on their own.
Statements are SQLAlchemy Core (no ORM identity map); rows are turned into domain values by
``storage.mappers``. Constraint violations (a fill of an unknown order, an exchange order id that
belongs to another order) are bugs in the caller and raise ``InvariantViolation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Table, and_, func, select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.exc import IntegrityError

from core.domain.decisions import AssessmentRecord, BrainDecision, PolicyVersion
from core.domain.enums import CandleMarket, MarketType, OrderStatus
from core.domain.events import Event
from core.domain.market import CandleSeries
from core.domain.market_rules import StoredRules
from core.domain.model_versions import (
    ModelStatus,
    ModelVersion,
    Prediction,
    check_predictions,
    promoted,
    replaced,
    with_status,
)
from core.domain.orders import Fill, Order
from core.domain.portfolio import Balance, EquitySnapshot, Position
from core.domain.trades import ClosedTrade
from core.errors import InvariantViolation
from core.ports import SeriesInfo, StateKey, StoredEvent
from storage import mappers
from storage.db import UnitOfWork, create_engine
from storage.migrate import upgrade_engine
from storage.tables import (
    BalanceRow,
    BrainDecisionRow,
    CandleRow,
    EquitySnapshotRow,
    EventRow,
    FillRow,
    KeyValueRow,
    MarketRulesRow,
    ModelVersionRow,
    OrderRow,
    PolicyVersionRow,
    PositionRow,
    RiskAssessmentRow,
    TradeRow,
)

CANDLE_BATCH_ROWS = 20_000
CANDLE_LOAD_BATCH_ROWS = 10_000  # rows read into Python values at a time
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TERMINAL = [s.value for s in OrderStatus if s.is_terminal]

_candles: Table = CandleRow.__table__  # type: ignore[attr-defined]
_orders: Table = OrderRow.__table__  # type: ignore[attr-defined]
_fills: Table = FillRow.__table__  # type: ignore[attr-defined]
_positions: Table = PositionRow.__table__  # type: ignore[attr-defined]
_balances: Table = BalanceRow.__table__  # type: ignore[attr-defined]
_equity: Table = EquitySnapshotRow.__table__  # type: ignore[attr-defined]
_events: Table = EventRow.__table__  # type: ignore[attr-defined]
_kv: Table = KeyValueRow.__table__  # type: ignore[attr-defined]
_rules: Table = MarketRulesRow.__table__  # type: ignore[attr-defined]
_models: Table = ModelVersionRow.__table__  # type: ignore[attr-defined]
_policies: Table = PolicyVersionRow.__table__  # type: ignore[attr-defined]
_assessments: Table = RiskAssessmentRow.__table__  # type: ignore[attr-defined]
_decisions: Table = BrainDecisionRow.__table__  # type: ignore[attr-defined]
_trades: Table = TradeRow.__table__  # type: ignore[attr-defined]

# Driver-level SQL for the candle hot path: executemany over plain tuples skips SQLAlchemy's
# per-row parameter processing (about twice as fast as a Core insert of dicts, measured).
_CANDLE_VALUES = ("open", "high", "low", "close", "volume")
_CANDLE_UPSERT_SQL = (
    "INSERT INTO candles "
    "(exchange, market, symbol, timeframe, ts_ms, open, high, low, close, volume) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (exchange, market, symbol, timeframe, ts_ms) DO UPDATE SET "
    "open = excluded.open, high = excluded.high, low = excluded.low, "
    "close = excluded.close, volume = excluded.volume"
)
_CANDLE_LOAD_SQL = (
    "SELECT ts_ms, open, high, low, close, volume FROM candles "
    "WHERE exchange = ? AND market = ? AND symbol = ? AND timeframe = ? "
    "AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms"
)
_CANDLE_TIMES_SQL = (
    "SELECT ts_ms FROM candles "
    "WHERE exchange = ? AND market = ? AND symbol = ? AND timeframe = ? "
    "AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms"
)
_CANDLE_COUNT_SQL = (
    "SELECT count(*) FROM candles "
    "WHERE exchange = ? AND market = ? AND symbol = ? AND timeframe = ? "
    "AND ts_ms >= ? AND ts_ms < ?"
)
_CANDLE_DELETE_SQL = (
    "DELETE FROM candles WHERE exchange = ? AND market = ? AND symbol = ? AND timeframe = ? "
    "AND ts_ms = ?"
)
_CANDLE_DTYPE = np.dtype([("ts_ms", np.int64)] + [(c, np.float64) for c in _CANDLE_VALUES])
_TIMES_DTYPE = np.dtype([("ts_ms", np.int64)])


def _upsert(table: Table, key: Sequence[str], row: dict[str, Any]) -> Any:
    """Return ``INSERT ... ON CONFLICT (key) DO UPDATE`` of every non-key column."""
    stmt = insert(table).values(row)
    updates = {c: stmt.excluded[c] for c in row if c not in key}
    return stmt.on_conflict_do_update(index_elements=list(key), set_=updates)


class SqlCandleRepo:
    """Candles of one market kind in the ``candles`` table (see ``storage.tables`` for why this
    layout); ``for_market`` gives the other kinds' over the same unit of work."""

    def __init__(self, uow: UnitOfWork, market: CandleMarket = CandleMarket.SPOT) -> None:
        self._uow = uow
        self._market = CandleMarket(market)

    @property
    def market(self) -> CandleMarket:
        """Return the kind of series this repo reads and writes."""
        return self._market

    def for_market(self, market: CandleMarket) -> SqlCandleRepo:
        """Return the repo of ``market``'s series over the same unit of work."""
        return SqlCandleRepo(self._uow, market)

    async def upsert(self, exchange: str, series: CandleSeries) -> int:
        """Insert or replace candles in batches, each its own short transaction (inside an
        ``atomic()`` block, that block's): a big import never holds the write lock for long,
        so a running bot's writes wait milliseconds, not seconds. Rerunning an interrupted
        import is harmless (upsert). Return rows written.

        Only one batch at a time becomes Python values: the whole series as lists cost 1.8 GB
        for 5 M rows (``bench/import_memory.py``), the numpy columns 240 MB.
        """
        n = len(series)
        key = (exchange, self._market.value, series.symbol, series.timeframe)
        for lo in range(0, n, CANDLE_BATCH_ROWS):
            part = series.slice(lo, lo + CANDLE_BATCH_ROWS)
            cols = [part.ts_ms.tolist()] + [getattr(part, c).tolist() for c in _CANDLE_VALUES]
            batch = [key + row for row in zip(*cols, strict=True)]
            async with self._uow.connection() as conn:
                await conn.exec_driver_sql(_CANDLE_UPSERT_SQL, batch)
            del cols, batch  # before the next batch is built, not after
        return n

    async def load(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> CandleSeries:
        """Return candles with ``start_ms <= ts_ms < end_ms``, sorted, as numpy columns."""
        columns = await self._read(
            _CANDLE_LOAD_SQL, _CANDLE_DTYPE, exchange, symbol, timeframe, start_ms, end_ms
        )
        return CandleSeries(symbol=symbol, timeframe=timeframe, **columns)

    async def open_times(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> npt.NDArray[np.int64]:
        """Return the open times with ``start_ms <= ts_ms < end_ms``, sorted (a sixth of
        what ``load`` reads: what a download needs to find the candles it lacks)."""
        columns = await self._read(
            _CANDLE_TIMES_SQL, _TIMES_DTYPE, exchange, symbol, timeframe, start_ms, end_ms
        )
        return columns["ts_ms"]

    async def _read(
        self,
        sql: str,
        dtype: np.dtype[Any],
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None,
        end_ms: int | None,
    ) -> dict[str, npt.NDArray[Any]]:
        """Return the columns of ``dtype`` that ``sql`` selects in the range.

        The rows are counted, then read a batch at a time into columns of that size: every
        row of 5 M as Python values at once (``fetchall``) cost 2.0 GB, the columns 240 MB.
        Both statements run in one transaction, so they see the same rows.
        """
        lo = _INT64_MIN if start_ms is None else start_ms
        hi = _INT64_MAX if end_ms is None else end_ms
        params = (exchange, self._market.value, symbol, timeframe, lo, hi)
        async with self._uow.connection() as conn:
            raw = await conn.get_raw_connection()
            db = raw.driver_connection
            async with db.execute(_CANDLE_COUNT_SQL, params) as cursor:  # type: ignore[union-attr]
                (n,) = await cursor.fetchone()
            columns = {name: np.empty(n, dtype=dtype[name]) for name in dtype.names or ()}
            filled = 0
            async with db.execute(sql, params) as cursor:  # type: ignore[union-attr]
                while rows := await cursor.fetchmany(CANDLE_LOAD_BATCH_ROWS):
                    part = np.array(rows, dtype=dtype)
                    end = filled + len(part)
                    if end > n:
                        raise InvariantViolation(
                            f"{exchange} {self._market} {symbol} {timeframe}: more candles "
                            f"read than the {n} counted in the same transaction"
                        )
                    for name, column in columns.items():
                        column[filled:end] = part[name]
                    filled = end
                    del rows, part  # before the next batch is fetched, not after
        return {name: column[:filled] for name, column in columns.items()}

    async def delete(
        self, exchange: str, symbol: str, timeframe: str, ts_ms: npt.NDArray[np.int64]
    ) -> int:
        """Remove the candles that opened at ``ts_ms`` in batches, each its own short
        transaction (inside an ``atomic()`` block, that block's), as ``upsert`` writes them:
        an import taken back deletes millions. Return how many were stored."""
        key = (exchange, self._market.value, symbol, timeframe)
        times = np.asarray(ts_ms, dtype=np.int64)
        deleted = 0
        for lo in range(0, len(times), CANDLE_BATCH_ROWS):
            rows = [(*key, ts) for ts in times[lo : lo + CANDLE_BATCH_ROWS].tolist()]
            async with self._uow.connection() as conn:
                result = await conn.exec_driver_sql(_CANDLE_DELETE_SQL, rows)
            deleted += int(result.rowcount)
        return deleted

    async def last_ts_ms(self, exchange: str, symbol: str, timeframe: str) -> int | None:
        """Return the newest stored open time, or None."""
        c = _candles.c
        stmt = select(func.max(c.ts_ms)).where(
            c.exchange == exchange,
            c.market == self._market.value,
            c.symbol == symbol,
            c.timeframe == timeframe,
        )
        async with self._uow.connection() as conn:
            value = (await conn.execute(stmt)).scalar_one_or_none()
        return None if value is None else int(value)

    async def list_series(self) -> list[SeriesInfo]:
        """Return a summary of every stored series of every market kind, sorted by exchange,
        market, symbol and timeframe."""
        c = _candles.c
        group = (c.exchange, c.market, c.symbol, c.timeframe)
        stmt = (
            select(*group, func.min(c.ts_ms), func.max(c.ts_ms), func.count())
            .group_by(*group)
            .order_by(*group)
        )
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            SeriesInfo(
                exchange=ex,
                market=CandleMarket(market),
                symbol=sym,
                timeframe=tf,
                first_ms=lo,
                last_ms=hi,
                rows=n,
            )
            for ex, market, sym, tf, lo, hi, n in rows
        ]


class SqlOrderRepo:
    """Orders in the ``orders`` table, keyed by client order id."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def upsert(self, order: Order) -> None:
        """Insert or update an order; a known exchange order id on another order is a bug."""
        stmt = _upsert(_orders, ["client_order_id"], mappers.order_to_row(order))
        try:
            async with self._uow.connection() as conn:
                await conn.execute(stmt)
        except IntegrityError as exc:
            raise InvariantViolation(
                f"order {order.client_order_id!r} (exchange order id "
                f"{order.exchange_order_id!r}) breaks a uniqueness rule: {exc.orig}"
            ) from exc

    async def get(self, client_order_id: str) -> Order | None:
        """Return the order or None."""
        stmt = select(_orders).where(_orders.c.client_order_id == client_order_id)
        async with self._uow.connection() as conn:
            row = (await conn.execute(stmt)).mappings().one_or_none()
        return None if row is None else mappers.row_to_order(row)

    async def list_open(self, symbol: str | None = None) -> list[Order]:
        """Return non-terminal orders, oldest first."""
        return await self._list(symbol, _orders.c.status.not_in(_TERMINAL))

    async def list_all(self, symbol: str | None = None) -> list[Order]:
        """Return every order, oldest first (ties in insertion order)."""
        return await self._list(symbol, None)

    async def _list(self, symbol: str | None, condition: Any) -> list[Order]:
        c = _orders.c
        stmt = select(_orders).order_by(c.created_ms, c.id)
        if symbol is not None:
            stmt = stmt.where(c.symbol == symbol)
        if condition is not None:
            stmt = stmt.where(condition)
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [mappers.row_to_order(r) for r in rows]


class SqlFillRepo:
    """Fills in the ``fills`` table; each references its order."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add(self, fill: Fill) -> None:
        """Record a fill; a known fill id is a no-op, an unknown order is a bug."""
        stmt = insert(_fills).values(mappers.fill_to_row(fill)).on_conflict_do_nothing()
        try:
            async with self._uow.connection() as conn:
                await conn.execute(stmt)
        except IntegrityError as exc:
            raise InvariantViolation(
                f"fill {fill.fill_id!r} refers to unknown order {fill.client_order_id!r}; "
                f"store the order first ({exc.orig})"
            ) from exc

    async def list_fills(self, client_order_id: str | None = None) -> list[Fill]:
        """Return fills (of one order if given), oldest first."""
        stmt = select(_fills).order_by(_fills.c.ts_ms, _fills.c.id)
        if client_order_id is not None:
            stmt = stmt.where(_fills.c.client_order_id == client_order_id)
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [mappers.row_to_fill(r) for r in rows]


class SqlPositionRepo:
    """Open positions in the ``positions`` table."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def upsert(self, position: Position) -> None:
        """Insert or replace a position."""
        stmt = _upsert(_positions, ["symbol", "market_type"], mappers.position_to_row(position))
        async with self._uow.connection() as conn:
            await conn.execute(stmt)

    async def delete(self, symbol: str, market_type: MarketType) -> None:
        """Remove a closed position (no error if absent)."""
        c = _positions.c
        stmt = _positions.delete().where(
            and_(c.symbol == symbol, c.market_type == MarketType(market_type).value)
        )
        async with self._uow.connection() as conn:
            await conn.execute(stmt)

    async def list_positions(self) -> list[Position]:
        """Return open positions sorted by symbol and market type."""
        stmt = select(_positions).order_by(_positions.c.symbol, _positions.c.market_type)
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [mappers.row_to_position(r) for r in rows]


class SqlBalanceRepo:
    """Balances in ``balances`` and snapshots in ``equity_snapshots``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def set_balances(self, balances: Sequence[Balance]) -> None:
        """Insert or replace the given assets' balances."""
        async with self._uow.connection() as conn:
            for balance in balances:
                await conn.execute(_upsert(_balances, ["asset"], mappers.balance_to_row(balance)))

    async def get_balances(self) -> dict[str, Balance]:
        """Return balances by asset, sorted by asset."""
        async with self._uow.connection() as conn:
            rows = (await conn.execute(select(_balances).order_by(_balances.c.asset))).mappings()
            return {r["asset"]: mappers.row_to_balance(r) for r in rows.all()}

    async def add_equity(self, snapshot: EquitySnapshot) -> None:
        """Record an equity snapshot."""
        async with self._uow.connection() as conn:
            await conn.execute(_equity.insert().values(mappers.equity_to_row(snapshot)))

    async def list_equity(
        self, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[EquitySnapshot]:
        """Return snapshots with ``start_ms <= ts_ms < end_ms`` in time order."""
        stmt = select(_equity).order_by(_equity.c.ts_ms, _equity.c.id)
        if start_ms is not None:
            stmt = stmt.where(_equity.c.ts_ms >= start_ms)
        if end_ms is not None:
            stmt = stmt.where(_equity.c.ts_ms < end_ms)
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [mappers.row_to_equity(r) for r in rows]


def _like_prefix(prefix: str) -> str:
    """Return a LIKE pattern matching ``prefix`` literally (``%``, ``_`` and ``\\`` escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class SqlEventRepo:
    """The audit trail in ``events``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def append(self, event: Event | StoredEvent) -> None:
        """Persist an event (idempotent on event id)."""
        stmt = insert(_events).values(mappers.event_to_row(event)).on_conflict_do_nothing()
        async with self._uow.connection() as conn:
            await conn.execute(stmt)

    async def list_events(
        self, topic_prefix: str | None = None, since_ms: int | None = None, limit: int = 1000
    ) -> list[StoredEvent]:
        """Return the oldest ``limit`` events with ``ts_ms >= since_ms`` whose topic starts so."""
        c = _events.c
        stmt = select(_events).order_by(c.ts_ms, c.id).limit(max(limit, 0))
        if topic_prefix is not None:
            # LIKE ignores ASCII case in SQLite; the substr test keeps the match exact.
            stmt = stmt.where(
                c.topic.like(_like_prefix(topic_prefix), escape="\\"),
                func.substr(c.topic, 1, len(topic_prefix)) == topic_prefix,
            )
        if since_ms is not None:
            stmt = stmt.where(c.ts_ms >= since_ms)
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [mappers.row_to_stored_event(r) for r in rows]


class SqlKeyValueRepo:
    """Small state in ``kv_state``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def get(self, key: StateKey) -> str | None:
        """Return the value or None."""
        stmt = select(_kv.c.value).where(_kv.c.key == StateKey(key).value)
        async with self._uow.connection() as conn:
            return (await conn.execute(stmt)).scalar_one_or_none()

    async def set(self, key: StateKey, value: str) -> None:
        """Store a value."""
        stmt = _upsert(_kv, ["key"], {"key": StateKey(key).value, "value": value})
        async with self._uow.connection() as conn:
            await conn.execute(stmt)


class SqlMarketRulesRepo:
    """Each venue's market rules per symbol in ``market_rules``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def save(self, stored: Sequence[StoredRules]) -> None:
        """Insert or replace these symbols' rules (the others stay)."""
        key = ["exchange", "market", "symbol"]
        async with self._uow.connection() as conn:
            for one in stored:
                await conn.execute(_upsert(_rules, key, mappers.stored_rules_to_row(one)))

    async def load(self, exchange: str, market: MarketType) -> dict[str, StoredRules]:
        """Return the stored rules of one venue's market, by symbol."""
        c = _rules.c
        stmt = (
            select(_rules)
            .where(and_(c.exchange == exchange, c.market == MarketType(market).value))
            .order_by(c.symbol)
        )
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return {r["symbol"]: mappers.row_to_stored_rules(r) for r in rows}


class SqlModelVersionRepo:
    """The model registry in ``model_versions``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add(self, version: ModelVersion) -> None:
        """Record a new version; an id already recorded, or a second CHAMPION of the member,
        is an ``InvariantViolation``."""
        stmt = insert(_models).values(mappers.model_version_to_row(version))
        try:
            async with self._uow.connection() as conn:
                await conn.execute(stmt)
        except IntegrityError as exc:
            if "model_versions.id" in str(exc.orig):
                raise InvariantViolation(
                    f"model version {version.id!r} is recorded already ({exc.orig})"
                ) from exc
            raise _second_champion(version, exc) from exc

    async def get(self, version_id: str) -> ModelVersion | None:
        """Return the version or None."""
        stmt = select(_models).where(_models.c.id == version_id)
        async with self._uow.connection() as conn:
            row = (await conn.execute(stmt)).mappings().one_or_none()
        return None if row is None else mappers.row_to_model_version(row)

    async def set_status(
        self, version_id: str, status: ModelStatus, *, reason: str, ts_ms: int
    ) -> ModelVersion:
        """Give the version any status but CHAMPION (``ValueError``: use ``promote``);
        return it updated. An unknown id is an ``InvariantViolation``."""
        async with self._uow.atomic():
            version = await self._existing(version_id)
            changed = with_status(version, status, reason=reason, ts_ms=ts_ms)
            if changed is not version:
                await self._write_status(changed)
        return changed

    async def promote(
        self, version_id: str, *, reason: str, ts_ms: int
    ) -> tuple[ModelVersion, ModelVersion | None]:
        """Make the version its member's CHAMPION, retiring the current one, in one
        transaction; return (the champion, the one demoted or None)."""
        async with self._uow.atomic():
            version = await self._existing(version_id)
            if version.status is ModelStatus.CHAMPION:
                return version, None
            current = await self.newest(version.member, ModelStatus.CHAMPION)
            demoted = None
            if current is not None:
                demoted = replaced(current, version_id, ts_ms=ts_ms)
                await self._write_status(demoted)  # first: the unique index allows one
            champion = promoted(version, reason=reason, ts_ms=ts_ms)
            await self._write_status(champion)
        return champion, demoted

    async def delete(self, version_id: str) -> None:
        """Remove the version's row (an unknown id: nothing); never the CHAMPION."""
        async with self._uow.atomic():
            version = await self.get(version_id)
            if version is None:
                return
            if version.status is ModelStatus.CHAMPION:
                raise InvariantViolation(
                    f"model version {version_id!r} is the {version.member} CHAMPION: "
                    "promote another before deleting it"
                )
            async with self._uow.connection() as conn:
                await conn.execute(_models.delete().where(_models.c.id == version_id))

    async def _existing(self, version_id: str) -> ModelVersion:
        version = await self.get(version_id)
        if version is None:
            raise InvariantViolation(f"model version {version_id!r} is not recorded")
        return version

    async def _write_status(self, version: ModelVersion) -> None:
        row = mappers.model_version_to_row(version)
        columns = ("status", "reason", "status_ms", "promoted_ms")
        stmt = (
            _models.update().where(_models.c.id == version.id).values({c: row[c] for c in columns})
        )
        try:
            async with self._uow.connection() as conn:
                await conn.execute(stmt)
        except IntegrityError as exc:
            raise _second_champion(version, exc) from exc

    async def list_versions(self, member: str | None = None) -> list[ModelVersion]:
        """Return the versions (of one member if given), oldest first."""
        stmt = select(_models).order_by(_models.c.created_ms, _models.c.id)
        if member is not None:
            stmt = stmt.where(_models.c.member == member)
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [mappers.row_to_model_version(r) for r in rows]

    async def newest(self, member: str, status: ModelStatus | None = None) -> ModelVersion | None:
        """Return the member's most recently created version (of that status if given)."""
        c = _models.c
        stmt = select(_models).where(c.member == member)
        if status is not None:
            stmt = stmt.where(c.status == ModelStatus(status).value)
        stmt = stmt.order_by(c.created_ms.desc(), c.id.desc()).limit(1)
        async with self._uow.connection() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return None if row is None else mappers.row_to_model_version(row)


def _second_champion(version: ModelVersion, exc: IntegrityError) -> InvariantViolation:
    return InvariantViolation(
        f"model version {version.id!r} would be a second {version.member} CHAMPION "
        f"({exc.orig}): promote it instead"
    )


# Driver-level SQL, columns in ``mappers.PREDICTION_COLUMNS`` order: plain tuples again.
_PREDICTION_INSERT_SQL = (
    "INSERT OR IGNORE INTO model_predictions "
    "(version_id, symbol, ts_ms, member, p_up, role, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_PREDICTION_SELECT_SQL = (
    "SELECT version_id, symbol, ts_ms, member, p_up, role, created_ms FROM model_predictions "
    "WHERE version_id = ? AND ts_ms >= ? AND ts_ms < ? AND (? IS NULL OR symbol = ?) "
    "ORDER BY ts_ms, symbol"
)
_PREDICTION_DELETE_SQL = "DELETE FROM model_predictions WHERE version_id = ?"


class SqlPredictionRepo:
    """Every version's predictions in ``model_predictions``, one row per (version, symbol,
    candle); written with one driver-level ``executemany`` of ``INSERT OR IGNORE``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add_many(self, predictions: Sequence[Prediction]) -> int:
        """Store the predictions not stored yet; return how many were new (a ``ValueError``
        for a ``p_up`` that is not a probability, before anything is written)."""
        check_predictions(predictions)
        if not predictions:
            return 0
        rows = [mappers.prediction_to_tuple(p) for p in predictions]
        async with self._uow.connection() as conn:
            result = await conn.exec_driver_sql(_PREDICTION_INSERT_SQL, rows)
        return int(result.rowcount)  # the ignored rows changed nothing, so count nothing

    async def list_predictions(
        self,
        version_id: str,
        *,
        symbol: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[Prediction]:
        """Return the version's predictions with ``since_ms <= ts_ms < until_ms`` (of one
        symbol if given), by candle, then symbol."""
        lo = _INT64_MIN if since_ms is None else since_ms
        hi = _INT64_MAX if until_ms is None else until_ms
        params = (version_id, lo, hi, symbol, symbol)
        async with self._uow.connection() as conn:
            rows = (await conn.exec_driver_sql(_PREDICTION_SELECT_SQL, params)).all()
        return [mappers.tuple_to_prediction(r) for r in rows]

    async def delete_version(self, version_id: str) -> int:
        """Remove every prediction of the version; return how many there were."""
        async with self._uow.connection() as conn:
            result = await conn.exec_driver_sql(_PREDICTION_DELETE_SQL, (version_id,))
        return int(result.rowcount)


class SqlDecisionRepo:
    """The brains' history in ``policy_versions``, ``risk_assessments``, ``brain_decisions``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add_policy(self, version: PolicyVersion) -> None:
        """Record a policy version; a number recorded already is an ``InvariantViolation``."""
        stmt = insert(_policies).values(mappers.policy_version_to_row(version))
        try:
            async with self._uow.connection() as conn:
                await conn.execute(stmt)
        except IntegrityError as exc:
            raise InvariantViolation(
                f"policy version {version.version} is recorded already ({exc.orig})"
            ) from exc

    async def latest_policy(self) -> PolicyVersion | None:
        """Return the newest policy version."""
        found = await self.list_policies(1)
        return found[0] if found else None

    async def list_policies(self, limit: int = 20) -> list[PolicyVersion]:
        """Return the newest ``limit`` policy versions, newest first."""
        stmt = select(_policies).order_by(_policies.c.version.desc()).limit(limit)
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [mappers.row_to_policy_version(r) for r in rows]

    async def add_assessment(self, record: AssessmentRecord) -> None:
        """Record a risk assessment."""
        async with self._uow.connection() as conn:
            await conn.execute(insert(_assessments).values(mappers.assessment_to_row(record)))

    async def list_assessments(self, limit: int = 1) -> list[AssessmentRecord]:
        """Return the newest ``limit`` assessments, newest first."""
        c = _assessments.c
        stmt = select(_assessments).order_by(c.ts_ms.desc(), c.id.desc()).limit(limit)
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [mappers.row_to_assessment(r) for r in rows]

    async def add_decision(self, decision: BrainDecision) -> None:
        """Record a brain's decision."""
        async with self._uow.connection() as conn:
            await conn.execute(insert(_decisions).values(mappers.decision_to_row(decision)))

    async def list_decisions(
        self, brain: str | None = None, limit: int = 20
    ) -> list[BrainDecision]:
        """Return the newest ``limit`` decisions (of one brain if given), newest first."""
        c = _decisions.c
        stmt = select(_decisions).order_by(c.ts_ms.desc(), c.id.desc()).limit(limit)
        if brain is not None:
            stmt = stmt.where(c.brain == brain)
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [mappers.row_to_decision(r) for r in rows]


class SqlTradeRepo:
    """Closed round trips in ``trades``, one row per trade id."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add(self, trade: ClosedTrade) -> bool:
        """Record a closed trade; return False when its trade id is stored already."""
        stmt = insert(_trades).values(mappers.trade_to_row(trade)).on_conflict_do_nothing()
        async with self._uow.connection() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    async def list_closed(
        self, *, since_ms: int | None = None, until_ms: int | None = None, limit: int | None = None
    ) -> list[ClosedTrade]:
        """Return the trades closed at ``since_ms <= closed_ms < until_ms``, oldest first; with
        ``limit``, the newest ``limit`` of them, still oldest first."""
        c = _trades.c
        stmt = select(_trades).order_by(c.closed_ms.desc(), c.id.desc())
        if since_ms is not None:
            stmt = stmt.where(c.closed_ms >= since_ms)
        if until_ms is not None:
            stmt = stmt.where(c.closed_ms < until_ms)
        if limit is not None:
            stmt = stmt.limit(max(limit, 0))
        async with self._uow.connection() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [mappers.row_to_trade(r) for r in reversed(rows)]

    async def count(self, *, since_ms: int | None = None) -> int:
        """Return how many trades closed at ``closed_ms >= since_ms`` are stored."""
        stmt = select(func.count()).select_from(_trades)
        if since_ms is not None:
            stmt = stmt.where(_trades.c.closed_ms >= since_ms)
        async with self._uow.connection() as conn:
            return int((await conn.execute(stmt)).scalar_one())


class SqlStorage:
    """Every SQL repository over one engine, plus the unit of work.

    ``start()`` migrates the schema to the newest revision; ``stop()`` closes all connections.
    ``candles`` are the series of ``candle_market`` (the others through ``candles.for_market``).
    """

    def __init__(self, url: str, candle_market: CandleMarket = CandleMarket.SPOT) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.uow = UnitOfWork(self.engine)
        self.candles = SqlCandleRepo(self.uow, candle_market)
        self.orders = SqlOrderRepo(self.uow)
        self.fills = SqlFillRepo(self.uow)
        self.positions = SqlPositionRepo(self.uow)
        self.balances = SqlBalanceRepo(self.uow)
        self.events = SqlEventRepo(self.uow)
        self.state = SqlKeyValueRepo(self.uow)
        self.market_rules = SqlMarketRulesRepo(self.uow)
        self.model_versions = SqlModelVersionRepo(self.uow)
        self.predictions = SqlPredictionRepo(self.uow)
        self.decisions = SqlDecisionRepo(self.uow)
        self.trades = SqlTradeRepo(self.uow)

    def atomic(self) -> AbstractAsyncContextManager[None]:
        """Group the repository calls made inside into one transaction (nested: savepoint)."""
        return self.uow.atomic()

    async def start(self) -> None:
        """Bring the schema to the newest migration (closing the connections if it fails)."""
        try:
            await upgrade_engine(self.engine)
        except BaseException:
            # Callers stop only what started; an open connection's thread would outlive them.
            await self.engine.dispose()
            raise

    async def stop(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
