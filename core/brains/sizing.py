"""Position sizing: risk a fixed fraction of equity between entry and stop, costs included.

The loss if the stop is hit, per unit, is what a round trip to the stop really costs:
``|entry - exit| + taker_fee * (entry + exit)`` where ``entry`` is the expected fill (the price
with slippage against us) and ``exit`` is the stop with slippage against us. Then

    amount = equity * risk_per_trade * size_multiplier * risk_scale / loss per unit

(the policy's size multiplier: the brains' drawdown tiers and mode; ``risk_scale``: the
entry's volatility targeting)

capped so the notional stays within the per-position cap and the remaining total-exposure
budget, and so the order can be paid: ``notional * (1 / leverage + fee)`` (spot: leverage 1)
at most the free cash, less ``PRICE_MOVE_BUFFER`` for the price moving before the fill. The
amount is finally rounded DOWN to the exchange's amount step.
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, Decimal

import numpy as np
import numpy.typing as npt

from core.domain.policy import Policy
from core.values import value_class

ZERO = Decimal(0)
ONE = Decimal(1)
# A market entry fills at the next open, which may be a little above the close it was sized
# on: keep this fraction of the free cash back so the fill can still be paid.
PRICE_MOVE_BUFFER = Decimal("0.001")
# The position must be worth this much more than the venue minimum at the planned stop: the
# fill may come in below the price sized on (a gap), and a spot position worth less than the
# minimum cannot be sold at all (dust).
MIN_NOTIONAL_HEADROOM = Decimal("1.1")


@value_class(frozen=True, slots=True, kw_only=True)
class TradingCosts:
    """What a fill costs: fee rates (fractions) and slippage (a fraction of price)."""

    taker_fee: Decimal = ZERO
    max_fee: Decimal = ZERO  # the larger of maker and taker: what the venue reserves
    slippage: Decimal = ZERO

    def __post_init__(self) -> None:
        for name in ("taker_fee", "max_fee", "slippage"):
            if not ZERO <= getattr(self, name) < ONE:
                raise ValueError(f"{name} must be in [0, 1), was {getattr(self, name)}")

    def fill_price(self, price: Decimal, *, buy: bool) -> Decimal:
        """Return ``price`` moved against us by the slippage."""
        return price * (ONE + self.slippage) if buy else price * (ONE - self.slippage)


@value_class(frozen=True, slots=True, kw_only=True)
class SizingInput:
    """What sizing needs to know. ``entry_price`` is the expected fill (slippage included)."""

    equity: Decimal
    free_cash: Decimal  # quote currency available for this order
    entry_price: Decimal
    stop_price: Decimal
    total_exposure: Decimal  # notional already open or pending
    leverage: int
    amount_step: Decimal
    min_amount: Decimal = ZERO
    min_notional: Decimal = ZERO
    costs: TradingCosts = TradingCosts()
    policy: Policy
    risk_scale: Decimal = ONE  # volatility targeting of this entry (policy.vol_target_pct)


@value_class(frozen=True, slots=True, kw_only=True)
class SizingDecision:
    """The amount to trade (0 means skip), which limit bound it, and the loss per unit."""

    amount: Decimal
    bound_by: str
    loss_per_unit: Decimal = ZERO
    # the risk budget's amount and the tightest cap's (position, exposure, cash) before the
    # rounding: what a multiplier of the budget would have bought (0: not sized)
    risk_amount: Decimal = ZERO
    cap_amount: Decimal = ZERO

    def cap_multiplier(self, multiplier: float) -> float:
        """Return the largest multiplier of the risk budget the caps let through, given the
        ``multiplier`` it was sized at (inf: nothing to tell)."""
        if self.risk_amount <= 0 or multiplier <= 0:
            return math.inf
        return float(self.cap_amount / self.risk_amount) * multiplier


def loss_per_unit(entry: Decimal, stop: Decimal, costs: TradingCosts) -> Decimal:
    """Return what one unit loses entering at ``entry`` and leaving at the stop: the price
    move, the stop's slippage and both fees (a stop below the entry is a long)."""
    exit_price = costs.fill_price(stop, buy=stop > entry)  # a long's stop sells
    return abs(entry - exit_price) + costs.taker_fee * (entry + exit_price)


