"""Where ccxt puts our orders on each venue, and how to reach them again (no ccxt import here).

Read from ccxt 4.5.90's source: on Binance USD-M (and OKX) a stop is not an order like the others.
ccxt sends every linear conditional order to Binance's Algo Order service (``/fapi/v1/algoOrder``,
OKX: ``order-algo``) and reaches it again only when ``fetch_order``, ``cancel_order`` and
``fetch_open_orders`` get ``trigger=True``; asked without it, the regular endpoint answers that
the stop does not exist. Once triggered, the algo order names the regular order that executes
it (Binance: ``actualOrderId``) and carries no fill figures of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.domain.enums import MarketType, OrderType
from core.domain.orders import OrderRequest

# Venues whose ccxt class keeps stops apart, reachable with the trigger flag only (perps).
STOPS_APART = frozenset({"binance", "binanceusdm", "okx"})
# Binance's algo statuses after the trigger: the order now lives in the regular book.
_TRIGGERED = frozenset({"TRIGGERED", "FINISHED"})


def stops_apart(venue: str, market_type: MarketType) -> bool:
    """Return True when ``venue`` keeps a perp's stops on their own endpoint."""
    return market_type is MarketType.PERP and venue in STOPS_APART


def order_args(request: OrderRequest) -> tuple[str, float | None, dict[str, Any]]:
    """Return ccxt's (type, price, params) for a request; ccxt maps clientOrderId per venue
    (Binance: ``newClientOrderId``, or ``clientAlgoId`` for a stop)."""
    params: dict[str, Any] = {"clientOrderId": request.client_order_id}
    if request.reduce_only and request.market_type is MarketType.PERP:
        params["reduceOnly"] = True  # spot venues have no such flag (ccxt refuses it there)
    # OrderRequest guarantees the prices its type needs.
    if request.type is OrderType.LIMIT and request.price is not None:
        return "limit", float(request.price), params
    if request.type is OrderType.STOP_MARKET and request.stop_price is not None:
        params["triggerPrice"] = float(request.stop_price)
    return "market", None, params


def lookup_params(client_order_id: str, *, stop: bool) -> dict[str, Any]:
    """Return the params that make ccxt's fetch/cancel address our client id, on the stops'
    endpoint when ``stop``."""
    params: dict[str, Any] = {"clientOrderId": client_order_id}
    if stop:
        params["trigger"] = True
    return params


def list_params(market_type: MarketType, *, symbol_given: bool, stop: bool) -> dict[str, Any]:
    """Return the params of ``fetch_open_orders`` for our market type (and its stops)."""
    params: dict[str, Any] = {}
    if market_type is MarketType.PERP and not symbol_given:
        # Without a symbol ccxt's binance lists spot orders, whatever defaultType says.
        params = {"type": "swap", "subType": "linear"}
    if stop:
        params["trigger"] = True
    return params


def is_triggered(raw: Mapping[str, Any]) -> bool:
    """Return True for a Binance algo order whose trigger fired (its fills are elsewhere)."""
    info = raw.get("info")
    return isinstance(info, Mapping) and str(info.get("algoStatus") or "").upper() in _TRIGGERED


def triggered_order_id(raw: Mapping[str, Any]) -> str | None:
    """Return the id of the regular order a triggered algo order became, if the venue says."""
    info = raw.get("info")
    actual = info.get("actualOrderId") if isinstance(info, Mapping) else None
    return str(actual) if actual not in (None, "", 0, "0") else None


def merge_triggered(algo: Mapping[str, Any], actual: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the triggered ``algo`` order with the execution of its ``actual`` order: that
    order's status, fills and times, the algo order's identity and request.

    Without the actual order (not visible yet) the stop counts as still working: an algo order
    reads "closed" with nothing filled, and taking that for the end would leave the position
    without its stop while the venue is selling it.
    """
    merged = dict(algo)
    if actual is None:
        merged.update(status="open", filled=0.0, average=None)
        return merged
    for key in ("status", "filled", "average", "lastTradeTimestamp", "lastUpdateTimestamp"):
        merged[key] = actual.get(key)
    merged["fee"], merged["fees"] = actual.get("fee"), actual.get("fees") or []
    return merged


def is_duplicate_message(text: str) -> bool:
    """Return True for a venue's "this client id is taken" answer: Binance's -4116
    "ClientOrderId is duplicated.", -20132 "The client algo id is duplicated" (stops, which
    ccxt maps to BadRequest), spot's -2010 "Duplicate order sent."."""
    return "duplicate" in text.lower()


def is_not_found_message(text: str) -> bool:
    """Return True for Binance's algo -20124 "Invalid algo id or it has been completed" (ccxt:
    BadRequest), which says the stop is not (or no longer) there, like OrderNotFound."""
    return "-20124" in text
