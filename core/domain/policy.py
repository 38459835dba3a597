"""The immutable policy snapshot every trading decision reads.

Until the policy store arrives (CEO Brain issue) the process builds one static ``Policy`` from
settings; consumers only ever see a frozen snapshot, never a mutable config.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Limits for sizing and the pre-trade risk gate. Fractions are of current equity."""

    version: int = 0
    risk_per_trade: Decimal = Decimal("0.01")  # equity lost if the stop is hit
    max_position_pct: Decimal = Decimal("0.5")  # one position's notional / equity
    max_position_notional: Decimal = Decimal(1_000_000)  # absolute cap, quote currency
    max_open_positions: int = 2
    max_leverage: int = 1
    max_total_exposure_pct: Decimal = Decimal("1.0")  # sum of notionals / equity
    allow_short: bool = False
    # Strategy Brain (core/brains/strategy.py, applied from a StrategyReview's state by
    # core/services/strategy_review.policy_changes): empty means the configured provider and
    # the ensemble's own weights. Providers by name, regimes by label, weights sum to 1.
    primary_strategy: str | None = None
    fallback_strategy: str | None = None
    disabled_strategies: tuple[str, ...] = ()
    regime_strategies: tuple[tuple[str, str], ...] = ()  # (regime label, provider)
    ensemble_weights: tuple[tuple[str, float], ...] = ()  # (member, weight)

    def __post_init__(self) -> None:
        if not Decimal(0) < self.risk_per_trade <= Decimal("0.2"):
            raise ValueError(f"risk_per_trade must be in (0, 0.2], was {self.risk_per_trade}")
        if self.max_open_positions < 1:
            raise ValueError(f"max_open_positions must be >= 1, was {self.max_open_positions}")
        if self.max_leverage < 1:
            raise ValueError(f"max_leverage must be >= 1, was {self.max_leverage}")
        if self.max_position_pct <= 0 or self.max_total_exposure_pct <= 0:
            raise ValueError("max_position_pct and max_total_exposure_pct must be > 0")
        _check_strategy_fields(self)


def _check_strategy_fields(policy: Policy) -> None:
    """Reject Strategy Brain fields no consumer could follow (the Policy block above)."""
    weights = [w for _, w in policy.ensemble_weights]
    if policy.ensemble_weights and not (
        all(0.0 <= w <= 1.0 for w in weights) and abs(sum(weights) - 1.0) <= 1e-6
    ):
        raise ValueError(f"ensemble_weights must be in [0, 1] and sum to 1, were {weights}")
    for name, pairs in (
        ("ensemble_weights", policy.ensemble_weights),
        ("regime_strategies", policy.regime_strategies),
    ):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{name} names each key once, were {keys}")
    chosen = {policy.primary_strategy, policy.fallback_strategy}
    if chosen & set(policy.disabled_strategies):
        raise ValueError(
            f"primary/fallback strategy {sorted(s for s in chosen if s)} is among the disabled "
            f"{list(policy.disabled_strategies)}"
        )
