"""Ports: the protocols the core talks to. Adapters live in core/exchange (venues) and storage/.

Exchange side: ``MarketData`` (public candles) and ``Exchange`` (trading). Storage side: async
repositories bundled in ``Storage``; ``Storage.atomic()`` opens one unit of work so that writes
made inside it land together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from core.domain.decisions import AssessmentRecord, BrainDecision, PolicyVersion
from core.domain.enums import CandleMarket, MarketType
from core.domain.events import Event, event_payload
from core.domain.market import CandleSeries
from core.domain.market_rules import StoredRules
from core.domain.model_versions import ModelStatus, ModelVersion, Prediction
from core.domain.orders import Fill, Order, OrderRequest
from core.domain.portfolio import Balance, EquitySnapshot, Position
from core.domain.trades import ClosedTrade
from core.values import value_class

# --- exchange ----------------------------------------------------------------------------------


class MarketData(Protocol):
    """Public market data."""

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None, limit: int
    ) -> CandleSeries:
        """Return up to ``limit`` candles with open time >= ``since_ms``, oldest first."""
        ...


class Exchange(Protocol):
    """Trading on a venue. ``create_order`` is idempotent on the request's client order id."""

    name: str

    async def create_order(self, request: OrderRequest) -> Order:
        """Submit an order; resubmitting a known client order id returns the existing order."""
        ...

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        """Cancel an open order and return its final state."""
        ...

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        """Return the order's current state."""
        ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return open orders, optionally of one symbol."""
        ...

    async def fetch_balances(self) -> dict[str, Balance]:
        """Return balances by asset, each saying whether it includes the open perp positions'
        unrealized PnL (``Balance.includes_unrealized_pnl``: a margin or a wallet balance)."""
        ...

    async def fetch_positions(self) -> list[Position]:
        """Return open positions (spot holdings bought by us count as LONG positions)."""
        ...


# --- storage -----------------------------------------------------------------------------------


class StateKey(StrEnum):
    """Keys of the key-value state store."""

    TRADING_STATE = "trading_state"
    TRADING_STATE_REASON = "trading_state_reason"
    RESUMED_MS = "resumed_ms"  # when an operator last resumed (also while already active)
    PAPER_INITIALISED = "paper_initialised"
    ENGINE_TRADES = "engine_trades"  # the engine's open trades and exit plans (JSON)
    SIZING_ACCOUNT = "sizing_account"  # live sizing's account (JSON), saved with the trades
    PAPER_MARKS = "paper_marks"  # last candle time and close per symbol (JSON), paper exchange
    LAST_CANDLE_MS = "last_candle_ms"
    RISK_STATE = "risk_state"  # the Risk Brain's daily equity peaks and last tier (JSON)
    CEO_STATE = "ceo_state"  # when the current mode began (JSON)
    MANUAL_MODE = "manual_mode"  # an operator's mode, its expiry and reason (JSON)
    HALT_MARK = "halt_mark"  # changes at every halt or reduce asked for (trading_state.set)
    RISK_LIMITS = "risk_limits"  # the pre-trade limits' state (JSON): core.services.risk_limits
    HEALTH_PROBE = "health_probe"  # written by the health monitor: the database takes writes
    # the health monitor's venue faults of the last window (JSON), read by the next process
    VENUE_FAULTS = "venue_faults"


@value_class(frozen=True, slots=True, kw_only=True)
class SeriesInfo:
    """Summary of one stored candle series."""

    exchange: str
    market: CandleMarket
    symbol: str
    timeframe: str
    first_ms: int
    last_ms: int
    rows: int


@value_class(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """An event as read back from the audit trail."""

    event_id: str
    topic: str
    ts_ms: int
    payload: dict[str, Any]


def stored_event(event: Event | StoredEvent) -> StoredEvent:
    """Return ``event`` as the audit trail stores it (a stored one as it is)."""
    if isinstance(event, StoredEvent):
        return event
    return StoredEvent(
        event_id=event.event_id, topic=event.topic, ts_ms=event.ts_ms, payload=event_payload(event)
    )


class CandleRepo(Protocol):
    """Candles of one market kind, keyed by (exchange, symbol, timeframe, open time).

    Spot, perp and mark-price candles of one symbol are separate series: a repo reads and
    writes those of its ``market``, and ``for_market`` returns the repo of another kind over the
    same storage (same transaction). The storage's own ``candles`` are those of the market the
    process trades, so the market loop and the warm-up never mix them up.
    """

    @property
    def market(self) -> CandleMarket:
        """Return the kind of series this repo reads and writes."""
        ...

    def for_market(self, market: CandleMarket) -> CandleRepo:
        """Return the repo of ``market``'s series over the same storage."""
        ...

    async def upsert(self, exchange: str, series: CandleSeries) -> int:
        """Insert or replace candles; return how many rows were written."""
        ...

    async def load(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> CandleSeries:
        """Return candles with ``start_ms <= ts_ms < end_ms``, sorted."""
        ...

    async def open_times(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> npt.NDArray[np.int64]:
        """Return the open times with ``start_ms <= ts_ms < end_ms``, sorted."""
        ...

    async def delete(
        self, exchange: str, symbol: str, timeframe: str, ts_ms: npt.NDArray[np.int64]
    ) -> int:
        """Remove the candles that opened at ``ts_ms``; return how many were stored."""
        ...

    async def last_ts_ms(self, exchange: str, symbol: str, timeframe: str) -> int | None:
        """Return the newest stored open time, or None."""
        ...

    async def list_series(self) -> list[SeriesInfo]:
        """Return a summary of every stored series, of every market kind."""
        ...


class OrderRepo(Protocol):
    """Orders keyed by client order id (unique); exchange order id is unique too."""

    async def upsert(self, order: Order) -> None:
        """Insert or update an order."""
        ...

    async def get(self, client_order_id: str) -> Order | None:
        """Return the order or None."""
        ...

    async def list_open(self, symbol: str | None = None) -> list[Order]:
        """Return non-terminal orders, oldest first."""
        ...

    async def list_all(self, symbol: str | None = None) -> list[Order]:
        """Return every order, oldest first."""
        ...


class FillRepo(Protocol):
    """Fills; adding a known fill id again is a no-op."""

    async def add(self, fill: Fill) -> None:
        """Record a fill."""
        ...

    async def list_fills(self, client_order_id: str | None = None) -> list[Fill]:
        """Return fills (of one order if given), oldest first."""
        ...


class PositionRepo(Protocol):
    """Open positions keyed by (symbol, market type)."""

    async def upsert(self, position: Position) -> None:
        """Insert or replace a position."""
        ...

    async def delete(self, symbol: str, market_type: MarketType) -> None:
        """Remove a closed position (no error if absent)."""
        ...

    async def list_positions(self) -> list[Position]:
        """Return open positions."""
        ...


class BalanceRepo(Protocol):
    """Balances per asset and equity snapshots over time."""

    async def set_balances(self, balances: Sequence[Balance]) -> None:
        """Insert or replace the given assets' balances."""
        ...

    async def get_balances(self) -> dict[str, Balance]:
        """Return balances by asset."""
        ...

    async def add_equity(self, snapshot: EquitySnapshot) -> None:
        """Record an equity snapshot."""
        ...

    async def list_equity(
        self, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[EquitySnapshot]:
        """Return snapshots in time order."""
        ...


class EventRepo(Protocol):
    """The audit trail: every bus event."""

    async def append(self, event: Event | StoredEvent) -> None:
        """Persist an event (idempotent on event id); a stored one is one a process kept
        outside the database while it could not be written (``EventKeep``)."""
        ...

    async def list_events(
        self, topic_prefix: str | None = None, since_ms: int | None = None, limit: int = 1000
    ) -> list[StoredEvent]:
        """Return events in time order, filtered by topic prefix and time."""
        ...


class KeptHalt(NamedTuple):
    """A storage halt kept outside the database: since when (the halting process's clock),
    why, and the last resume that process had seen (``StateKey.RESUMED_MS``; "" none)."""

    since_ms: int
    reason: str
    resume_seen: str


class EventKeep(Protocol):
    """The events the audit trail refused, kept outside the database (a file beside it)
    until it takes them, so a process killed during an outage loses none: the next one
    writes them first. Without it, the engine's state (written in place, which a full disk
    still allows) could hold a fill whose event was never written."""

    def add(self, events: Sequence[StoredEvent]) -> None:
        """Keep these too, after those kept already (an ``OSError``: the caller's to say)."""
        ...

    def left(self) -> list[StoredEvent]:
        """Return the events kept so far (by a process killed during an outage), oldest
        first."""
        ...

    def clear(self) -> None:
        """Forget them all: they are in the audit trail now."""
        ...


class HaltNote(Protocol):
    """A storage halt kept outside the database while the database cannot be written (a file
    beside it), so a process killed before the halt reached the database still leaves it."""

    def write(self, halt: KeptHalt) -> None:
        """Keep the halt (an ``OSError``: a full disk may refuse this too)."""
        ...

    def read(self) -> KeptHalt | None:
        """Return the kept halt, or None."""
        ...

    def clear(self) -> None:
        """Forget it: the halt is in the database now, or an operator resumed."""
        ...


class KeyValueRepo(Protocol):
    """Small persistent state (trading state, markers)."""

    async def get(self, key: StateKey) -> str | None:
        """Return the value or None."""
        ...

    async def set(self, key: StateKey, value: str) -> None:
        """Store a value."""
        ...


class MarketRulesRepo(Protocol):
    """Each venue's market rules per symbol, as last fetched."""

    async def save(self, stored: Sequence[StoredRules]) -> None:
        """Insert or replace these symbols' rules (the others stay)."""
        ...

    async def load(self, exchange: str, market: MarketType) -> dict[str, StoredRules]:
        """Return the stored rules of one venue's market, by symbol."""
        ...


class ModelVersionRepo(Protocol):
    """The model registry: one row per trained version (its files live under the data dir)."""

    async def add(self, version: ModelVersion) -> None:
        """Record a new version; an id already recorded is an ``InvariantViolation``."""
        ...

    async def list_versions(self, member: str | None = None) -> list[ModelVersion]:
        """Return the versions (of one member if given), oldest first."""
        ...

    async def newest(self, member: str, status: ModelStatus | None = None) -> ModelVersion | None:
        """Return the member's most recently created version (of that status if given)."""
        ...

    async def get(self, version_id: str) -> ModelVersion | None:
        """Return the version or None."""
        ...

    async def set_status(
        self, version_id: str, status: ModelStatus, *, reason: str, ts_ms: int
    ) -> ModelVersion:
        """Give the version any status but CHAMPION (``ValueError``: use ``promote``), with
        ``reason`` and ``status_ms=ts_ms``; return it updated. An unknown id is an
        ``InvariantViolation``."""
        ...

    async def promote(
        self, version_id: str, *, reason: str, ts_ms: int
    ) -> tuple[ModelVersion, ModelVersion | None]:
        """Make the version its member's CHAMPION in one transaction: the current champion
        (if another) becomes RETIRED "replaced by <id>". Return (the champion, the one
        demoted or None). A RETIRED version may be promoted again (a rollback); promoting
        the champion changes nothing. An unknown id is an ``InvariantViolation``."""
        ...

    async def delete(self, version_id: str) -> None:
        """Remove the version's row (an unknown id: nothing); the CHAMPION is never deleted
        (``InvariantViolation``)."""
        ...


class PredictionRepo(Protocol):
    """What each version predicted per symbol and candle, champion and shadows alike."""

    async def add_many(self, predictions: Sequence[Prediction]) -> int:
        """Store the predictions not stored yet and return how many were new: one already
        stored for (version, symbol, candle) is kept as first written. A ``p_up`` that is
        not a probability is a ``ValueError`` before anything is written."""
        ...

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
        ...

    async def delete_version(self, version_id: str) -> int:
        """Remove every prediction of the version; return how many there were."""
        ...


class TradeRepo(Protocol):
    """Closed round trips, one per trade id: the record /trades, /profit and reports read."""

    async def add(self, trade: ClosedTrade) -> bool:
        """Record a closed trade; return False when its trade id is stored already (a replay
        after a crash), leaving the stored one as it was."""
        ...

    async def list_closed(
        self, *, since_ms: int | None = None, until_ms: int | None = None, limit: int | None = None
    ) -> list[ClosedTrade]:
        """Return the trades closed at ``since_ms <= closed_ms < until_ms``, oldest first (ties
        in the order recorded); with ``limit``, only the newest ``limit`` of them (0 or less:
        none), still oldest first."""
        ...

    async def count(self, *, since_ms: int | None = None) -> int:
        """Return how many trades closed at ``closed_ms >= since_ms`` are stored."""
        ...


class DecisionRepo(Protocol):
    """The brains' history: policy versions, risk assessments and decisions."""

    async def add_policy(self, version: PolicyVersion) -> None:
        """Record a policy version; a version number recorded already is an
        ``InvariantViolation`` (versions strictly increase: another writer was first)."""
        ...

    async def latest_policy(self) -> PolicyVersion | None:
        """Return the newest policy version (None: none was ever written)."""
        ...

    async def list_policies(self, limit: int = 20) -> list[PolicyVersion]:
        """Return the newest ``limit`` policy versions, newest first."""
        ...

    async def add_assessment(self, record: AssessmentRecord) -> None:
        """Record a risk assessment."""
        ...

    async def list_assessments(self, limit: int = 1) -> list[AssessmentRecord]:
        """Return the newest ``limit`` assessments, newest first."""
        ...

    async def add_decision(self, decision: BrainDecision) -> None:
        """Record a brain's decision."""
        ...

    async def list_decisions(
        self, brain: str | None = None, limit: int = 20
    ) -> list[BrainDecision]:
        """Return the newest ``limit`` decisions (of one brain if given), newest first."""
        ...


class Storage(Protocol):
    """All repositories plus a unit of work."""

    # Read-only properties: implementations hold their own repository classes.
    @property
    def candles(self) -> CandleRepo: ...
    @property
    def orders(self) -> OrderRepo: ...
    @property
    def fills(self) -> FillRepo: ...
    @property
    def positions(self) -> PositionRepo: ...
    @property
    def balances(self) -> BalanceRepo: ...
    @property
    def events(self) -> EventRepo: ...
    @property
    def state(self) -> KeyValueRepo: ...
    @property
    def market_rules(self) -> MarketRulesRepo: ...
    @property
    def model_versions(self) -> ModelVersionRepo: ...
    @property
    def predictions(self) -> PredictionRepo: ...
    @property
    def decisions(self) -> DecisionRepo: ...
    @property
    def trades(self) -> TradeRepo: ...

    def atomic(self) -> AbstractAsyncContextManager[None]:
        """Group the repository calls made inside into one transaction."""
        ...

    async def start(self) -> None:
        """Open connections and make the schema current."""
        ...

    async def stop(self) -> None:
        """Close connections."""
        ...
