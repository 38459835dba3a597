"""The simple sizers: a size multiplier per candidate trade, from what is known at its decision.

A multiplier scales the fixed-fractional risk size of ``core.brains.sizing`` (1 = today's size,
0 = skip). These are the baselines the RL sizing policy must beat out of sample (issue 15),
so they are pure functions of a small frozen state and every one returns a finite value in
``[0, cap]``: a missing or degenerate measurement never sizes up (fail closed).

- fixed-fractional: always 1 (what the engine does today);
- volatility targeting: ``target_vol / realised_vol``, clamped to ``[floor, cap]``;
- capped fractional Kelly: a fraction of the growth-optimal multiplier of the recent trade
  record, capped; too short a record gives ``without_record`` (the base size by default).

``within_policy`` bounds any sizer's multiplier (these or the RL policy's) the way the engine
applies it: never above the cap, never above 1 while the brains cut sizes.

Outcomes are returns on equity of a trade at multiplier 1 (fees, slippage and funding
included), so the Kelly multiplier needs no separate risk-per-trade: for a win ``+W`` with
probability ``p`` and a loss ``-L`` otherwise, ``p log(1 + mW) + (1 - p) log(1 - mL)`` is
largest at ``m* = p / L - (1 - p) / W``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from core.domain.enums import Mode
from core.domain.policy import Policy
from core.errors import ConfigError, DataError
from core.values import value_class


@value_class(frozen=True, slots=True, kw_only=True)
class TradeRecord:
    """The recent closed trades' outcomes (returns on equity at multiplier 1), summarised."""

    wins: int = 0
    losses: int = 0  # an outcome of exactly 0 counts as neither
    mean_win: float = 0.0  # W > 0 when there are wins
    mean_loss: float = 0.0  # L > 0 (a magnitude) when there are losses

    def __post_init__(self) -> None:
        if self.wins < 0 or self.losses < 0:
            raise DataError(f"trade counts must be >= 0, were {self.wins} and {self.losses}")
        for name in ("mean_win", "mean_loss"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise DataError(f"{name} must be a finite magnitude >= 0, was {value}")

    @property
    def trades(self) -> int:
        """Return how many trades won or lost."""
        return self.wins + self.losses

    @classmethod
    def from_outcomes(cls, outcomes: Sequence[float]) -> TradeRecord:
        """Return the record of these outcomes; a non-finite outcome is refused."""
        if not all(math.isfinite(o) for o in outcomes):
            raise DataError("trade outcomes must be finite")
        won = [o for o in outcomes if o > 0]
        lost = [-o for o in outcomes if o < 0]
        return cls(
            wins=len(won),
            losses=len(lost),
            mean_win=sum(won) / len(won) if won else 0.0,
            mean_loss=sum(lost) / len(lost) if lost else 0.0,
        )


@value_class(frozen=True, slots=True, kw_only=True)
class SizerState:
    """What the simple sizers read of one candidate, all known before its decision."""

    realised_vol: float  # recent realised volatility, in the units of the volatility target
    record: TradeRecord = TradeRecord()  # the trades closed before the decision


@value_class(frozen=True, slots=True, kw_only=True)
class VolTargetParams:
    """Volatility targeting: the target (same units as the state's vol) and the bounds."""

    target_vol: float
    floor: float = 0.0  # also what an unmeasurable volatility gets
    cap: float = 1.5

    def __post_init__(self) -> None:
        _check_cap(self.cap)
        if not (math.isfinite(self.target_vol) and self.target_vol > 0):
            raise ConfigError(f"target_vol must be > 0, was {self.target_vol}")
        if not 0 <= self.floor <= self.cap:
            raise ConfigError(f"floor must be in [0, cap={self.cap}], was {self.floor}")


@value_class(frozen=True, slots=True, kw_only=True)
class KellyParams:
    """Capped fractional Kelly: the fraction of ``m*``, the cap, the record it needs."""

    fraction: float = 0.25  # full Kelly on a noisy estimate overbets; a quarter is the usual
    cap: float = 1.5
    min_trades: int = 20
    without_record: float = 1.0  # too few trades: the base size (0 would never start a record)

    def __post_init__(self) -> None:
        _check_cap(self.cap)
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"fraction must be in (0, 1], was {self.fraction}")
        if self.min_trades < 1:
            raise ConfigError(f"min_trades must be >= 1, was {self.min_trades}")
        if not 0 <= self.without_record <= self.cap:
            raise ConfigError(
                f"without_record must be in [0, cap={self.cap}], was {self.without_record}"
            )


def _check_cap(cap: float) -> None:
    if not (math.isfinite(cap) and cap > 0):
        raise ConfigError(f"cap must be a finite multiplier > 0, was {cap}")


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def fixed_fractional(state: SizerState, *, cap: float = 1.5) -> float:
    """Return 1 (today's fixed-fractional size), or ``cap`` if that is below 1."""
    _check_cap(cap)
    return min(1.0, cap)


def volatility_target(state: SizerState, params: VolTargetParams) -> float:
    """Return ``target_vol / realised_vol`` clamped to ``[floor, cap]``; a volatility of 0,
    below 0 or not finite cannot be targeted and gets the floor."""
    vol = state.realised_vol
    if not (math.isfinite(vol) and vol > 0):
        return params.floor
    return _clamp(params.target_vol / vol, params.floor, params.cap)


def fractional_kelly(state: SizerState, params: KellyParams) -> float:
    """Return ``fraction * m*`` of the trade record clamped to ``[0, cap]`` (see the module
    docstring); fewer than ``min_trades`` trades give ``without_record``. No wins gives 0,
    no losses the cap: the fraction and the cap are what bound a lucky streak."""
    record = state.record
    if record.trades < params.min_trades:
        return params.without_record
    if record.wins == 0 or record.mean_win == 0:
        return 0.0
    if record.losses == 0 or record.mean_loss == 0:
        return params.cap
    p = record.wins / record.trades
    best = p / record.mean_loss - (1 - p) / record.mean_win
    return _clamp(params.fraction * best, 0.0, params.cap)


def within_policy(multiplier: float, policy: Policy, *, cap: float) -> float:
    """Return a sizer's multiplier as the engine may apply it: within ``[0, cap]``, and at
    most 1 while the brains cut sizes (a drawdown tier's scale or PRESERVATION's and
    EMERGENCY's: ``policy.size_multiplier < 1``, or either mode): a sizer may shrink what
    they allow, never undo their cut. The result still only scales the risk budget: the
    position, exposure and cash caps and the risk gate bound the order after it. A value
    that is not finite is a ``DataError`` (the caller falls back, it never guesses)."""
    _check_cap(cap)
    if not math.isfinite(multiplier):
        raise DataError(f"a size multiplier must be finite, was {multiplier}")
    high = cap
    if policy.size_multiplier < 1 or policy.mode.severity >= Mode.PRESERVATION.severity:
        high = min(cap, 1.0)
    return _clamp(multiplier, 0.0, high)
