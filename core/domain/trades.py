"""Closed trades: one entry and the exits (legs) that closed it, for reports and performance."""

from __future__ import annotations

from decimal import Decimal

from core.domain.enums import MarketType, PositionSide
from core.domain.explanations import EntryExplanation
from core.values import value_class


@value_class(frozen=True, slots=True, kw_only=True)
class ExitLeg:
    """One partial or final exit of a trade. ``reason`` is e.g. TP1, TP2, TP3, SL, SIGNAL, END."""

    reason: str
    ts_ms: int
    price: Decimal
    amount: Decimal
    fee: Decimal
    pnl: Decimal  # net of this leg's exit fee and its share of the entry fee, quote currency


@value_class(frozen=True, slots=True, kw_only=True)
class ClosedTrade:
    """A round trip. ``pnl`` is net of all fees and of ``funding`` (received > 0, paid < 0;
    perps with funding data only); ``pnl_pct`` is pnl over the entry notional."""

    trade_id: str
    symbol: str
    side: PositionSide
    market_type: MarketType
    leverage: int
    opened_ms: int
    closed_ms: int
    amount: Decimal
    entry_price: Decimal
    exit_price: Decimal  # amount-weighted average of the legs
    fees: Decimal
    pnl: Decimal
    pnl_pct: float
    exit_reason: str  # reason of the leg that closed the trade
    legs: tuple[ExitLeg, ...]
    funding: Decimal = Decimal(0)
    liquidation_price: Decimal | None = None  # perps: where the venue would have liquidated
    provider: str = ""  # the signal provider that opened it (the meta-strategy's pick)
    regime: str = ""  # the regime at the entry decision
    exit_profile: str = ""  # the ladder that regime chose (README: Regimes and the meta-strategy)
    explanation: EntryExplanation | None = None  # why it was entered (the ensemble's entries)

    @property
    def duration_ms(self) -> int:
        """Return how long the trade was open."""
        return self.closed_ms - self.opened_ms
