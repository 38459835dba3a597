"""Position sizing: risk a fixed fraction of equity between entry and stop, within policy caps.

amount = equity * risk_per_trade / |entry - stop|, then capped so the notional stays within
the per-position cap, the remaining total-exposure budget and the cash available
(times leverage), and finally rounded DOWN to the exchange's amount step.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from core.domain.policy import Policy

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingInput:
    """What sizing needs to know."""

    equity: Decimal
    free_cash: Decimal  # quote currency available for this order
    entry_price: Decimal
    stop_price: Decimal
    total_exposure: Decimal  # notional already open
    leverage: int
    amount_step: Decimal
    min_notional: Decimal = ZERO
    policy: Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingDecision:
    """The amount to trade (0 means skip) and which limit bound it."""

    amount: Decimal
    bound_by: str


def size_position(inp: SizingInput) -> SizingDecision:
    """Return the position amount (see module docstring)."""
    p = inp.policy
    risk_per_unit = abs(inp.entry_price - inp.stop_price)
    if inp.entry_price <= 0 or risk_per_unit <= 0 or inp.equity <= 0:
        return SizingDecision(amount=ZERO, bound_by="invalid_input")
    candidates = {
        "risk": inp.equity * p.risk_per_trade / risk_per_unit,
        "position_cap": min(p.max_position_notional, p.max_position_pct * inp.equity)
        / inp.entry_price,
        "exposure_cap": max(ZERO, p.max_total_exposure_pct * inp.equity - inp.total_exposure)
        / inp.entry_price,
        # keep a little cash back for the fee and slippage of the fill
        "cash": max(ZERO, inp.free_cash * Decimal("0.99")) * inp.leverage / inp.entry_price,
    }
    bound_by = min(candidates, key=lambda k: candidates[k])
    amount = (candidates[bound_by] / inp.amount_step).to_integral_value(
        ROUND_DOWN
    ) * inp.amount_step
    if amount <= 0 or amount * inp.entry_price < inp.min_notional:
        return SizingDecision(amount=ZERO, bound_by=f"{bound_by}:below_minimum")
    return SizingDecision(amount=amount, bound_by=bound_by)
