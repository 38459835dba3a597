"""Margin of USDT-margined perpetuals: maintenance by notional tier and the liquidation price.

Pure arithmetic, shared by the paper venue (which liquidates), the engine (which refuses an
entry whose stop lies beyond its liquidation price) and the reports.

* Maintenance margin, as Binance computes it: ``notional * rate - amount`` in the tier the
  notional falls in; ``amount`` keeps it continuous across tiers, so a table is just each
  tier's floor and rate (``MarginTier``) and the amounts follow (``MarginTable``).
* A position is liquidated when its collateral plus its unrealised PnL falls to the
  maintenance margin. Isolated: the collateral is the position's own margin. Cross: the
  account's wallet (less what the other positions need), so every position backs the others.
  Solving ``collateral + side * (P - entry) * amount = maintenance(P * amount)`` for ``P``
  within each tier gives the liquidation price.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from core.domain.enums import PositionSide
from core.values import value_class

ZERO = Decimal(0)
ONE = Decimal(1)


class MarginMode(StrEnum):
    """Whose money backs a position: its own margin, or the whole account."""

    ISOLATED = "isolated"
    CROSS = "cross"


@value_class(frozen=True, slots=True, kw_only=True)
class MarginTier:
    """A maintenance tier: notionals from ``floor`` (quote) up to the next tier's floor."""

    floor: Decimal
    rate: Decimal  # maintenance margin rate, a fraction of the notional

    def __post_init__(self) -> None:
        if self.floor < ZERO or not ZERO < self.rate < ONE:
            raise ValueError(f"margin tier needs floor >= 0 and 0 < rate < 1, got {self}")


# Shaped like Binance USD-M's BTCUSDT brackets (0.4 % up to 50k USDT, rising with size): the
# default for every symbol until market rules are per symbol. Venues change these tables, and
# smaller coins start higher (1 % and more): set QT__MARGIN__TIERS from the venue's brackets.
DEFAULT_TIERS = tuple(
    MarginTier(floor=Decimal(floor), rate=Decimal(rate))
    for floor, rate in (
        (0, "0.004"),
        (50_000, "0.005"),
        (500_000, "0.01"),
        (8_000_000, "0.025"),
        (50_000_000, "0.05"),
        (80_000_000, "0.1"),
        (100_000_000, "0.125"),
        (120_000_000, "0.15"),
        (200_000_000, "0.25"),
        (300_000_000, "0.5"),
    )
)


@value_class(frozen=True, slots=True)
class _Bracket:
    floor: Decimal
    rate: Decimal
    amount: Decimal  # subtracted so the maintenance margin is continuous at the floor


@value_class(frozen=True, slots=True, kw_only=True)
class MarginConfig:
    """How perps are margined and liquidated."""

    mode: MarginMode = MarginMode.ISOLATED
    tiers: tuple[MarginTier, ...] = DEFAULT_TIERS
    # Charged on the notional at liquidation, at most what margin is left (Binance's
    # clearance fee): in practice a liquidated position loses its margin.
    liquidation_fee: Decimal = Decimal("0.0125")

    def __post_init__(self) -> None:
        if not self.tiers or self.tiers[0].floor != ZERO:
            raise ValueError("margin tiers must start at a floor of 0")
        floors = [t.floor for t in self.tiers]
        if floors != sorted(set(floors)):
            raise ValueError(f"margin tier floors must rise, got {[str(f) for f in floors]}")
        if not ZERO <= self.liquidation_fee < ONE:
            raise ValueError(f"liquidation fee must be in [0, 1), was {self.liquidation_fee}")

    @property
    def brackets(self) -> tuple[_Bracket, ...]:
        """Return the tiers with their maintenance amounts."""
        out: list[_Bracket] = []
        for tier in self.tiers:
            if not out:
                out.append(_Bracket(tier.floor, tier.rate, ZERO))
                continue
            prev = out[-1]
            amount = prev.amount + tier.floor * (tier.rate - prev.rate)
            out.append(_Bracket(tier.floor, tier.rate, amount))
        return tuple(out)


def maintenance_margin(notional: Decimal, config: MarginConfig) -> Decimal:
    """Return the maintenance margin of a position of ``notional`` (quote)."""
    bracket = _bracket_of(abs(notional), config.brackets)
    return max(ZERO, abs(notional) * bracket.rate - bracket.amount)


def _bracket_of(notional: Decimal, brackets: tuple[_Bracket, ...]) -> _Bracket:
    found = brackets[0]
    for bracket in brackets:
        if notional >= bracket.floor:
            found = bracket
    return found


def liquidation_price(
    side: PositionSide,
    amount: Decimal,
    entry_price: Decimal,
    collateral: Decimal,
    config: MarginConfig,
) -> Decimal | None:
    """Return the price at which a position with ``collateral`` backing it is liquidated, or
    None when no price can liquidate it (a long backed by its whole notional)."""
    if amount <= ZERO:
        return None
    brackets = config.brackets
    sign = ONE if side is PositionSide.LONG else -ONE
    for i, b in enumerate(brackets):
        # collateral + sign * (P - E) * Q = P * Q * r - a
        price = (sign * entry_price * amount - collateral - b.amount) / (amount * (sign - b.rate))
        if price <= ZERO:
            if side is PositionSide.LONG:
                continue  # this tier cannot liquidate a long at a positive price
            return None
        notional = price * amount
        upper = brackets[i + 1].floor if i + 1 < len(brackets) else None
        if notional >= b.floor and (upper is None or notional < upper):
            return price
    return None


def beyond(side: PositionSide, price: Decimal, level: Decimal) -> bool:
    """Return True when ``price`` is at or past ``level`` on ``side``'s losing side."""
    return price <= level if side is PositionSide.LONG else price >= level
