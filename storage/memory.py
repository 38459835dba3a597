"""The in-memory twin of the SQL storage, for backtests and unit tests.

Every repository keeps plain dicts of frozen domain values and follows the same contract as the
SQL repositories (``tests/contract/test_repositories.py`` runs both through one suite):

* a fill must belong to a stored order (the SQL table has a foreign key), else
  :class:`~core.errors.InvariantViolation`;
* a non-empty exchange order id belongs to one client order id only, else ``InvariantViolation``;
* event payloads go through JSON, so what you read back is what SQL would give you.

``MemoryStorage.atomic()`` keeps an undo journal of the writes made inside the block and replays
it backwards when the block raises, so code written against the unit of work behaves the same on
both. Its cost is proportional to the writes, not to the data held (backtests call it for every
fill). It does not isolate concurrent tasks: a rollback also drops writes other tasks made
during the block. Events are kept as the frozen objects and serialised when read.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from core.domain.decisions import AssessmentRecord, BrainDecision, PolicyVersion
from core.domain.enums import CandleMarket, MarketType
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
from core.ports import SeriesInfo, StateKey, StoredEvent, stored_event
from storage import mappers

_SeriesKey = tuple[str, CandleMarket, str, str]  # exchange, market, symbol, timeframe
_MISSING = object()
_APPENDED = object()


class _Journal:
    """Undo records of the open ``atomic()`` blocks, innermost last.

    A record is ``(mapping, key, old value or _MISSING)`` or ``(list, None, _APPENDED)``: plain
    tuples rather than closures, since backtests write tens of thousands of times.
    """

    def __init__(self) -> None:
        self.levels: list[list[tuple[Any, Any, Any]]] = []

    def put(self, mapping: MutableMapping[Any, Any], key: Any, value: Any) -> None:
        """Set ``mapping[key]``, remembering how to undo it."""
        if self.levels:
            self.levels[-1].append((mapping, key, mapping.get(key, _MISSING)))
        mapping[key] = value

    def pop(self, mapping: MutableMapping[Any, Any], key: Any) -> None:
        """Remove ``mapping[key]`` if present, remembering how to undo it."""
        if key not in mapping:
            return
        if self.levels:
            self.levels[-1].append((mapping, key, mapping[key]))
        del mapping[key]

    def append(self, items: list[Any], value: Any) -> None:
        """Append to ``items``, remembering how to undo it."""
        if self.levels:
            self.levels[-1].append((items, None, _APPENDED))
        items.append(value)

    @staticmethod
    def undo(records: list[tuple[Any, Any, Any]]) -> None:
        """Revert ``records``, newest first."""
        for target, key, old in reversed(records):
            if old is _APPENDED:
                target.pop()
            elif old is _MISSING:
                target.pop(key, None)
            else:
                target[key] = old


_COLUMNS = ("ts_ms", "open", "high", "low", "close", "volume")


def merge_candles(old: CandleSeries, new: CandleSeries) -> CandleSeries:
    """Return ``old`` and ``new`` merged by open time; ``new`` wins where both have a row."""
    ts = np.concatenate([old.ts_ms, new.ts_ms])
    # A stable sort keeps old rows before new ones of the same ts, so "last of each run" is new.
    order = np.argsort(ts, kind="stable")
    ts_sorted = ts[order]
    keep = np.ones(len(ts_sorted), dtype=bool)
    keep[:-1] = ts_sorted[1:] != ts_sorted[:-1]
    rows = order[keep]
    cols = {c: np.concatenate([getattr(old, c), getattr(new, c)])[rows] for c in _COLUMNS}
    return CandleSeries(symbol=new.symbol, timeframe=new.timeframe, **cols)


class MemoryCandleRepo:
    """Candles as one sorted ``CandleSeries`` per (exchange, market, symbol, timeframe).

    The repos of every market kind share one dict (``for_market``), as the SQL ones share a
    table.
    """

    def __init__(
        self,
        journal: _Journal,
        market: CandleMarket = CandleMarket.SPOT,
        series: dict[_SeriesKey, CandleSeries] | None = None,
    ) -> None:
        self._journal = journal
        self._market = CandleMarket(market)
        self._series: dict[_SeriesKey, CandleSeries] = {} if series is None else series

    @property
    def market(self) -> CandleMarket:
        """Return the kind of series this repo reads and writes."""
        return self._market

    def for_market(self, market: CandleMarket) -> MemoryCandleRepo:
        """Return the repo of ``market``'s series over the same candles."""
        return MemoryCandleRepo(self._journal, market, self._series)

    async def upsert(self, exchange: str, series: CandleSeries) -> int:
        """Insert or replace candles; return how many rows were written."""
        if len(series) == 0:
            return 0
        key = (exchange, self._market, series.symbol, series.timeframe)
        old = self._series.get(key) or CandleSeries.empty(series.symbol, series.timeframe)
        self._journal.put(self._series, key, merge_candles(old, series))
        return len(series)

    async def load(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> CandleSeries:
        """Return candles with ``start_ms <= ts_ms < end_ms``, sorted (copies, safe to keep)."""
        stored = self._series.get((exchange, self._market, symbol, timeframe))
        if stored is None:
            return CandleSeries.empty(symbol, timeframe)
        part = stored.between(start_ms, end_ms)
        cols = {c: getattr(part, c).copy() for c in _COLUMNS}
        return CandleSeries(symbol=symbol, timeframe=timeframe, **cols)

    async def open_times(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> npt.NDArray[np.int64]:
        """Return the open times with ``start_ms <= ts_ms < end_ms``, sorted (a copy)."""
        stored = self._series.get((exchange, self._market, symbol, timeframe))
        if stored is None:
            return np.empty(0, dtype=np.int64)
        return stored.between(start_ms, end_ms).ts_ms.copy()

    async def delete(
        self, exchange: str, symbol: str, timeframe: str, ts_ms: npt.NDArray[np.int64]
    ) -> int:
        """Remove the candles that opened at ``ts_ms``; return how many were stored."""
        key = (exchange, self._market, symbol, timeframe)
        stored = self._series.get(key)
        if stored is None:
            return 0
        gone = np.isin(stored.ts_ms, np.asarray(ts_ms, dtype=np.int64))
        if gone.any():
            self._journal.put(self._series, key, stored.mask(~gone))
        return int(gone.sum())

    async def last_ts_ms(self, exchange: str, symbol: str, timeframe: str) -> int | None:
        """Return the newest stored open time, or None."""
        stored = self._series.get((exchange, self._market, symbol, timeframe))
        return None if stored is None or len(stored) == 0 else int(stored.ts_ms[-1])

    async def list_series(self) -> list[SeriesInfo]:
        """Return a summary of every stored series of every market kind, sorted by exchange,
        market, symbol and timeframe."""
        return [
            SeriesInfo(
                exchange=ex,
                market=market,
                symbol=sym,
                timeframe=tf,
                first_ms=int(s.ts_ms[0]),
                last_ms=int(s.ts_ms[-1]),
                rows=len(s),
            )
            for (ex, market, sym, tf), s in sorted(self._series.items())
            if len(s)
        ]


class MemoryOrderRepo:
    """Orders keyed by client order id, in insertion order."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._orders: dict[str, Order] = {}
        self._by_exchange_id: dict[str, str] = {}

    async def upsert(self, order: Order) -> None:
        """Insert or update an order; a known exchange order id on another order is a bug."""
        xid, cid = order.exchange_order_id, order.client_order_id
        if xid:
            owner = self._by_exchange_id.get(xid)
            if owner is not None and owner != cid:
                raise InvariantViolation(
                    f"exchange order id {xid!r} of order {cid!r} already belongs to order {owner!r}"
                )
        previous = self._orders.get(cid)
        old_xid = previous.exchange_order_id if previous is not None else ""
        if old_xid and old_xid != xid:
            # The row's unique column now holds the new id (or NULL): the old one is free.
            self._journal.pop(self._by_exchange_id, old_xid)
        if xid and old_xid != xid:
            self._journal.put(self._by_exchange_id, xid, cid)
        self._journal.put(self._orders, cid, order)

    async def get(self, client_order_id: str) -> Order | None:
        """Return the order or None."""
        return self._orders.get(client_order_id)

    async def list_open(self, symbol: str | None = None) -> list[Order]:
        """Return non-terminal orders, oldest first."""
        return [o for o in await self.list_all(symbol) if o.is_open]

    async def list_all(self, symbol: str | None = None) -> list[Order]:
        """Return every order, oldest first (ties in insertion order)."""
        found = [o for o in self._orders.values() if symbol is None or o.symbol == symbol]
        return sorted(found, key=lambda o: o.created_ms)


class MemoryFillRepo:
    """Fills keyed by fill id; each must belong to an order in ``orders``."""

    def __init__(self, journal: _Journal, orders: MemoryOrderRepo) -> None:
        self._journal = journal
        self._orders = orders
        self._fills: dict[str, Fill] = {}

    async def add(self, fill: Fill) -> None:
        """Record a fill; a known fill id is a no-op, an unknown order is a bug."""
        if fill.fill_id in self._fills:
            return
        if await self._orders.get(fill.client_order_id) is None:
            raise InvariantViolation(
                f"fill {fill.fill_id!r} refers to unknown order {fill.client_order_id!r}; "
                "store the order first"
            )
        self._journal.put(self._fills, fill.fill_id, fill)

    async def list_fills(self, client_order_id: str | None = None) -> list[Fill]:
        """Return fills (of one order if given), oldest first."""
        found = [
            f
            for f in self._fills.values()
            if client_order_id is None or f.client_order_id == client_order_id
        ]
        return sorted(found, key=lambda f: f.ts_ms)


class MemoryPositionRepo:
    """Open positions keyed by (symbol, market type)."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._positions: dict[tuple[str, MarketType], Position] = {}

    async def upsert(self, position: Position) -> None:
        """Insert or replace a position."""
        self._journal.put(self._positions, (position.symbol, position.market_type), position)

    async def delete(self, symbol: str, market_type: MarketType) -> None:
        """Remove a closed position (no error if absent)."""
        self._journal.pop(self._positions, (symbol, MarketType(market_type)))

    async def list_positions(self) -> list[Position]:
        """Return open positions sorted by symbol and market type."""
        return [self._positions[k] for k in sorted(self._positions)]


class MemoryBalanceRepo:
    """Balances per asset and equity snapshots over time."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._balances: dict[str, Balance] = {}
        self._equity: list[EquitySnapshot] = []

    async def set_balances(self, balances: Sequence[Balance]) -> None:
        """Insert or replace the given assets' balances."""
        for b in balances:
            self._journal.put(self._balances, b.asset, b)

    async def get_balances(self) -> dict[str, Balance]:
        """Return balances by asset, sorted by asset."""
        return {a: self._balances[a] for a in sorted(self._balances)}

    async def add_equity(self, snapshot: EquitySnapshot) -> None:
        """Record an equity snapshot."""
        self._journal.append(self._equity, snapshot)

    async def list_equity(
        self, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[EquitySnapshot]:
        """Return snapshots with ``start_ms <= ts_ms < end_ms`` in time order."""
        found = [
            s
            for s in self._equity
            if (start_ms is None or s.ts_ms >= start_ms) and (end_ms is None or s.ts_ms < end_ms)
        ]
        return sorted(found, key=lambda s: s.ts_ms)


class MemoryEventRepo:
    """The audit trail: the frozen events in append order, serialised when read."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._events: list[Event | StoredEvent] = []
        self._ids: dict[str, None] = {}

    async def append(self, event: Event | StoredEvent) -> None:
        """Persist an event (idempotent on event id)."""
        if event.event_id in self._ids:
            return
        self._journal.put(self._ids, event.event_id, None)
        self._journal.append(self._events, event)

    async def list_events(
        self, topic_prefix: str | None = None, since_ms: int | None = None, limit: int = 1000
    ) -> list[StoredEvent]:
        """Return the oldest ``limit`` events with ``ts_ms >= since_ms`` whose topic starts so."""
        found = [
            e
            for e in self._events
            if (topic_prefix is None or e.topic.startswith(topic_prefix))
            and (since_ms is None or e.ts_ms >= since_ms)
        ]
        found.sort(key=lambda e: e.ts_ms)  # stable: ties keep append order
        # Round-trip through JSON so readers see exactly what the SQL store would return.
        return [
            StoredEvent(
                event_id=e.event_id,
                topic=e.topic,
                ts_ms=e.ts_ms,
                payload=json.loads(json.dumps(stored_event(e).payload)),
            )
            for e in found[: max(limit, 0)]
        ]


class MemoryKeyValueRepo:
    """Small state as a dict of strings."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._values: dict[str, str] = {}

    async def get(self, key: StateKey) -> str | None:
        """Return the value or None."""
        return self._values.get(StateKey(key).value)

    async def set(self, key: StateKey, value: str) -> None:
        """Store a value."""
        self._journal.put(self._values, StateKey(key).value, value)


class MemoryMarketRulesRepo:
    """Each venue's market rules per symbol, in a dict."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._rules: dict[tuple[str, str, str], StoredRules] = {}

    async def save(self, stored: Sequence[StoredRules]) -> None:
        """Insert or replace these symbols' rules (the others stay)."""
        for one in stored:
            self._journal.put(self._rules, (one.exchange, one.market, one.rules.symbol), one)

    async def load(self, exchange: str, market: MarketType) -> dict[str, StoredRules]:
        """Return the stored rules of one venue's market, by symbol."""
        kind = MarketType(market).value
        return {
            s: one for (e, m, s), one in sorted(self._rules.items()) if (e, m) == (exchange, kind)
        }


class MemoryModelVersionRepo:
    """The model registry as a dict by version id; at most one CHAMPION per member, as the
    SQL table's partial unique index allows."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._versions: dict[str, ModelVersion] = {}

    async def add(self, version: ModelVersion) -> None:
        """Record a new version; an id already recorded, or a second CHAMPION of the member,
        is an ``InvariantViolation``."""
        if version.id in self._versions:
            raise InvariantViolation(f"model version {version.id!r} is recorded already")
        # Through the SQL row and back: what is read back is what SQL would give.
        stored = mappers.row_to_model_version(mappers.model_version_to_row(version))
        self._check_one_champion(stored)
        self._journal.put(self._versions, version.id, stored)

    async def list_versions(self, member: str | None = None) -> list[ModelVersion]:
        """Return the versions (of one member if given), oldest first."""
        found = [v for v in self._versions.values() if member is None or v.member == member]
        return sorted(found, key=lambda v: (v.created_ms, v.id))

    async def newest(self, member: str, status: ModelStatus | None = None) -> ModelVersion | None:
        """Return the member's most recently created version (of that status if given)."""
        found = [
            v
            for v in await self.list_versions(member)
            if status is None or v.status == ModelStatus(status)
        ]
        return found[-1] if found else None

    async def get(self, version_id: str) -> ModelVersion | None:
        """Return the version or None."""
        return self._versions.get(version_id)

    async def set_status(
        self, version_id: str, status: ModelStatus, *, reason: str, ts_ms: int
    ) -> ModelVersion:
        """Give the version any status but CHAMPION (``ValueError``: use ``promote``);
        return it updated. An unknown id is an ``InvariantViolation``."""
        changed = with_status(self._existing(version_id), status, reason=reason, ts_ms=ts_ms)
        self._journal.put(self._versions, version_id, changed)
        return changed

    async def promote(
        self, version_id: str, *, reason: str, ts_ms: int
    ) -> tuple[ModelVersion, ModelVersion | None]:
        """Make the version its member's CHAMPION, retiring the current one (both writes
        or neither); return (the champion, the one demoted or None)."""
        version = self._existing(version_id)
        if version.status is ModelStatus.CHAMPION:
            return version, None
        current = await self.newest(version.member, ModelStatus.CHAMPION)
        demoted = None if current is None else replaced(current, version_id, ts_ms=ts_ms)
        champion = promoted(version, reason=reason, ts_ms=ts_ms)
        # No await between the two writes: no other task sees one without the other.
        if demoted is not None:
            self._journal.put(self._versions, demoted.id, demoted)
        self._journal.put(self._versions, version_id, champion)
        return champion, demoted

    async def delete(self, version_id: str) -> None:
        """Remove the version (an unknown id: nothing); never the CHAMPION."""
        version = self._versions.get(version_id)
        if version is not None and version.status is ModelStatus.CHAMPION:
            raise InvariantViolation(
                f"model version {version_id!r} is the {version.member} CHAMPION: "
                "promote another before deleting it"
            )
        self._journal.pop(self._versions, version_id)

    def _existing(self, version_id: str) -> ModelVersion:
        version = self._versions.get(version_id)
        if version is None:
            raise InvariantViolation(f"model version {version_id!r} is not recorded")
        return version

    def _check_one_champion(self, version: ModelVersion) -> None:
        if version.status is not ModelStatus.CHAMPION:
            return
        for other in self._versions.values():
            if other.member == version.member and other.status is ModelStatus.CHAMPION:
                raise InvariantViolation(
                    f"model version {version.id!r} would be a second {version.member} "
                    f"CHAMPION (beside {other.id!r}): promote it instead"
                )


class MemoryPredictionRepo:
    """Predictions by version id, then (symbol, candle): the first written of each is kept."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._by_version: dict[str, dict[tuple[str, int], Prediction]] = {}

    async def add_many(self, predictions: Sequence[Prediction]) -> int:
        """Store the predictions not stored yet; return how many were new (a ``ValueError``
        for a ``p_up`` that is not a probability, before anything is written)."""
        check_predictions(predictions)
        new = 0
        for p in predictions:
            stored = self._by_version.get(p.version_id)
            if stored is None:
                stored = {}
                self._journal.put(self._by_version, p.version_id, stored)
            key = (p.symbol, int(p.ts_ms))
            if key in stored:
                continue
            # Plain Python numbers, as the SQL driver gives them back.
            plain = replace(p, ts_ms=key[1], p_up=float(p.p_up), created_ms=int(p.created_ms))
            self._journal.put(stored, key, plain)
            new += 1
        return new

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
        stored = self._by_version.get(version_id, {})
        return [
            stored[(sym, ts)]
            for ts, sym in sorted((ts, sym) for sym, ts in stored)
            if (symbol is None or sym == symbol)
            and (since_ms is None or ts >= since_ms)
            and (until_ms is None or ts < until_ms)
        ]

    async def delete_version(self, version_id: str) -> int:
        """Remove every prediction of the version; return how many there were."""
        count = len(self._by_version.get(version_id, {}))
        self._journal.pop(self._by_version, version_id)
        return count


class MemoryDecisionRepo:
    """The brains' history in lists, oldest first (through JSON like the SQL columns)."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._policies: dict[int, dict[str, Any]] = {}
        self._assessments: list[AssessmentRecord] = []
        self._decisions: list[BrainDecision] = []

    async def add_policy(self, version: PolicyVersion) -> None:
        """Record a policy version; a number recorded already is an ``InvariantViolation``."""
        if version.version in self._policies:
            raise InvariantViolation(f"policy version {version.version} is recorded already")
        row = mappers.policy_version_to_row(version)
        self._journal.put(self._policies, version.version, row)

    async def latest_policy(self) -> PolicyVersion | None:
        """Return the newest policy version."""
        found = await self.list_policies(1)
        return found[0] if found else None

    async def list_policies(self, limit: int = 20) -> list[PolicyVersion]:
        """Return the newest ``limit`` policy versions, newest first."""
        newest = sorted(self._policies, reverse=True)[:limit]
        return [mappers.row_to_policy_version(self._policies[v]) for v in newest]

    async def add_assessment(self, record: AssessmentRecord) -> None:
        """Record a risk assessment."""
        self._journal.append(self._assessments, record)

    async def list_assessments(self, limit: int = 1) -> list[AssessmentRecord]:
        """Return the newest ``limit`` assessments, newest first."""
        ordered = sorted(enumerate(self._assessments), key=lambda p: (p[1].ts_ms, p[0]))
        return [r for _, r in reversed(ordered)][:limit]

    async def add_decision(self, decision: BrainDecision) -> None:
        """Record a brain's decision."""
        self._journal.append(self._decisions, decision)

    async def list_decisions(
        self, brain: str | None = None, limit: int = 20
    ) -> list[BrainDecision]:
        """Return the newest ``limit`` decisions (of one brain if given), newest first."""
        found = [(i, d) for i, d in enumerate(self._decisions) if brain in (None, d.brain)]
        found.sort(key=lambda p: (p[1].ts_ms, p[0]))
        return [d for _, d in reversed(found)][:limit]


class MemoryTradeRepo:
    """Closed round trips as ``trades`` rows by trade id, in the order recorded (the rows the
    SQL table holds, so what is read back is what SQL would give)."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self._rows: dict[str, dict[str, Any]] = {}

    async def add(self, trade: ClosedTrade) -> bool:
        """Record a closed trade; return False when its trade id is stored already."""
        if trade.trade_id in self._rows:
            return False
        self._journal.put(self._rows, trade.trade_id, mappers.trade_to_row(trade))
        return True

    async def list_closed(
        self, *, since_ms: int | None = None, until_ms: int | None = None, limit: int | None = None
    ) -> list[ClosedTrade]:
        """Return the trades closed at ``since_ms <= closed_ms < until_ms``, oldest first; with
        ``limit``, the newest ``limit`` of them, still oldest first."""
        found = [
            row
            for row in self._rows.values()
            if (since_ms is None or row["closed_ms"] >= since_ms)
            and (until_ms is None or row["closed_ms"] < until_ms)
        ]
        found.sort(key=lambda row: row["closed_ms"])  # stable: ties keep the order recorded
        if limit is not None:
            found = found[-limit:] if limit > 0 else []
        return [mappers.row_to_trade(row) for row in found]

    async def count(self, *, since_ms: int | None = None) -> int:
        """Return how many trades closed at ``closed_ms >= since_ms`` are stored."""
        return sum(
            1 for row in self._rows.values() if since_ms is None or row["closed_ms"] >= since_ms
        )


class _Atomic(AbstractAsyncContextManager[None]):
    """The unit of work of ``MemoryStorage.atomic()``.

    A plain class rather than ``@asynccontextmanager``: backtests open thousands of these and
    the generator machinery cost more than the writes inside.
    """

    __slots__ = ("_levels",)

    def __init__(self, journal: _Journal) -> None:
        self._levels = journal.levels

    async def __aenter__(self) -> None:
        self._levels.append([])

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        done = self._levels.pop()
        if exc_type is not None:
            _Journal.undo(done)
        elif self._levels:
            self._levels[-1].extend(done)  # an outer block that fails must undo these too


class MemoryStorage:
    """All in-memory repositories plus an undo-journal unit of work; ``candles`` are the series
    of ``candle_market`` (the others through ``candles.for_market``)."""

    def __init__(self, candle_market: CandleMarket = CandleMarket.SPOT) -> None:
        self._journal = _Journal()
        self.candles = MemoryCandleRepo(self._journal, candle_market)
        self.orders = MemoryOrderRepo(self._journal)
        self.fills = MemoryFillRepo(self._journal, self.orders)
        self.positions = MemoryPositionRepo(self._journal)
        self.balances = MemoryBalanceRepo(self._journal)
        self.events = MemoryEventRepo(self._journal)
        self.state = MemoryKeyValueRepo(self._journal)
        self.market_rules = MemoryMarketRulesRepo(self._journal)
        self.model_versions = MemoryModelVersionRepo(self._journal)
        self.predictions = MemoryPredictionRepo(self._journal)
        self.decisions = MemoryDecisionRepo(self._journal)
        self.trades = MemoryTradeRepo(self._journal)

    def atomic(self) -> _Atomic:
        """Group the writes made inside; undo all of them if the block raises."""
        return _Atomic(self._journal)

    async def start(self) -> None:
        """Do nothing: there is nothing to open."""

    async def stop(self) -> None:
        """Do nothing: there is nothing to close."""
