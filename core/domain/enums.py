"""StrEnums for everything persisted or shown to users."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """Order side."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        """Return the other side."""
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    """Order types the exchange port supports."""

    MARKET = "market"
    LIMIT = "limit"
    STOP_MARKET = "stop_market"


class OrderStatus(StrEnum):
    """Lifecycle of an order."""

    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        """Return True when the order can change no more."""
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)


class MarketType(StrEnum):
    """Spot, or USDT-margined perpetual futures."""

    SPOT = "spot"
    PERP = "perp"


class CandleMarket(StrEnum):
    """The market a candle series is of: spot, a perpetual's trades, or its mark price.

    The three are different prices for one symbol (futures trade at a basis to spot; mark
    candles have no volume), so they are stored and loaded as separate series.
    """

    SPOT = "spot"
    PERP = "perp"
    MARK = "mark"

    @classmethod
    def traded(cls, market_type: MarketType) -> CandleMarket:
        """Return the series a process trading ``market_type`` runs on (never mark)."""
        return cls(MarketType(market_type).value)


class PositionSide(StrEnum):
    """Direction of a position."""

    LONG = "long"
    SHORT = "short"


class Liquidity(StrEnum):
    """Whether a fill added (maker) or took (taker) liquidity."""

    MAKER = "maker"
    TAKER = "taker"


class TradingState(StrEnum):
    """What the risk gate lets through: everything, only exposure-reducing orders, or nothing."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class TradingMode(StrEnum):
    """Paper (simulated fills on real or replayed prices) or live (real orders)."""

    PAPER = "paper"
    LIVE = "live"


class Mode(StrEnum):
    """The CEO Brain's operating mode (ordered from the boldest to the most defensive)."""

    EXPANSION = "EXPANSION"
    OPTIMIZATION = "OPTIMIZATION"
    PRESERVATION = "PRESERVATION"
    EMERGENCY = "EMERGENCY"

    @property
    def severity(self) -> int:
        """Return 0 (EXPANSION) .. 3 (EMERGENCY): a higher number is more defensive."""
        return _MODE_ORDER.index(self)


_MODE_ORDER = (Mode.EXPANSION, Mode.OPTIMIZATION, Mode.PRESERVATION, Mode.EMERGENCY)
