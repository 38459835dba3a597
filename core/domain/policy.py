"""The immutable policy snapshot every trading decision reads.

The policy store (``core.services.policy_store``) is its only writer: a policy is the settings'
limits (the *base*) with the brains' levers applied (``PolicyLevers``: the CEO's mode, the Risk
Brain's size scale, stop tightening and pause). Consumers only ever see a frozen snapshot.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from core.domain.enums import Mode, TradingState
from core.values import value_class

# From the loosest to the strictest: the gate takes the stricter of the operator's trading state
# and the policy's.
_STATE_ORDER = (TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED)


def stricter_state(a: TradingState, b: TradingState) -> TradingState:
    """Return the stricter of two trading states (HALTED > REDUCING > ACTIVE)."""
    return a if _STATE_ORDER.index(a) >= _STATE_ORDER.index(b) else b


@value_class(frozen=True, slots=True, kw_only=True)
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
    # --- the brains' levers (PolicyLevers) ---
    mode: Mode = Mode.OPTIMIZATION
    size_multiplier: Decimal = Decimal(1)  # scales risk_per_trade (drawdown tiers, the mode)
    # Every open trade's stop moves to this fraction of its distance from the price, never
    # loosening (core.brains.exit_moves.tighten_stop); 1: untouched.
    stop_tighten: Decimal = Decimal(1)
    state: TradingState = TradingState.ACTIVE  # the brains' pause (stricter one wins)
    # Volatility targeting: an entry's risk scales by target / forecast daily volatility of its
    # symbol, clamped to [vol_scale_min, vol_scale_max]; 0: off.
    vol_target_pct: Decimal = Decimal(0)
    vol_scale_min: Decimal = Decimal("0.5")
    vol_scale_max: Decimal = Decimal("1.5")
    # Strategy Brain (core/brains/strategy.py, applied from a StrategyReview's state by
    # core/services/strategy_review.strategy_changes): empty means the configured provider and
    # the ensemble's own weights. Providers by name, regimes by label, weights sum to 1.
    primary_strategy: str | None = None
    fallback_strategy: str | None = None
    disabled_strategies: tuple[str, ...] = ()
    regime_strategies: tuple[tuple[str, str], ...] = ()  # (regime label, provider)
    ensemble_weights: tuple[tuple[str, float], ...] = ()  # (member, weight)
    # --- pre-trade limits (core.brains.limits): checked on new exposure only; 0 = off -------
    daily_loss_limit_pct: Decimal = Decimal("0.05")  # of the UTC day's starting equity
    loss_streak_limit: int = 3  # consecutive losing trades before a cooldown
    loss_streak_cooldown_s: int = 6 * 3600
    max_entries_per_hour: int = 4
    symbol_cooldown_s: int = 3600  # after a trade on that symbol closes
    max_correlation: float = 0.8  # with an open position's returns, same direction (1 = off)
    max_funding_rate: Decimal | None = Decimal("0.001")  # perps, per 8 h (None or 0 = off)
    funding_unknown_denies: bool = False  # strict: deny perp entries while funding is unknown
    min_liquidation_buffer_pct: Decimal = Decimal("0.005")  # perps: liquidation beyond stop

    def __post_init__(self) -> None:
        if not Decimal(0) < self.risk_per_trade <= Decimal("0.2"):
            raise ValueError(f"risk_per_trade must be in (0, 0.2], was {self.risk_per_trade}")
        if self.max_open_positions < 1:
            raise ValueError(f"max_open_positions must be >= 1, was {self.max_open_positions}")
        if self.max_leverage < 1:
            raise ValueError(f"max_leverage must be >= 1, was {self.max_leverage}")
        if self.max_position_pct <= 0 or self.max_total_exposure_pct <= 0:
            raise ValueError("max_position_pct and max_total_exposure_pct must be > 0")
        if not Decimal(0) < self.size_multiplier <= Decimal(3):
            raise ValueError(f"size_multiplier must be in (0, 3], was {self.size_multiplier}")
        if not Decimal(0) < self.stop_tighten <= Decimal(1):
            raise ValueError(f"stop_tighten must be in (0, 1], was {self.stop_tighten}")
        if self.vol_target_pct < 0:
            raise ValueError(f"vol_target_pct must be >= 0, was {self.vol_target_pct}")
        if not Decimal(0) < self.vol_scale_min <= Decimal(1) <= self.vol_scale_max:
            raise ValueError(
                "vol_scale_min must be in (0, 1] and vol_scale_max >= 1, were "
                f"{self.vol_scale_min} and {self.vol_scale_max}"
            )
        _check_strategy_fields(self)
        self._check_limits()

    def _check_limits(self) -> None:
        if not Decimal(0) <= self.daily_loss_limit_pct < 1:
            raise ValueError(
                f"daily_loss_limit_pct must be in [0, 1), was {self.daily_loss_limit_pct}"
            )
        for name in ("loss_streak_limit", "loss_streak_cooldown_s", "max_entries_per_hour"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, was {getattr(self, name)}")
        if self.symbol_cooldown_s < 0:
            raise ValueError(f"symbol_cooldown_s must be >= 0, was {self.symbol_cooldown_s}")
        if not -1.0 <= self.max_correlation <= 1.0:  # also refuses NaN
            raise ValueError(f"max_correlation must be in [-1, 1], was {self.max_correlation}")
        if self.max_funding_rate is not None and not Decimal(0) <= self.max_funding_rate < 1:
            raise ValueError(f"max_funding_rate must be in [0, 1), was {self.max_funding_rate}")
        if not Decimal(0) <= self.min_liquidation_buffer_pct < 1:
            raise ValueError(
                "min_liquidation_buffer_pct must be in [0, 1), "
                f"was {self.min_liquidation_buffer_pct}"
            )

    @property
    def effective_risk_per_trade(self) -> Decimal:
        """Return the equity fraction an entry risks at its stop, the levers' scale applied."""
        return self.risk_per_trade * self.size_multiplier

    def levers(self) -> PolicyLevers:
        """Return the brains' levers this policy carries."""
        return PolicyLevers(
            mode=self.mode,
            size_multiplier=self.size_multiplier,
            stop_tighten=self.stop_tighten,
            state=self.state,
            extra_positions=0,
        )


