"""The pre-trade risk gate: a pure check every order passes before it reaches the exchange.

A denial is a value (``RiskVerdict``), not an exception. Rules, in order:
HALTED lets only protective orders through (reduce-only stops and market exits: a halt must
never leave a position without its stop, nor stop it from closing); REDUCING lets only
exposure-reducing orders through (take-profits too); an order that reduces exposure is always
allowed otherwise; new exposure must respect the policy's leverage, open-position,
per-position and total-exposure limits, a perp entry's stop must sit inside its liquidation
price, and the policy's pre-trade limits (``core.brains.limits``: daily loss, loss streak,
symbol cooldown, entries per hour, correlation, funding, liquidation buffer) must pass.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from core.brains.limits import Candidate, LimitContext, LimitReason, check_limits
from core.domain.enums import TradingState
from core.domain.policy import Policy
from core.values import value_class


class RiskAction(StrEnum):
    """What the gate decided."""

    ALLOW = "allow"
    DENY = "deny"


class DenyReason(StrEnum):
    """Why an order was denied (stable codes for events and reports)."""

    NONE = ""
    HALTED = "halted"
    REDUCING_ONLY = "reducing_only"
    LEVERAGE = "max_leverage"
    OPEN_POSITIONS = "max_open_positions"
    POSITION_SIZE = "max_position_size"
    TOTAL_EXPOSURE = "max_total_exposure"
    SHORT_NOT_ALLOWED = "short_not_allowed"
    NO_EQUITY = "no_equity"
    STOP_BEYOND_LIQUIDATION = "stop_beyond_liquidation"
    # The pre-trade limits (core.brains.limits), by the same codes.
    DAILY_LOSS = LimitReason.DAILY_LOSS.value
    LOSS_STREAK = LimitReason.LOSS_STREAK.value
    SYMBOL_COOLDOWN = LimitReason.SYMBOL_COOLDOWN.value
    ENTRIES_PER_HOUR = LimitReason.ENTRIES_PER_HOUR.value
    CORRELATION = LimitReason.CORRELATION.value
    FUNDING = LimitReason.FUNDING.value
    LIQUIDATION_BUFFER = LimitReason.LIQUIDATION_BUFFER.value
    LIMIT_CONTEXT_MISSING = LimitReason.CONTEXT_MISSING.value


@value_class(frozen=True, slots=True, kw_only=True)
class OrderIntent:
    """An order about to be sent, described by what it does to exposure."""

    symbol: str
    notional: Decimal  # quote value of the order
    reduces_exposure: bool  # reduce-only exits, closing orders
    opens_short: bool = False
    leverage: int = 1
    protective: bool = False  # a reduce-only stop or market exit: it limits or ends a loss
    # An entry's planned stop and the price the venue would liquidate the position at (perps):
    # a stop beyond the liquidation price would never get its turn.
    stop_price: Decimal | None = None
    liquidation_price: Decimal | None = None


@value_class(frozen=True, slots=True, kw_only=True)
class GateInput:
    """Everything the gate looks at."""

    intent: OrderIntent
    state: TradingState
    policy: Policy
    equity: Decimal
    open_positions: int  # excluding the intent's own symbol
    total_exposure: Decimal  # sum of open position notionals, quote
    limits: LimitContext | None = None  # None: unknown, so a limit that is on denies


@value_class(frozen=True, slots=True, kw_only=True)
class RiskVerdict:
    """The gate's decision."""

    action: RiskAction
    reason: DenyReason = DenyReason.NONE
    detail: str = ""

    @property
    def allowed(self) -> bool:
        """Return True when the order may go out."""
        return self.action is RiskAction.ALLOW


_ALLOW = RiskVerdict(action=RiskAction.ALLOW)


def _deny(reason: DenyReason, detail: str) -> RiskVerdict:
    return RiskVerdict(action=RiskAction.DENY, reason=reason, detail=detail)


def _stop_beyond_liquidation(intent: OrderIntent) -> bool:
    stop, liquidation = intent.stop_price, intent.liquidation_price
    if stop is None or liquidation is None:
        return False
    return stop >= liquidation if intent.opens_short else stop <= liquidation


def check_order(inp: GateInput) -> RiskVerdict:
    """Return whether the order may be sent (see module docstring for the rules)."""
    intent = inp.intent
    if inp.state is TradingState.HALTED:
        if intent.reduces_exposure and intent.protective:
            return _ALLOW
        return _deny(DenyReason.HALTED, "trading is halted: only stops and exits at market")
    if intent.reduces_exposure:
        return _ALLOW
    if inp.state is TradingState.REDUCING:
        return _deny(DenyReason.REDUCING_ONLY, "trading is reducing: only exposure-reducing orders")
    return _check_new_exposure(inp)


def _check_new_exposure(inp: GateInput) -> RiskVerdict:
    intent, policy = inp.intent, inp.policy
    if inp.equity <= 0:
        return _deny(DenyReason.NO_EQUITY, f"equity is {inp.equity}")
    if intent.opens_short and not policy.allow_short:
        return _deny(DenyReason.SHORT_NOT_ALLOWED, "policy does not allow short positions")
    if intent.leverage > policy.max_leverage:
        return _deny(DenyReason.LEVERAGE, f"leverage {intent.leverage} > {policy.max_leverage}")
    if _stop_beyond_liquidation(intent):
        return _deny(
            DenyReason.STOP_BEYOND_LIQUIDATION,
            f"stop {intent.stop_price} is beyond the liquidation price "
            f"{intent.liquidation_price:.8g}: lower the leverage or tighten the stop",
        )
    limited = check_limits(
        Candidate(
            symbol=intent.symbol,
            long=not intent.opens_short,
            stop_price=intent.stop_price,
            liquidation_price=intent.liquidation_price,
        ),
        policy,
        inp.limits,
    )
    if limited is not None:
        return _deny(DenyReason(limited[0].value), limited[1])
    if inp.open_positions >= policy.max_open_positions:
        return _deny(
            DenyReason.OPEN_POSITIONS,
            f"{inp.open_positions} positions open, limit {policy.max_open_positions}",
        )
    position_cap = min(policy.max_position_notional, policy.max_position_pct * inp.equity)
    if intent.notional > position_cap:
        return _deny(
            DenyReason.POSITION_SIZE, f"notional {intent.notional:.2f} > cap {position_cap:.2f}"
        )
    exposure_cap = policy.max_total_exposure_pct * inp.equity
    if inp.total_exposure + intent.notional > exposure_cap:
        return _deny(
            DenyReason.TOTAL_EXPOSURE,
            f"exposure {inp.total_exposure + intent.notional:.2f} > cap {exposure_cap:.2f}",
        )
    return _ALLOW