def size_position(inp: SizingInput) -> SizingDecision:
    """Return the position amount (see module docstring)."""
    p = inp.policy
    if inp.entry_price <= 0 or inp.stop_price <= 0 or inp.equity <= 0:
        return SizingDecision(amount=ZERO, bound_by="invalid_input")
    if inp.entry_price == inp.stop_price:
        return SizingDecision(amount=ZERO, bound_by="invalid_input")
    per_unit = loss_per_unit(inp.entry_price, inp.stop_price, inp.costs)
    pay_per_unit = inp.entry_price * (ONE / inp.leverage + inp.costs.max_fee)
    candidates = {
        "risk": inp.equity * p.effective_risk_per_trade * inp.risk_scale / per_unit,
        "position_cap": min(p.max_position_notional, p.max_position_pct * inp.equity)
        / inp.entry_price,
        "exposure_cap": max(ZERO, p.max_total_exposure_pct * inp.equity - inp.total_exposure)
        / inp.entry_price,
        "cash": max(ZERO, inp.free_cash * (ONE - PRICE_MOVE_BUFFER)) / pay_per_unit,
    }
    bound_by = min(candidates, key=lambda k: candidates[k])
    amount = (candidates[bound_by] / inp.amount_step).to_integral_value(
        ROUND_DOWN
    ) * inp.amount_step
    # The venue must take the exit at the stop as well as the entry (spot checks every order).
    at_stop = amount * min(inp.entry_price, inp.stop_price)
    too_small = amount < inp.min_amount or at_stop < inp.min_notional * MIN_NOTIONAL_HEADROOM
    if amount <= 0 or too_small:
        return SizingDecision(
            amount=ZERO, bound_by=f"{bound_by}:below_minimum", loss_per_unit=per_unit
        )
    return SizingDecision(
        amount=amount,
        bound_by=bound_by,
        loss_per_unit=per_unit,
        risk_amount=candidates["risk"],
        cap_amount=min(v for k, v in candidates.items() if k != "risk"),
    )


VOL_WINDOW = 100  # candles of returns the volatility forecast reads
EWMA_LAMBDA = 0.94  # RiskMetrics' decay per candle


def daily_vol_pct(closes: npt.NDArray[np.float64], periods_per_day: int) -> float:
    """Return the forecast daily volatility in percent: an EWMA of the candles' log returns,
    scaled by sqrt(candles per day); NaN when too little history (under 21 closes), a
    non-finite or non-positive close, or a flat one leaves nothing to measure."""
    if len(closes) < 21 or not np.isfinite(closes).all() or (closes <= 0).any():
        return math.nan
    r = np.diff(np.log(closes))
    weights = EWMA_LAMBDA ** np.arange(len(r) - 1, -1, -1, dtype=np.float64)
    variance = float((weights * r * r).sum() / weights.sum())
    daily = (variance * periods_per_day) ** 0.5 * 100.0
    return daily if daily > 0 else math.nan


def volatility_scale(
    policy: Policy, closes: npt.NDArray[np.float64], periods_per_day: int
) -> Decimal:
    """Return the entry's risk scale under volatility targeting: the policy's daily target over
    the forecast daily volatility (``daily_vol_pct``), clamped to the policy's bounds; 1 when
    targeting is off. Too little history or a flat one: the lower bound (fail closed: never
    more risk on no data)."""
    if policy.vol_target_pct <= 0:
        return ONE
    daily = daily_vol_pct(closes, periods_per_day)
    if not daily > 0:
        return policy.vol_scale_min
    scale = Decimal(repr(float(policy.vol_target_pct) / daily))
    return min(max(scale, policy.vol_scale_min), policy.vol_scale_max)