@value_class(frozen=True, slots=True, kw_only=True)
class PolicyLevers:
    """What the brains change on the base policy: the mode and what it (and the Risk Brain's
    actions) set. ``extra_positions`` adds to (or, negative, takes from) the base's maximum
    open positions, never below one."""

    mode: Mode = Mode.OPTIMIZATION
    size_multiplier: Decimal = Decimal(1)
    stop_tighten: Decimal = Decimal(1)
    state: TradingState = TradingState.ACTIVE
    extra_positions: int = 0


def apply_levers(base: Policy, levers: PolicyLevers, version: int) -> Policy:
    """Return ``base`` with ``levers`` applied, as policy ``version`` (validated: a lever out of
    range raises ``ValueError``)."""
    return dataclasses.replace(
        base,
        version=version,
        mode=levers.mode,
        size_multiplier=levers.size_multiplier,
        stop_tighten=levers.stop_tighten,
        state=levers.state,
        max_open_positions=max(1, base.max_open_positions + levers.extra_positions),
    )


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """Return the policy as JSON-safe data (Decimals and enums as strings)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        out[f.name] = str(value) if isinstance(value, Decimal | Mode | TradingState) else value
    return out


def _convert(annotation: str, raw: Any) -> Any:  # noqa: C901 - one case per field type
    """Return the stored JSON value ``raw`` as the field type ``annotation`` says."""
    if raw is None and "None" in annotation:
        return None
    if annotation == "Mode":
        return Mode(raw)
    if annotation == "TradingState":
        return TradingState(raw)
    if annotation.startswith("bool"):
        if not isinstance(raw, bool):
            raise TypeError(f"{raw!r} is not true or false")
        return raw
    if annotation.startswith("int"):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise TypeError(f"{raw!r} is not an integer")
        return raw
    if annotation.startswith("Decimal"):
        return Decimal(str(raw))
    if annotation.startswith("str"):
        if not isinstance(raw, str):
            raise TypeError(f"{raw!r} is not text")
        return raw
    if annotation.startswith("tuple"):
        if not isinstance(raw, list | tuple):
            raise TypeError(f"{raw!r} is not a list")
        return tuple(tuple(x) if isinstance(x, list | tuple) else x for x in raw)
    return raw


def policy_from_dict(data: dict[str, Any]) -> Policy:
    """Return the policy ``policy_to_dict`` wrote; a field it lacks takes the default (an older
    version's row), one it does not know is ignored. Bad values raise ``ValueError``."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(Policy)}
    kwargs: dict[str, Any] = {}
    for name, raw in data.items():
        if name not in fields:
            continue
        try:
            kwargs[name] = _convert(fields[name], raw)
        except (ArithmeticError, TypeError, ValueError) as e:
            raise ValueError(f"policy field {name} is not valid: {raw!r} ({e})") from e
    try:
        return Policy(**kwargs)
    except ArithmeticError as e:  # a NaN compared in the checks
        raise ValueError(f"policy is not valid: {e!r}") from e


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
