"""The policy's pre-trade limits on NEW exposure: pure checks on a ``LimitContext``.

The risk gate (``core.brains.risk_gate``) runs them after the trading state and before the
size limits, only for orders that add exposure: exits and protective orders never meet them.
In order, each limit that is on (its policy value not 0):

1. daily loss: today's (UTC) loss, open pnl included, reached ``daily_loss_limit_pct`` of the
   day's starting equity (the service also halts trading until the next UTC day);
2. loss streak: ``loss_streak_limit`` consecutive losing trades, the newest less than
   ``loss_streak_cooldown_s`` ago;
3. symbol cooldown: a trade on the candidate symbol closed less than ``symbol_cooldown_s`` ago;
4. entries per hour: ``max_entries_per_hour`` entries were sent in the last hour;
5. correlation: the candidate's recent returns correlate above ``max_correlation`` with those
   of an open position on the same side (a hedge, the opposite side, is not more of the same);
6. funding (perps): a long while funding > ``max_funding_rate``, a short while < -it (the side
   that pays); funding the venue cannot tell denies only with ``funding_unknown_denies``;
7. liquidation buffer (entries that carry a liquidation price: perps): it must lie at least
   ``min_liquidation_buffer_pct`` of the stop beyond the planned stop (slippage through the
   stop must not reach it). A position the venue would never liquidate has nothing to keep.

A limit that is on but whose context is missing (None: the service could not tell) denies:
fail closed, never allow silently. Times are the caller's market time (``now_ms``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum

from core.domain.policy import Policy
from core.values import value_class

HOUR_MS = 3_600_000


class LimitReason(StrEnum):
    """Why a limit denied new exposure (stable codes, shared with ``DenyReason``)."""

    DAILY_LOSS = "daily_loss_limit"
    LOSS_STREAK = "loss_streak_cooldown"
    SYMBOL_COOLDOWN = "symbol_cooldown"
    ENTRIES_PER_HOUR = "max_entries_per_hour"
    CORRELATION = "max_correlation"
    FUNDING = "funding_rate"
    LIQUIDATION_BUFFER = "liquidation_buffer"
    CONTEXT_MISSING = "limit_context_missing"


@value_class(frozen=True, slots=True, kw_only=True)
class OpenCorrelation:
    """An open position (or entry waiting for its fill) and how the candidate's recent log
    returns correlate with its own (None: too little common history to tell)."""

    symbol: str
    long: bool
    correlation: float | None


@value_class(frozen=True, slots=True, kw_only=True)
class LimitContext:
    """What the limits look at, gathered by ``core.services.risk_limits``. None: unknown."""

    now_ms: int
    day_start_equity: Decimal | None = None
    day_pnl: Decimal | None = None  # realised + open since the day's start
    consecutive_losses: int | None = None
    last_loss_ms: int | None = None  # close time of the newest losing trade
    entry_times_ms: tuple[int, ...] | None = None  # entries sent (at least) in the last hour
    last_close_ms: Mapping[str, int] | None = None  # by symbol; a symbol never closed is absent
    correlations: tuple[OpenCorrelation, ...] | None = None
    perp: bool = False
    funding_rate: Decimal | None = None  # per funding interval (8 h), None: unknown


@value_class(frozen=True, slots=True, kw_only=True)
class Candidate:
    """The new exposure being checked."""

    symbol: str
    long: bool
    stop_price: Decimal | None = None
    liquidation_price: Decimal | None = None


def check_limits(
    candidate: Candidate, policy: Policy, ctx: LimitContext | None
) -> tuple[LimitReason, str] | None:
    """Return why the first limit in the documented order denies, or None when all pass."""
    if ctx is None:
        if _any_context_limit_on(policy):
            return LimitReason.CONTEXT_MISSING, "the limits' context is unknown: entry denied"
        return _liquidation_buffer(candidate, policy)
    for check in (
        _daily_loss,
        _loss_streak,
        _symbol_cooldown,
        _entries_per_hour,
        _correlation,
        _funding,
    ):
        denied = check(candidate, policy, ctx)
        if denied is not None:
            return denied
    return _liquidation_buffer(candidate, policy)


def _any_context_limit_on(policy: Policy) -> bool:
    return bool(
        policy.daily_loss_limit_pct
        or policy.loss_streak_limit
        or policy.max_entries_per_hour
        or policy.symbol_cooldown_s
        or policy.max_correlation < 1
        or policy.max_funding_rate
    )


def _missing(what: str) -> tuple[LimitReason, str]:
    return LimitReason.CONTEXT_MISSING, f"{what} is unknown: entry denied (fail closed)"


def _daily_loss(c: Candidate, p: Policy, ctx: LimitContext) -> tuple[LimitReason, str] | None:
    if not p.daily_loss_limit_pct:
        return None
    if ctx.day_start_equity is None or ctx.day_pnl is None:
        return _missing("today's starting equity or pnl")
    limit = p.daily_loss_limit_pct * ctx.day_start_equity
    if ctx.day_start_equity > 0 and -ctx.day_pnl >= limit:
        return LimitReason.DAILY_LOSS, (
            f"today's loss {-ctx.day_pnl:.2f} reached the daily limit {limit:.2f} "
            f"({p.daily_loss_limit_pct:%} of {ctx.day_start_equity:.2f})"
        )
    return None


def _loss_streak(c: Candidate, p: Policy, ctx: LimitContext) -> tuple[LimitReason, str] | None:
    if not p.loss_streak_limit:
        return None
    if ctx.consecutive_losses is None:
        return _missing("the loss streak")
    if ctx.consecutive_losses < p.loss_streak_limit:
        return None
    if ctx.last_loss_ms is None:
        return _missing("the newest loss's time")
    until_ms = ctx.last_loss_ms + p.loss_streak_cooldown_s * 1000
    if ctx.now_ms < until_ms:
        return LimitReason.LOSS_STREAK, (
            f"{ctx.consecutive_losses} losing trades in a row: no entry before {until_ms}"
        )
    return None


def _symbol_cooldown(c: Candidate, p: Policy, ctx: LimitContext) -> tuple[LimitReason, str] | None:
    if not p.symbol_cooldown_s:
        return None
    if ctx.last_close_ms is None:
        return _missing("the symbols' last close times")
    closed = ctx.last_close_ms.get(c.symbol)
    if closed is None:
        return None
    until_ms = closed + p.symbol_cooldown_s * 1000
    if ctx.now_ms < until_ms:
        return LimitReason.SYMBOL_COOLDOWN, (
            f"a trade on {c.symbol} closed at {closed}: no entry before {until_ms}"
        )
    return None


def _entries_per_hour(c: Candidate, p: Policy, ctx: LimitContext) -> tuple[LimitReason, str] | None:
    if not p.max_entries_per_hour:
        return None
    if ctx.entry_times_ms is None:
        return _missing("the entries of the last hour")
    recent = sum(1 for t in ctx.entry_times_ms if ctx.now_ms - HOUR_MS < t <= ctx.now_ms)
    if recent >= p.max_entries_per_hour:
        return LimitReason.ENTRIES_PER_HOUR, (
            f"{recent} entries in the last hour, limit {p.max_entries_per_hour}"
        )
    return None


def _correlation(c: Candidate, p: Policy, ctx: LimitContext) -> tuple[LimitReason, str] | None:
    if p.max_correlation >= 1:
        return None
    if ctx.correlations is None:
        return _missing("the open positions' correlations")
    for open_ in ctx.correlations:
        if open_.long is not c.long or open_.symbol == c.symbol:
            continue
        if open_.correlation is None:
            return _missing(f"the correlation with {open_.symbol}")
        if open_.correlation > p.max_correlation:
            return LimitReason.CORRELATION, (
                f"returns correlate {open_.correlation:.2f} with the open "
                f"{'long' if open_.long else 'short'} {open_.symbol}, limit {p.max_correlation}"
            )
    return None


def _funding(c: Candidate, p: Policy, ctx: LimitContext) -> tuple[LimitReason, str] | None:
    if not ctx.perp:
        return None
    rate, cap = ctx.funding_rate, p.max_funding_rate
    if not cap:
        return None
    if rate is None:
        if p.funding_unknown_denies:
            return LimitReason.FUNDING, "the funding rate is unknown (strict): entry denied"
        return None  # documented: unknown funding passes unless configured strict
    if (c.long and rate > cap) or (not c.long and rate < -cap):
        side = "long" if c.long else "short"
        return LimitReason.FUNDING, f"funding {rate} per 8 h: a {side} pays more than {cap}"
    return None


def _liquidation_buffer(c: Candidate, p: Policy) -> tuple[LimitReason, str] | None:
    buffer, stop, liquidation = p.min_liquidation_buffer_pct, c.stop_price, c.liquidation_price
    if not buffer or liquidation is None:
        return None
    if stop is None:
        return _missing("the entry's planned stop")
    room = stop - liquidation if c.long else liquidation - stop
    if room < buffer * stop:
        return LimitReason.LIQUIDATION_BUFFER, (
            f"liquidation {liquidation:.8g} is {room / stop:.3%} beyond the stop {stop}, "
            f"less than {buffer:%}: lower the leverage or tighten the stop"
        )
    return None
