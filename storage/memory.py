"""The in-memory twin of the SQL storage, for backtests and unit tests.

Every repository keeps plain dicts of frozen domain values and follows the same contract as the
SQL repositories (``tests/contract/test_repositories.py`` runs both through one suite):

* a fill must belong to a stored order (the SQL table has a foreign key), else
  :class:`~core.errors.InvariantViolation`;
* a non-empty exchange order id belongs to one client order id only, else ``InvariantViolation``;
* event payloads go through JSON, so what you read back is what SQL would give you.

``MemoryStorage.atomic()`` snapshots every repository and restores the snapshot when the block
raises, so code written against the unit of work behaves the same on both. It does not isolate
concurrent tasks: a rollback also drops writes other tasks made during the block.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from core.domain.enums import MarketType
from core.domain.events import Event, event_payload
from core.domain.market import CandleSeries
from core.domain.orders import Fill, Order
from core.domain.portfolio import Balance, EquitySnapshot, Position
from core.errors import InvariantViolation
from core.ports import SeriesInfo, StateKey, StoredEvent

_SeriesKey = tuple[str, str, str]  # exchange, symbol, timeframe
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
    """Candles as one sorted ``CandleSeries`` per (exchange, symbol, timeframe)."""

    def __init__(self) -> None:
        self._series: dict[_SeriesKey, CandleSeries] = {}

    async def upsert(self, exchange: str, series: CandleSeries) -> int:
        """Insert or replace candles; return how many rows were written."""
        if len(series) == 0:
            return 0
        key = (exchange, series.symbol, series.timeframe)
        old = self._series.get(key) or CandleSeries.empty(series.symbol, series.timeframe)
        self._series[key] = merge_candles(old, series)
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
        stored = self._series.get((exchange, symbol, timeframe))
        if stored is None:
            return CandleSeries.empty(symbol, timeframe)
        part = stored.between(start_ms, end_ms)
        cols = {c: getattr(part, c).copy() for c in _COLUMNS}
        return CandleSeries(symbol=symbol, timeframe=timeframe, **cols)

    async def last_ts_ms(self, exchange: str, symbol: str, timeframe: str) -> int | None:
        """Return the newest stored open time, or None."""
        stored = self._series.get((exchange, symbol, timeframe))
        return None if stored is None or len(stored) == 0 else int(stored.ts_ms[-1])

    async def list_series(self) -> list[SeriesInfo]:
        """Return a summary of every stored series, sorted by exchange, symbol, timeframe."""
        return [
            SeriesInfo(
                exchange=ex,
                symbol=sym,
                timeframe=tf,
                first_ms=int(s.ts_ms[0]),
                last_ms=int(s.ts_ms[-1]),
                rows=len(s),
            )
            for (ex, sym, tf), s in sorted(self._series.items())
            if len(s)
        ]

    def _snapshot(self) -> Any:
        return dict(self._series)  # series are replaced, never mutated, so a shallow copy is enough

    def _restore(self, snap: Any) -> None:
        self._series = snap


class MemoryOrderRepo:
    """Orders keyed by client order id, in insertion order."""

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}

    async def upsert(self, order: Order) -> None:
        """Insert or update an order; a known exchange order id on another order is a bug."""
        xid, cid = order.exchange_order_id, order.client_order_id
        if xid:
            for other in self._orders.values():
                if other.exchange_order_id == xid and other.client_order_id != cid:
                    raise InvariantViolation(
                        f"exchange order id {xid!r} of order {cid!r} already "
                        f"belongs to order {other.client_order_id!r}"
                    )
        self._orders[order.client_order_id] = order

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

    def _snapshot(self) -> Any:
        return dict(self._orders)

    def _restore(self, snap: Any) -> None:
        self._orders = snap


class MemoryFillRepo:
    """Fills keyed by fill id; each must belong to an order in ``orders``."""

    def __init__(self, orders: MemoryOrderRepo) -> None:
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
        self._fills[fill.fill_id] = fill

    async def list_fills(self, client_order_id: str | None = None) -> list[Fill]:
        """Return fills (of one order if given), oldest first."""
        found = [
            f
            for f in self._fills.values()
            if client_order_id is None or f.client_order_id == client_order_id
        ]
        return sorted(found, key=lambda f: f.ts_ms)

    def _snapshot(self) -> Any:
        return dict(self._fills)

    def _restore(self, snap: Any) -> None:
        self._fills = snap


class MemoryPositionRepo:
    """Open positions keyed by (symbol, market type)."""

    def __init__(self) -> None:
        self._positions: dict[tuple[str, MarketType], Position] = {}

    async def upsert(self, position: Position) -> None:
        """Insert or replace a position."""
        self._positions[(position.symbol, position.market_type)] = position

    async def delete(self, symbol: str, market_type: MarketType) -> None:
        """Remove a closed position (no error if absent)."""
        self._positions.pop((symbol, MarketType(market_type)), None)

    async def list_positions(self) -> list[Position]:
        """Return open positions sorted by symbol and market type."""
        return [self._positions[k] for k in sorted(self._positions)]

    def _snapshot(self) -> Any:
        return dict(self._positions)

    def _restore(self, snap: Any) -> None:
        self._positions = snap


class MemoryBalanceRepo:
    """Balances per asset and equity snapshots over time."""

    def __init__(self) -> None:
        self._balances: dict[str, Balance] = {}
        self._equity: list[EquitySnapshot] = []

    async def set_balances(self, balances: Sequence[Balance]) -> None:
        """Insert or replace the given assets' balances."""
        for b in balances:
            self._balances[b.asset] = b

    async def get_balances(self) -> dict[str, Balance]:
        """Return balances by asset, sorted by asset."""
        return {a: self._balances[a] for a in sorted(self._balances)}

    async def add_equity(self, snapshot: EquitySnapshot) -> None:
        """Record an equity snapshot."""
        self._equity.append(snapshot)

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

    def _snapshot(self) -> Any:
        return dict(self._balances), list(self._equity)

    def _restore(self, snap: Any) -> None:
        self._balances, self._equity = snap


