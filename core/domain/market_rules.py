"""What a venue accepts for one symbol: the grid of amounts and prices, and the minimums."""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from core.values import value_class

ZERO = Decimal(0)
# What any venue's grid lies within; beyond, Decimal arithmetic on prices loses its exactness
# (28 digits: a price of 1e5 on a tick of 1e-25 cannot be rounded).
FINEST_STEP = Decimal("1e-15")
COARSEST_STEP = Decimal("1e9")
LARGEST_MINIMUM = Decimal("1e12")


@value_class(frozen=True, slots=True, kw_only=True)
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
        values = (self.amount_step, self.price_tick, self.min_amount, self.min_notional)
        if not all(isinstance(v, Decimal) and v.is_finite() for v in values):
            raise ValueError(f"{self.symbol}: market rules must be finite decimals, were {values}")
        for name in ("amount_step", "price_tick"):
            if not FINEST_STEP <= getattr(self, name) <= COARSEST_STEP:
                raise ValueError(
                    f"{self.symbol}: {name} must be within {FINEST_STEP}..{COARSEST_STEP}, "
                    f"was {getattr(self, name)}"
                )
        if self.min_amount > LARGEST_MINIMUM or self.min_notional > LARGEST_MINIMUM:
            raise ValueError(
                f"{self.symbol}: minimums must be at most {LARGEST_MINIMUM}, was amount "
                f"{self.min_amount}, notional {self.min_notional}"
            )
        if self.max_leverage is not None and (
            not isinstance(self.max_leverage, int) or isinstance(self.max_leverage, bool)
        ):
            raise ValueError(f"{self.symbol}: max leverage must be a whole number")
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

    def off_grid(self, amount: Decimal, price: Decimal | None) -> str:
        """Return why an order of ``amount`` at ``price`` is not on this symbol's grid ("" if it
        is): the venue refuses an amount off the step or a price off the tick."""
        if amount % self.amount_step:
            return f"amount {amount} is not a multiple of the step {self.amount_step}"
        if price is not None and price % self.price_tick:
            return f"price {price} is not a multiple of the tick {self.price_tick}"
        return ""

    def meets_minimums(self, amount: Decimal, price: Decimal) -> bool:
        """Return True when an order of ``amount`` at ``price`` is not below the venue's
        minimum amount and minimum order value."""
        return amount >= self.min_amount and amount * price >= self.min_notional


def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return (value / step).quantize(Decimal(1), rounding=rounding) * step


class RulesSource(StrEnum):
    """Where a symbol's rules came from, most trusted first."""

    VENUE = "venue"  # the venue's markets, fetched by this process
    SETTINGS = "settings"  # QT__MARKET__SYMBOLS: an operator's override
    STORED = "stored"  # the venue's markets as fetched before (qt data download, qt run)
    INFERRED = "inferred"  # from the candles: the finest price increment, a tradable step
    DEFAULT = "default"  # QT__MARKET__PRICE_TICK / AMOUNT_STEP / MIN_NOTIONAL


@value_class(frozen=True, slots=True, kw_only=True)
class RulesInForce:
    """A symbol's rules and where they came from (``note``: which venue and when, or from how
    many candles)."""

    rules: MarketRules
    source: RulesSource
    note: str = ""
    rest_from: RulesSource | None = None  # an override's: where the fields it left came from

    @property
    def guessed(self) -> bool:
        """Return True when no venue stated some of these rules: inferred from candles, the
        settings' fallback, or an override whose other fields came from either."""
        guesses = (RulesSource.INFERRED, RulesSource.DEFAULT)
        return self.source in guesses or self.rest_from in guesses


@value_class(frozen=True, slots=True, kw_only=True)
class StoredRules:
    """A venue's rules of a symbol as fetched at ``fetched_ms`` (``qt data download``, a
    run's start or its refresh job)."""

    exchange: str
    market: str  # MarketType value: spot or perp
    rules: MarketRules
    fetched_ms: int
