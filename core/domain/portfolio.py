"""Balances, positions and equity snapshots."""

from __future__ import annotations

from decimal import Decimal

from core.domain.enums import MarketType, PositionSide
from core.values import value_class

ZERO = Decimal(0)


@value_class(frozen=True, slots=True, kw_only=True)
class Balance:
    """Holdings of one asset: ``free`` can be spent, ``used`` is reserved by open orders/margin.

    ``includes_unrealized_pnl`` says whether ``total`` already holds the open perp positions'
    unrealized PnL (a margin balance) or not (a wallet balance: deposits, realized PnL, fees,
    funding). The default is a venue's margin balance, which is what ccxt gives for Binance
    USD-M (free = availableBalance, used = initialMargin: marginBalance together); the paper
    exchange reports its wallet and says so. Valuation adds the PnL only where it is missing.
    """

    asset: str
    free: Decimal
    used: Decimal = ZERO
    includes_unrealized_pnl: bool = True

    @property
    def total(self) -> Decimal:
        """Return free plus used."""
        return self.free + self.used


@value_class(frozen=True, slots=True, kw_only=True)
class Position:
    """An open position. Spot positions are always LONG with leverage 1."""

    symbol: str
    market_type: MarketType
    side: PositionSide
    amount: Decimal  # base units, > 0
    entry_price: Decimal
    leverage: int = 1
    margin: Decimal = ZERO  # quote locked as margin (perp only)
    realized_pnl: Decimal = ZERO
    opened_ms: int
    updated_ms: int
    # Where the venue liquidates it (perps; None when unknown or out of reach). Derived by the
    # venue from the position and its margin, not stored.
    liquidation_price: Decimal | None = None

    def unrealized_pnl(self, mark_price: Decimal) -> Decimal:
        """Return profit or loss at ``mark_price`` in quote currency."""
        diff = mark_price - self.entry_price
        return diff * self.amount if self.side is PositionSide.LONG else -diff * self.amount

    def notional(self, mark_price: Decimal) -> Decimal:
        """Return the position's value at ``mark_price``."""
        return self.amount * mark_price


@value_class(frozen=True, slots=True, kw_only=True)
class EquitySnapshot:
    """Account value at one moment, in quote currency."""

    ts_ms: int
    equity: Decimal
    cash: Decimal
    unrealized_pnl: Decimal = ZERO


@value_class(frozen=True, slots=True, kw_only=True)
class FundingPayment:
    """One funding event settled on a perp position: ``cash`` is what the account received
    (negative when it paid); ``price`` is the mark it was computed at."""

    symbol: str
    side: PositionSide
    amount: Decimal
    price: Decimal
    rate: Decimal
    cash: Decimal