class MemoryEventRepo:
    """The audit trail, keyed by event id."""

    def __init__(self) -> None:
        self._events: dict[str, StoredEvent] = {}

    async def append(self, event: Event) -> None:
        """Persist an event (idempotent on event id)."""
        if event.event_id in self._events:
            return
        # Round-trip through JSON so readers see exactly what the SQL store would return.
        payload = json.loads(json.dumps(event_payload(event)))
        self._events[event.event_id] = StoredEvent(
            event_id=event.event_id, topic=event.topic, ts_ms=event.ts_ms, payload=payload
        )

    async def list_events(
        self, topic_prefix: str | None = None, since_ms: int | None = None, limit: int = 1000
    ) -> list[StoredEvent]:
        """Return the oldest ``limit`` events with ``ts_ms >= since_ms`` whose topic starts so."""
        found = [
            e
            for e in self._events.values()
            if (topic_prefix is None or e.topic.startswith(topic_prefix))
            and (since_ms is None or e.ts_ms >= since_ms)
        ]
        return sorted(found, key=lambda e: e.ts_ms)[: max(limit, 0)]

    def _snapshot(self) -> Any:
        return dict(self._events)

    def _restore(self, snap: Any) -> None:
        self._events = snap


class MemoryKeyValueRepo:
    """Small state as a dict of strings."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    async def get(self, key: StateKey) -> str | None:
        """Return the value or None."""
        return self._values.get(StateKey(key).value)

    async def set(self, key: StateKey, value: str) -> None:
        """Store a value."""
        self._values[StateKey(key).value] = value

    def _snapshot(self) -> Any:
        return dict(self._values)

    def _restore(self, snap: Any) -> None:
        self._values = snap


class MemoryStorage:
    """All in-memory repositories plus a snapshot-and-restore unit of work."""

    def __init__(self) -> None:
        self.candles = MemoryCandleRepo()
        self.orders = MemoryOrderRepo()
        self.fills = MemoryFillRepo(self.orders)
        self.positions = MemoryPositionRepo()
        self.balances = MemoryBalanceRepo()
        self.events = MemoryEventRepo()
        self.state = MemoryKeyValueRepo()

    def _repos(self) -> tuple[Any, ...]:
        return (
            self.candles,
            self.orders,
            self.fills,
            self.positions,
            self.balances,
            self.events,
            self.state,
        )

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        """Group the writes made inside; undo all of them if the block raises."""
        snaps = [repo._snapshot() for repo in self._repos()]
        try:
            yield
        except BaseException:
            for repo, snap in zip(self._repos(), snaps, strict=True):
                repo._restore(snap)
            raise

    async def start(self) -> None:
        """Do nothing: there is nothing to open."""

    async def stop(self) -> None:
        """Do nothing: there is nothing to close."""
