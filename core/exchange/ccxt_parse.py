"""Turn ccxt's unified dicts (orders, balances, positions) into domain values with Decimals.

Kept apart from ``core.exchange.ccxt`` because it needs no ccxt import: plain dicts in, frozen
values out, easy to test. Numbers go through ``str`` so 0.1 stays ``Decimal('0.1')``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from core.domain.enums import MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.orders import ZERO, Order, OrderRequest
from core.domain.portfolio import Balance, Position
from core.errors import DependencyError

_STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
}


def to_decimal(value: Any) -> Decimal | None:
    """Return ``value`` as a Decimal (via str), or None for None / empty / non-finite."""
    if value is None or value == "":
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise DependencyError(f"exchange sent a non-numeric amount {value!r}") from exc
    return result if result.is_finite() else None


def parse_order(
    raw: Mapping[str, Any],
    *,
    request: OrderRequest | None,
    client_order_id: str,
    market_type: MarketType,
    now_ms: int,
    contract_size: Decimal = Decimal(1),
    fee_paid: Decimal = ZERO,
) -> Order:
    """Return a ccxt order dict as an Order; ``request`` (what we sent) is kept when known.

    ccxt counts a contract market's amounts in contracts: ``contract_size`` base units each.
    ``fee_paid`` is the caller's: many venues leave it out of the order (``ccxt_fees``).
    """
    if request is None:
        request = request_from_order(
            raw,
            client_order_id=client_order_id,
            market_type=market_type,
            contract_size=contract_size,
        )
    filled = (to_decimal(raw.get("filled")) or ZERO) * contract_size
    status = _STATUS.get(str(raw.get("status") or "open").lower(), OrderStatus.OPEN)
    if status is OrderStatus.OPEN and filled > ZERO:
        status = OrderStatus.PARTIALLY_FILLED
    average = to_decimal(raw.get("average"))
    created_ms = int(raw.get("timestamp") or now_ms)
    updated_ms = int(raw.get("lastUpdateTimestamp") or raw.get("lastTradeTimestamp") or created_ms)
    return Order(
        request=request,
        exchange_order_id=str(raw.get("id") or ""),
        status=status,
        filled=filled,
        average_price=average,
        fee_paid=fee_paid,
        created_ms=created_ms,
        updated_ms=max(updated_ms, created_ms),
    )


def request_from_order(
    raw: Mapping[str, Any],
    *,
    client_order_id: str,
    market_type: MarketType,
    contract_size: Decimal = Decimal(1),
) -> OrderRequest:
    """Rebuild the request of an order we did not place in this process (e.g. after restart)."""
    raw_type = str(raw.get("type") or "market").lower()
    stop_price = to_decimal(raw.get("triggerPrice") or raw.get("stopPrice"))
    price = to_decimal(raw.get("price"))
    if stop_price is not None and "limit" not in raw_type:
        order_type = OrderType.STOP_MARKET
    elif raw_type == "limit" and price is not None:
        order_type = OrderType.LIMIT
    else:
        order_type = OrderType.MARKET
    try:
        return OrderRequest(
            client_order_id=client_order_id or str(raw.get("id") or ""),
            symbol=str(raw["symbol"]),
            side=Side(str(raw["side"]).lower()),
            type=order_type,
            amount=(to_decimal(raw.get("amount")) or ZERO) * contract_size,
            price=price if order_type is OrderType.LIMIT else None,
            stop_price=stop_price if order_type is OrderType.STOP_MARKET else None,
            reduce_only=bool(raw.get("reduceOnly")),
            market_type=market_type,
            leverage=1,
        )
    except (KeyError, ValueError) as exc:
        raise DependencyError(f"exchange sent an order we cannot read ({exc}): {raw!r}") from exc


def parse_balances(raw: Mapping[str, Any]) -> dict[str, Balance]:
    """Return the non-zero balances of a ccxt ``fetch_balance`` answer by asset."""
    free = raw.get("free") or {}
    used = raw.get("used") or {}
    result: dict[str, Balance] = {}
    for asset in sorted(set(free) | set(used)):
        balance = Balance(
            asset=asset,
            free=to_decimal(free.get(asset)) or ZERO,
            used=to_decimal(used.get(asset)) or ZERO,
        )
        if balance.total != ZERO:
            result[asset] = balance
    return result


def parse_position(raw: Mapping[str, Any], *, now_ms: int) -> Position | None:
    """Return a ccxt position dict as a Position, or None when it is flat."""
    contracts = to_decimal(raw.get("contracts"))
    if contracts is None or contracts == ZERO:
        return None
    size = to_decimal(raw.get("contractSize")) or Decimal(1)
    side = str(raw.get("side") or "").lower()
    if side not in (PositionSide.LONG, PositionSide.SHORT):
        raise DependencyError(f"exchange sent a position without a side: {raw!r}")
    opened_ms = int(raw.get("timestamp") or now_ms)
    return Position(
        symbol=str(raw["symbol"]),
        market_type=MarketType.PERP,
        side=PositionSide(side),
        amount=abs(contracts) * size,
        entry_price=to_decimal(raw.get("entryPrice")) or ZERO,
        leverage=max(1, int(to_decimal(raw.get("leverage")) or 1)),
        margin=to_decimal(raw.get("initialMargin") or raw.get("collateral")) or ZERO,
        realized_pnl=to_decimal(raw.get("realizedPnl")) or ZERO,
        opened_ms=opened_ms,
        updated_ms=opened_ms,
        liquidation_price=to_decimal(raw.get("liquidationPrice")) or None,  # the venue's own
    )
