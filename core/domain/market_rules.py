"""What a venue accepts for one symbol: the grid of amounts and prices, and the minimums."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketRules:
    """The venue's precision and limits of ``symbol`` (our name of it).

    Amounts are base units (a venue counting contracts has its contract size folded in),
    prices and notionals quote units. A minimum of 0 means the venue states none; a
    ``max_leverage`` of None that it states no cap (spot, or unknown).
    """

    symbol: str
    amount_step: Decimal
    price_tick: Decimal
    min_amount: Decimal = ZERO
    min_notional: Decimal = ZERO
    max_leverage: int | None = None

    def __post_init__(self) -> None:
        if self.amount_step <= ZERO or self.price_tick <= ZERO:
            raise ValueError(
                f"{self.symbol}: steps must be > 0, was amount {self.amount_step}, "
                f"price {self.price_tick}"
            )
        if self.min_amount < ZERO or self.min_notional < ZERO:
            raise ValueError(
                f"{self.symbol}: minimums must be >= 0, was amount {self.min_amount}, "
                f"notional {self.min_notional}"
            )
        if self.max_leverage is not None and self.max_leverage < 1:
            raise ValueError(f"{self.symbol}: max leverage must be >= 1, was {self.max_leverage}")

    def floor_amount(self, amount: Decimal) -> Decimal:
        """Return ``amount`` cut down to the amount step (what the venue would keep of it)."""
        return _to_step(amount, self.amount_step, ROUND_FLOOR)

    def round_price(self, price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """Return ``price`` on the tick grid (nearest tick unless ``rounding`` says otherwise:
        ``decimal.ROUND_FLOOR``, ``ROUND_CEILING``)."""
        return _to_step(price, self.price_tick, rounding)

    def meets_minimums(self, amount: Decimal, price: Decimal) -> bool:
        """Return True when an order of ``amount`` at ``price`` is not below the venue's
        minimum amount and minimum order value."""
        return amount >= self.min_amount and amount * price >= self.min_notional


def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return (value / step).quantize(Decimal(1), rounding=rounding) * step
