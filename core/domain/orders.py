"""Orders and fills. Quantities, prices and money are exact Decimals."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from core.domain.enums import Liquidity, MarketType, OrderStatus, OrderType, Side
from core.values import value_class

ZERO = Decimal(0)
# Client ids of the orders a venue sends itself to close a liquidated position (Binance's
# convention): their fills close positions nobody ordered closed.
LIQUIDATION_ID_PREFIX = "autoclose-"


# The id under which the engine books a position the venue closed without an order of ours.
CLOSED_OUTSIDE_ID_PREFIX = "venue-close-"


def is_liquidation(client_order_id: str) -> bool:
    """Return True for the client id of a venue's liquidation order."""
    return client_order_id.startswith(LIQUIDATION_ID_PREFIX)


def closed_outside_id(symbol: str, ts_ms: int) -> str:
    """Return the id of the engine's record of a close it found at the venue, not ordered."""
    return f"{CLOSED_OUTSIDE_ID_PREFIX}{''.join(c for c in symbol if c.isalnum())}-{ts_ms}"


def is_closed_outside(client_order_id: str) -> bool:
    """Return True for an id made by ``closed_outside_id``."""
    return client_order_id.startswith(CLOSED_OUTSIDE_ID_PREFIX)


@value_class(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    """What we ask the exchange to do. ``client_order_id`` makes submission idempotent."""

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None = None  # limit price
    stop_price: Decimal | None = None  # trigger for stop-market
    reduce_only: bool = False
    market_type: MarketType = MarketType.SPOT
    leverage: int = 1
    tag: str = ""  # why the order exists (e.g. "entry", "tp1", "sl"); shown in reports

    def __post_init__(self) -> None:
        if not self.client_order_id:
            raise ValueError("every order needs a client_order_id")
        if self.amount <= ZERO:
            raise ValueError(f"order amount must be > 0, was {self.amount}")
        if self.type is OrderType.LIMIT and (self.price is None or self.price <= ZERO):
            raise ValueError(f"limit order needs a positive price, was {self.price}")
        if self.type is OrderType.STOP_MARKET and (
            self.stop_price is None or self.stop_price <= ZERO
        ):
            raise ValueError(
                f"stop-market order needs a positive stop_price, was {self.stop_price}"
            )
        if self.leverage < 1:
            raise ValueError(f"leverage must be >= 1, was {self.leverage}")
        if self.market_type is MarketType.SPOT and self.leverage != 1:
            raise ValueError(f"spot orders have leverage 1, was {self.leverage}")


@value_class(frozen=True, slots=True, kw_only=True)
class Order:
    """An order as the exchange knows it."""

    request: OrderRequest
    exchange_order_id: str
    status: OrderStatus
    filled: Decimal = ZERO
    average_price: Decimal | None = None
    fee_paid: Decimal = ZERO  # in quote currency
    created_ms: int
    updated_ms: int
    reason: str = ""  # rejection/cancel reason

    @property
    def client_order_id(self) -> str:
        """Return the client order id of the request."""
        return self.request.client_order_id

    @property
    def symbol(self) -> str:
        """Return the order's symbol."""
        return self.request.symbol

    @property
    def remaining(self) -> Decimal:
        """Return the amount still to fill."""
        return self.request.amount - self.filled

    @property
    def is_open(self) -> bool:
        """Return True while the order can still fill."""
        return not self.status.is_terminal

    def with_(self, **changes: object) -> Order:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)  # type: ignore[arg-type]


@value_class(frozen=True, slots=True, kw_only=True)
class Fill:
    """One execution of (part of) an order."""

    fill_id: str
    client_order_id: str
    exchange_order_id: str
    symbol: str
    side: Side
    amount: Decimal
    price: Decimal
    fee: Decimal  # in quote currency
    liquidity: Liquidity
    ts_ms: int
    market_type: MarketType = MarketType.SPOT
    # How much of its order has filled with it (a simulated venue's; None: not known). It
    # names the fill's event as the order's state does (``fill_event_id``), so a restart
    # that finds the fill again in that state reports it under the same id.
    order_filled: Decimal | None = None

    @property
    def notional(self) -> Decimal:
        """Return amount times price, in quote currency."""
        return self.amount * self.price
