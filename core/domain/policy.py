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
