"""Immutable, timestamped, past-tense events. Each has an id, a ``ts_ms`` and a dotted topic.

Every event published on the bus is persisted as the audit trail, as ``topic, ts_ms, payload``
where the payload is :func:`event_payload` (JSON-safe: Decimals and enums become strings).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import secrets
from collections.abc import Callable
from dataclasses import field
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar

from core.domain.explanations import EntryExplanation, SizingNote
from core.values import value_class


class _EventIds:
    """Event ids as a random per-process prefix plus a counter: unique, and cheap to make.

    Ids key the audit trail across processes and restarts, so the 64 random bits of the prefix
    carry the uniqueness between processes, the counter within one. A uuid4 per event cost more
    than the rest of publishing it. The ids keep uuid4().hex's shape: 32 hex digits.
    """

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        """Start a fresh prefix (a forked child must not repeat its parent's ids)."""
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def next(self) -> str:
        """Return the next id."""
        return f"{self._prefix}{next(self._counter):016x}"


_IDS = _EventIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_IDS.reseed)


def new_event_id() -> str:
    """Return a fresh unique event id."""
    return _IDS.next()


@value_class(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all events. Subclasses set ``topic`` as a ClassVar."""

    topic: ClassVar[str] = "event"
    ts_ms: int
    event_id: str = field(default_factory=new_event_id)


def jsonable(value: Any, leaf: Callable[[Any], Any] | None = None) -> Any:
    """Return ``value`` as JSON-safe data: Decimals and enums as strings, dataclasses as dicts.

    ``leaf`` converts the remaining scalars (the report uses it to spell out inf and NaN).
    """
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return jsonable(value.value, leaf)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name), leaf) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [jsonable(v, leaf) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v, leaf) for k, v in value.items()}
    return value if leaf is None else leaf(value)


def event_payload(event: Event) -> dict[str, Any]:
    """Return the event's fields (without id, ts and topic) as JSON-safe data."""
    data: dict[str, Any] = jsonable(event)
    data.pop("event_id", None)
    data.pop("ts_ms", None)
    return data


# --- process ---------------------------------------------------------------------------------


@value_class(frozen=True, slots=True, kw_only=True)
class ProcessStarted(Event):
    """The trading process finished start-up."""

    topic: ClassVar[str] = "process.started"
    mode: str
    exchange: str
    symbols: tuple[str, ...]


@value_class(frozen=True, slots=True, kw_only=True)
class ProcessStopped(Event):
    """The trading process shut down."""

    topic: ClassVar[str] = "process.stopped"
    reason: str


# --- market ----------------------------------------------------------------------------------


@value_class(frozen=True, slots=True, kw_only=True)
class CandleClosed(Event):
    """A candle closed and was processed; ``open_ms`` is the candle's open time."""

    topic: ClassVar[str] = "market.candle_closed"
    symbol: str
    timeframe: str
    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@value_class(frozen=True, slots=True, kw_only=True)
class DataGapDetected(Event):
    """Candles are missing in a feed; gaps are reported, never silently filled."""

    topic: ClassVar[str] = "market.gap_detected"
    symbol: str
    timeframe: str
    from_ms: int
    to_ms: int
    missing: int


# --- orders ----------------------------------------------------------------------------------


@value_class(frozen=True, slots=True, kw_only=True)
class OrderSubmitted(Event):
    """An order was accepted by the exchange."""

    topic: ClassVar[str] = "order.submitted"
    client_order_id: str
    exchange_order_id: str
    symbol: str
    side: str
    type: str
    amount: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    reduce_only: bool
    tag: str


@value_class(frozen=True, slots=True, kw_only=True)
class OrderFilled(Event):
    """An order filled (all or part of it: ``amount`` is this fill's size)."""

    topic: ClassVar[str] = "order.filled"
    fill_ts_ms: int
    client_order_id: str
    symbol: str
    side: str
    amount: Decimal
    price: Decimal
    fee: Decimal
    liquidity: str


def fill_event_id(client_order_id: str, order_filled: Decimal) -> str:
    """Return the id of the ``OrderFilled`` that brought its order to ``order_filled``: the
    venue's report of the fill and a restart that finds it again in the order's state name
    it alike, so the audit trail (idempotent on event id) holds it once."""
    return f"fill:{client_order_id}:{order_filled.normalize():f}"


@value_class(frozen=True, slots=True, kw_only=True)
class OrderCanceled(Event):
    """An open order was canceled."""

    topic: ClassVar[str] = "order.canceled"
    client_order_id: str
    symbol: str
    reason: str


@value_class(frozen=True, slots=True, kw_only=True)
class FundingSettled(Event):
    """A perp position paid (``cash`` < 0) or received funding at ``funding_ms``."""

    topic: ClassVar[str] = "funding.settled"
    symbol: str
    funding_ms: int
    side: str
    amount: Decimal
    price: Decimal
    rate: Decimal
    cash: Decimal


@value_class(frozen=True, slots=True, kw_only=True)
class OrderRejected(Event):
    """The exchange refused an order."""

    topic: ClassVar[str] = "order.rejected"
    client_order_id: str
    symbol: str
    reason: str


@value_class(frozen=True, slots=True, kw_only=True)
class OrderDenied(Event):
    """Our pre-trade risk gate refused an order before it reached the exchange."""

    topic: ClassVar[str] = "risk.order_denied"
    client_order_id: str
    symbol: str
    reason: str
    detail: str


# --- trades ----------------------------------------------------------------------------------


@value_class(frozen=True, slots=True, kw_only=True)
class ExitPlanned(Event):
    """The Exit Brain planned (or re-planned) the exits of a position."""

    topic: ClassVar[str] = "exits.planned"
    symbol: str
    side: str
    entry_price: Decimal
    amount: Decimal
    take_profits: tuple[tuple[str, Decimal, Decimal], ...]  # (name, price, amount)
    stop_price: Decimal | None
    reason: str
    notes: tuple[str, ...] = ()  # what planning changed (legs merged below the venue minimum)


@value_class(frozen=True, slots=True, kw_only=True)
class TradeClosed(Event):
    """A position was closed completely; the payload is the whole round trip."""

    topic: ClassVar[str] = "trade.closed"
    trade_id: str
    symbol: str
    side: str
    opened_ms: int
    closed_ms: int
    amount: Decimal
    entry_price: Decimal
    exit_price: Decimal
    fees: Decimal
    pnl: Decimal
    pnl_pct: float
    exit_reason: str
    provider: str = ""  # the signal provider that opened it
    exit_profile: str = ""  # the regime's ladder it traded
    explanation: EntryExplanation | None = None  # why it was entered (the ensemble's entries)


# --- trading state ---------------------------------------------------------------------------


@value_class(frozen=True, slots=True, kw_only=True)
class TradingStateChanged(Event):
    """The trading state (ACTIVE / REDUCING / HALTED) changed."""

    topic: ClassVar[str] = "trading.state_changed"
    previous: str
    current: str
    reason: str
    actor: str


@value_class(frozen=True, slots=True, kw_only=True)
class SymbolFailed(Event):
    """A symbol's trading cycle failed unexpectedly: it takes no new entry before ``until_ms``
    or an operator's resume (its open trade's exits are still managed)."""

    topic: ClassVar[str] = "engine.symbol_failed"
    symbol: str
    candle_open_ms: int
    error: str
    strikes: int  # failures since the last resume; each doubles the wait
    until_ms: int


@value_class(frozen=True, slots=True, kw_only=True)
class SymbolRecovered(Event):
    """A symbol failed closed takes entries again: its wait passed (actor "engine") or an
    operator resumed trading."""

    topic: ClassVar[str] = "engine.symbol_recovered"
    symbol: str
    actor: str


@value_class(frozen=True, slots=True, kw_only=True)
class UniverseChanged(Event):
    """The symbols that take new entries changed (a dynamic universe's refresh): from candles
    closing at ``at_ms`` on, ``members`` (best first) may enter; a symbol that ``left`` keeps
    its open trade managed until it closes."""

    topic: ClassVar[str] = "universe.changed"
    at_ms: int
    entered: tuple[str, ...]
    left: tuple[str, ...]
    members: tuple[str, ...]


@value_class(frozen=True, slots=True, kw_only=True)
class ModelMemberExcluded(Event):
    """The ensemble left a member out of a symbol's newest decision (disabled, degenerate
    output, another feature set): the old system served a stuck model unnoticed."""

    topic: ClassVar[str] = "model.member_excluded"
    symbol: str
    member: str
    reason: str


# --- the learning manager (core.services.learning) ------------------------------------------


@value_class(frozen=True, slots=True, kw_only=True)
class ModelTrained(Event):
    """A training run registered a candidate and gated it against the champion: ``status``
    SHADOW (passed), CHAMPION (the member's first version) or RETIRED (rejected); the
    validation scores of both on the same rows, and the test's statistic and p-value."""

    topic: ClassVar[str] = "model.trained"
    member: str
    version_id: str
    status: str
    reason: str
    log_loss: float | None  # None: a member scored otherwise (the RL sizer: its gate)
    champion_id: str = ""
    champion_log_loss: float | None = None
    statistic: float | None = None
    p_value: float | None = None


@value_class(frozen=True, slots=True, kw_only=True)
class ModelTrainingFailed(Event):
    """A member's training failed or timed out: the champion serves on, untouched."""

    topic: ClassVar[str] = "model.training_failed"
    member: str
    reason: str


@value_class(frozen=True, slots=True, kw_only=True)
class ModelPromoted(Event):
    """A version became its member's champion (the ensemble serves it from the next candle
    on); ``previous``: the champion it replaced ("" when it is the first)."""

    topic: ClassVar[str] = "model.promoted"
    member: str
    version_id: str
    previous: str
    reason: str


@value_class(frozen=True, slots=True, kw_only=True)
class ModelRolledBack(Event):
    """A champion was rolled back: ``version_id`` (an earlier champion) serves again."""

    topic: ClassVar[str] = "model.rolled_back"
    member: str
    version_id: str
    rolled_back: str
    reason: str


@value_class(frozen=True, slots=True, kw_only=True)
class ModelRetired(Event):
    """A shadow version was not promoted: its live record did not hold up."""

    topic: ClassVar[str] = "model.retired"
    member: str
    version_id: str
    reason: str


@value_class(frozen=True, slots=True, kw_only=True)
class ModelDrifted(Event):
    """A champion's live record drifted from what its validation promised."""

    topic: ClassVar[str] = "model.drifted"
    member: str
    version_id: str
    reasons: tuple[str, ...]


@value_class(frozen=True, slots=True, kw_only=True)
class LearningReported(Event):
    """The report of a learning run (what was trained, gated, promoted): pushed to chat."""

    topic: ClassVar[str] = "learning.reported"
    title: str
    lines: tuple[str, ...]
    # per member trained: (member, the candidate's log-loss, the champion's on the same
    # rows; None: no champion to compare with)
    scores: tuple[tuple[str, float, float | None], ...] = ()


# --- regimes and the meta-strategy (README: Regimes and the meta-strategy) --------------------


@value_class(frozen=True, slots=True, kw_only=True)
class RegimeChanged(Event):
    """A symbol's regime (``core.brains.regime``) changed on the candle that opened at
    ``candle_open_ms``; the first regime known after warm-up is a change from ``unknown``."""

    topic: ClassVar[str] = "regime.changed"
    symbol: str
    candle_open_ms: int
    previous: str
    current: str


@value_class(frozen=True, slots=True, kw_only=True)
class StrategySelected(Event):
    """The meta-strategy's pick for a symbol changed on that candle: ``provider`` has the best
    record in ``regime`` (``score``, the mean outcome of its newest ``record`` resolved
    entries there), or is the fallback (``score`` None) while records are thin."""

    topic: ClassVar[str] = "strategy.selected"
    symbol: str
    candle_open_ms: int
    regime: str
    provider: str
    previous: str
    score: float | None
    record: int


@value_class(frozen=True, slots=True, kw_only=True)
class SignalProviderChanged(Event):
    """Another signal provider trades from now on (the demo: the baseline while its ensemble
    trains, then the ensemble); ``previous`` is "" for the first."""

    topic: ClassVar[str] = "strategy.provider_changed"
    provider: str
    previous: str
    reason: str


@value_class(frozen=True, slots=True, kw_only=True)
class EntryExplained(Event):
    """An entry order went out, and its provider said why (the ensemble's entries)."""

    topic: ClassVar[str] = "strategy.entry_explained"
    trade_id: str
    symbol: str
    side: str
    explanation: EntryExplanation
    sizing: SizingNote | None = None  # how the entry was sized (method, multiplier)


@value_class(frozen=True, slots=True, kw_only=True)
class SizingFallback(Event):
    """The configured sizing method could not size an entry, which was sized fixed-fractional
    instead (fail closed). Published once per ``reason`` while it lasts: again only after the
    method sized an entry itself or failed for another reason."""

    topic: ClassVar[str] = "sizing.fell_back"
    method: str  # the configured one ("rl", ...)
    # a code: error, non_finite, stale, spec_mismatch, artifact, observation, ungated
    reason: str
    detail: str
    symbol: str = ""  # the entry that found out


@value_class(frozen=True, slots=True, kw_only=True)
class EquityRecorded(Event):
    """An equity snapshot was taken."""

    topic: ClassVar[str] = "portfolio.equity_recorded"
    equity: Decimal
    cash: Decimal
    unrealized_pnl: Decimal


@value_class(frozen=True, slots=True, kw_only=True)
class JobRan(Event):
    """A scheduled job finished (or failed)."""

    topic: ClassVar[str] = "job.ran"
    job_id: str
    ok: bool
    detail: str


# --- the brains -------------------------------------------------------------------------------


@value_class(frozen=True, slots=True, kw_only=True)
class RiskAssessed(Event):
    """The Risk Brain assessed the portfolio: its score (0-100, higher: more danger), level,
    worst daily VaR/ES 99 %, drawdown, the actions asked for and what it had to fall back on."""

    topic: ClassVar[str] = "risk.assessed"
    score: float
    level: str
    var_99_daily: float
    es_99_daily: float
    drawdown: float
    exposure_pct: float
    tier: int
    measures: tuple[str, ...]
    notes: tuple[str, ...]


@value_class(frozen=True, slots=True, kw_only=True)
class ModeChanged(Event):
    """The CEO Brain (or an operator: ``manual``) changed the operating mode."""

    topic: ClassVar[str] = "ceo.mode_changed"
    previous: str
    current: str
    reasons: tuple[str, ...]
    manual: bool


@value_class(frozen=True, slots=True, kw_only=True)
class PolicyUpdated(Event):
    """The policy store wrote a new policy version (the only writer of policy)."""

    topic: ClassVar[str] = "policy.updated"
    version: int
    mode: str
    source: str
    reason: str
    changes: tuple[str, ...]  # "field: old -> new"


@value_class(frozen=True, slots=True, kw_only=True)
class ExposureReduced(Event):
    """The engine closed positions at market to bring exposure down to ``target`` (quote):
    ``symbols`` closed, ``not_closed`` as ``"SYMBOL: why"`` for those it could not close."""

    topic: ClassVar[str] = "risk.exposure_reduced"
    target: Decimal
    before: Decimal
    symbols: tuple[str, ...]
    reason: str
    not_closed: tuple[str, ...] = ()


@value_class(frozen=True, slots=True, kw_only=True)
class AlertRaised(Event):
    """Something an operator must hear about now (push alerts send these)."""

    topic: ClassVar[str] = "alert.raised"
    severity: str  # "critical", "warning"
    title: str
    detail: str


@value_class(frozen=True, slots=True, kw_only=True)
class StrategyReviewed(Event):
    """The Strategy Brain reviewed the strategies: the policy fields it changed (none: it
    changed nothing) and each recommendation with its reason."""

    topic: ClassVar[str] = "strategy.reviewed"
    changed: tuple[str, ...]
    recommendations: tuple[str, ...]


@value_class(frozen=True, slots=True, kw_only=True)
class CommandHandled(Event):
    """A chat or console command received: who sent it from where, and what came of it
    (``ok``, ``refused``, ``unknown``, ``usage``, ``confirm``, ``confirmed``, ``expired``,
    ``failed``). The audit trail of every operator action."""

    topic: ClassVar[str] = "command.handled"
    platform: str  # "telegram", "discord", "console"
    user_id: str
    command: str  # the command's name, or the first word of what was sent
    outcome: str
    detail: str = ""
