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
    # Exit Brain: the Risk Brain tightens every open trade's stop to this fraction of its
    # distance from the price (0 < f <= 1; 1 = untouched; core.brains.exit_moves.tighten_stop).
    stop_tighten: Decimal = Decimal(1)

    def __post_init__(self) -> None:
        if not Decimal(0) < self.stop_tighten <= Decimal(1):
            raise ValueError(f"stop_tighten must be in (0, 1], was {self.stop_tighten}")
        if not Decimal(0) < self.risk_per_trade <= Decimal("0.2"):
            raise ValueError(f"risk_per_trade must be in (0, 0.2], was {self.risk_per_trade}")
        if self.max_open_positions < 1:
            raise ValueError(f"max_open_positions must be >= 1, was {self.max_open_positions}")
        if self.max_leverage < 1:
            raise ValueError(f"max_leverage must be >= 1, was {self.max_leverage}")
        if self.max_position_pct <= 0 or self.max_total_exposure_pct <= 0:
            raise ValueError("max_position_pct and max_total_exposure_pct must be > 0")
