"""The fees of an order's fills, in the quote currency, from what ccxt gives (no ccxt import).

Some venues put the fee in the order (Bybit, OKX, Binance spot); Binance USD-M does not, the
commission is only in the account's trades (``/fapi/v1/userTrades``). So the adapter takes the
fee from the order when it states one, else from the order's trades, and estimates from the
venue's fee schedule (ccxt's market ``maker``/``taker``: the base tier, before VIP levels or BNB
discounts) only what those do not cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from core.domain.enums import OrderType
from core.domain.orders import ZERO
from core.exchange.ccxt_markets import Market
from core.exchange.ccxt_parse import to_decimal


def fee_entries(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Return the fee entries of a ccxt order or trade that state a cost."""
    entries = raw.get("fees") or ([raw["fee"]] if raw.get("fee") else [])
    return [e for e in entries if e and to_decimal(e.get("cost")) is not None]


def quote_fee(
    entries: Iterable[Mapping[str, Any]], symbol: str, price: Decimal | None
) -> Decimal | None:
    """Return the fee entries' total in the quote currency (a fee in the base valued at
    ``price``); None when one is in another asset (BNB, say), which has no price here."""
    base, _, rest = symbol.partition("/")
    quote = rest.split(":")[0]
    total = ZERO
    for entry in entries:
        cost = to_decimal(entry.get("cost")) or ZERO
        currency = entry.get("currency")
        if currency == quote:
            total += cost
        elif currency == base and price is not None:
            total += cost * price
        else:
            return None
    return total


def trade_fees(
    trades: Iterable[Mapping[str, Any]], order_id: str, symbol: str, contract_size: Decimal
) -> tuple[Decimal, Decimal]:
    """Return ``(fee in quote, base amount it covers)`` over the trades of ``order_id``.

    Trades of other orders are ignored (a venue may answer more than the one order asked
    for), and so are trades whose fee cannot be valued: their amount is left uncovered.
    """
    fee = covered = ZERO
    for trade in trades:
        if str(trade.get("order") or "") != order_id:
            continue
        amount = (to_decimal(trade.get("amount")) or ZERO) * contract_size
        valued = quote_fee(fee_entries(trade), symbol, to_decimal(trade.get("price")))
        if valued is not None and amount > ZERO:
            fee += valued
            covered += amount
    return fee, covered


def schedule_fee(
    market: Market, amount: Decimal, price: Decimal, order_type: OrderType
) -> Decimal | None:
    """Return the venue's scheduled fee of filling ``amount`` at ``price``: maker for a limit
    (it rests), taker for market and stop orders; None if the market states no rate."""
    rate = to_decimal(market.get("maker" if order_type is OrderType.LIMIT else "taker"))
    return None if rate is None else amount * price * rate
