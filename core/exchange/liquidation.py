"""Liquidation on the simulated venue: when it triggers within a candle and what it costs.

The venue watches every perp position's liquidation price (``core.domain.margin``). Within a
candle it is a stop the venue holds for the whole position (``trigger_order``), ordered like
this (see ``PaperBook._match``): if the candle opens beyond it, the venue liquidates at the
open before anything of ours trades there; inside the candle our own stops come first (the
path crosses a stop that sits inside the liquidation price first), then the liquidation, then
take-profits (the worst case, as for any stop). The candle's traded range triggers it, where
venues use the mark price, which wicks less: a conservative choice.

What it costs (``settle``): the position closes at the liquidation price and pays the
liquidation fee (rate times notional) out of the margin that is left. When a gap takes the
price past bankruptcy (the margin cannot pay the loss) the position closes at the bankruptcy
price: the whole margin is lost, never more (the venue's insurance fund takes the rest).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from core.domain.enums import Liquidity, MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.margin import MarginConfig, MarginMode, maintenance_margin
from core.domain.orders import LIQUIDATION_ID_PREFIX, Fill, Order, OrderRequest
from core.domain.portfolio import Position
from core.values import value_class

ZERO = Decimal(0)
ONE = Decimal(1)


def liquidation_id(symbol: str, candle_ms: int) -> str:
    """Return the client id of the venue's liquidation order of ``symbol`` in a candle."""
    return f"{LIQUIDATION_ID_PREFIX}{''.join(c for c in symbol if c.isalnum())}-{candle_ms}"


def collateral(
    position: Position,
    positions: Iterable[Position],
    prices: Mapping[str, Decimal],
    wallet: Decimal,
    config: MarginConfig,
) -> Decimal:
    """Return what backs ``position``: its own margin (isolated), or the quote ``wallet``
    plus the other positions' unrealised PnL less their maintenance margin at ``prices``
    (cross: every position backs the others)."""
    if config.mode is MarginMode.ISOLATED:
        return position.margin
    backing = wallet
    for other in positions:
        if other.symbol == position.symbol:
            continue
        price = prices.get(other.symbol, other.entry_price)
        backing += other.unrealized_pnl(price) - maintenance_margin(other.amount * price, config)
    return backing


def trigger_order(position: Position, level: Decimal, candle_ms: int, now_ms: int) -> Order:
    """Return the venue's own stop for the whole position at its liquidation price."""
    cid = liquidation_id(position.symbol, candle_ms)
    closing = Side.SELL if position.side is PositionSide.LONG else Side.BUY
    return Order(
        request=OrderRequest(
            client_order_id=cid,
            symbol=position.symbol,
            side=closing,
            type=OrderType.STOP_MARKET,
            amount=position.amount,
            stop_price=level,
            reduce_only=True,
            market_type=MarketType.PERP,
            leverage=position.leverage,
            tag="liquidation",
        ),
        exchange_order_id=cid,
        status=OrderStatus.OPEN,
        created_ms=now_ms,
        updated_ms=now_ms,
    )


@value_class(frozen=True, slots=True, kw_only=True)
class Settlement:
    """How a liquidation closes a position: at ``price`` (realised PnL ``realized``, before
    the ``fee``); ``bankrupt`` when the margin could not pay the loss."""

    price: Decimal
    realized: Decimal
    fee: Decimal
    bankrupt: bool


def settle(
    position: Position,
    level: Decimal,
    open_price: Decimal,
    gapped: bool,
    collateral: Decimal,
    config: MarginConfig,
) -> Settlement:
    """Return the settlement of ``position`` liquidated at ``level`` (at the open when the
    candle ``gapped`` past it), backed by ``collateral`` (see module docstring)."""
    sign = ONE if position.side is PositionSide.LONG else -ONE
    amount, entry = position.amount, position.entry_price
    price = open_price if gapped else level
    realized = (price - entry) * amount * sign
    left = collateral + realized
    if left <= ZERO:
        bankruptcy = entry - sign * collateral / amount
        return Settlement(price=bankruptcy, realized=-collateral, fee=ZERO, bankrupt=True)
    fee = min(config.liquidation_fee * price * amount, left)
    return Settlement(price=price, realized=realized, fee=fee, bankrupt=False)


def closing_fill(
    trigger: Order, position: Position, done: Settlement, candle_ms: int, now_ms: int
) -> tuple[Order, Fill]:
    """Return the venue's filled liquidation order and its fill, in the candle that hit it."""
    order = trigger.with_(
        status=OrderStatus.FILLED,
        filled=position.amount,
        average_price=done.price,
        fee_paid=done.fee,
        created_ms=candle_ms,
        updated_ms=now_ms,
        reason="bankrupt: the margin is lost" if done.bankrupt else "liquidated",
    )
    fill = Fill(
        fill_id=f"{order.exchange_order_id}-{candle_ms}",
        client_order_id=order.client_order_id,
        exchange_order_id=order.exchange_order_id,
        symbol=position.symbol,
        side=order.request.side,
        amount=position.amount,
        price=done.price,
        fee=done.fee,
        liquidity=Liquidity.TAKER,
        ts_ms=candle_ms,
        market_type=MarketType.PERP,
        order_filled=order.filled,
    )
    return order, fill
