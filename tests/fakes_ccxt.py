"""A fake ccxt exchange object for the ccxt adapters' tests: enough of ccxt's unified API,
with orders in a dict by client id, and errors to inject.

It mimics ccxt's unified answers, not one venue's HTTP API (``tests/fakes_fapi.py`` is a fake
Binance USD-M server that the real ``ccxt.binance`` talks to).
"""

from __future__ import annotations

import random
from typing import Any

import ccxt.async_support as ccxt_async

from core.clock import SimClock
from core.domain.enums import MarketType
from core.exchange.ccxt import CcxtExchange

T0 = 1_704_067_200_000


def market(symbol: str, *, contract_size: float | None = None, **overrides: Any) -> dict[str, Any]:
    """Return a ccxt market dict: spot for ``BASE/QUOTE``, linear perp for ``BASE/QUOTE:QUOTE``."""
    pair, _, settle = symbol.partition(":")
    base, quote = pair.split("/")
    perp = bool(settle)
    return {
        "id": f"{base}{quote}",
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle or None,
        "type": "swap" if perp else "spot",
        "spot": not perp,
        "swap": perp,
        "future": False,
        "option": False,
        "contract": perp,
        "linear": True if perp else None,
        "inverse": False if perp else None,
        "contractSize": (contract_size or 1.0) if perp else None,
        "active": True,
        "taker": 0.0005 if perp else 0.001,
        "maker": 0.0002 if perp else 0.001,
        "precision": {"amount": 0.001, "price": 0.1},
        "limits": {
            "amount": {"min": 0.001, "max": 1000.0},
            "price": {"min": 0.1, "max": None},
            "cost": {"min": 5.0, "max": None},
            "leverage": {"min": 1.0, "max": 125.0 if perp else None},
        },
        "info": {},
        **overrides,
    }


def default_markets(contract_size: float | None = None) -> dict[str, dict[str, Any]]:
    """Return BTC and ETH against USDT, spot and linear perp, keyed by ccxt symbol."""
    symbols = ("BTC/USDT", "ETH/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT")
    return {s: market(s, contract_size=contract_size) for s in symbols}


class FakeCcxt:
    """Enough of a ccxt exchange to drive the adapters; orders live in a dict by client id.

    ``markets`` stays None until ``load_markets`` (as in ccxt); ``id`` and ``options`` say
    which venue and default market type it plays.
    """

    def __init__(
        self,
        venue: str = "binance",
        *,
        markets: dict[str, dict[str, Any]] | None = None,
        default_type: str = "spot",
    ) -> None:
        self.id = venue
        # Like ccxt's binance and okx on perps: stops answer only with trigger=True.
        self.stops_apart = venue in ("binance", "okx") and default_type == "swap"
        self.options: dict[str, Any] = {"defaultType": default_type}
        self.precisionMode = 4  # ccxt's TICK_SIZE, as on binance, bybit and okx
        self.markets: dict[str, dict[str, Any]] | None = None
        self.all_markets = markets if markets is not None else default_markets()
        self.ohlcv_calls: list[str] = []
        self.open_orders_calls: list[tuple[Any, dict[str, Any]]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.create_calls: list[tuple[Any, ...]] = []
        self.create_errors: list[tuple[Exception, bool]] = []  # (error, order landed first?)
        self.ohlcv: list[list[Any]] = []
        self.tickers: dict[str, dict[str, Any]] = {}  # what fetch_tickers answers
        self.leverage: list[tuple[int, str]] = []
        self.closed = False
        self.markets_loaded = False
        self.auth_error: Exception | None = None
        self.errors: dict[str, list[Exception]] = {}  # method name -> errors its next calls raise
        self.order_fees = True  # False: orders carry no fee (Binance USD-M), trades do
        self.trades: list[dict[str, Any]] = []  # what fetch_my_trades answers
        self.trades_calls: list[tuple[Any, dict[str, Any]]] = []
        self.has: dict[str, bool] = {"fetchMyTrades": True, "fetchOrderTrades": False}

    def fail_next(self, method: str, *errors: Exception) -> None:
        """Make the next calls of ``method`` raise ``errors``, one each, in order."""
        self.errors.setdefault(method, []).extend(errors)

    def _raise_injected(self, method: str) -> None:
        if self.errors.get(method):
            raise self.errors[method].pop(0)

    async def create_order(self, symbol, type, side, amount, price=None, params=None):
        params = params or {}
        self.create_calls.append((symbol, type, side, amount, price, dict(params)))
        cid = params["clientOrderId"]
        if self.create_errors:
            error, landed = self.create_errors.pop(0)
            if landed:
                self.orders[cid] = self._order(cid, symbol, type, side, amount, price, params)
            raise error
        if cid in self.orders:
            raise ccxt_async.InvalidOrder('binance {"code":-2010,"msg":"Duplicate order sent."}')
        self.orders[cid] = self._order(cid, symbol, type, side, amount, price, params)
        return self.orders[cid]

    def _order(self, cid, symbol, type, side, amount, price, params):
        return {
            "id": f"x{len(self.orders) + 1}",
            "clientOrderId": cid,
            "symbol": symbol,
            "type": type,
            "side": side,
            "amount": amount,
            "price": price,
            "triggerPrice": params.get("triggerPrice"),
            "reduceOnly": params.get("reduceOnly", False),
            "status": "closed" if type == "market" and "triggerPrice" not in params else "open",
            "filled": amount if type == "market" and "triggerPrice" not in params else 0.0,
            "average": 100.1 if type == "market" else None,
            "fee": {"cost": 0.1001, "currency": "USDT"} if self.order_fees else None,
            "fees": [],
            "timestamp": T0,
            "lastTradeTimestamp": T0 + 5,
        }

    def _reachable(self, cid, params):
        """Return True if the order of ``cid`` answers a call with ``params``."""
        if cid not in self.orders:
            return False
        is_stop = self.orders[cid]["triggerPrice"] is not None
        return not self.stops_apart or is_stop == bool((params or {}).get("trigger"))

    async def fetch_order(self, id, symbol=None, params=None):
        self._raise_injected("fetch_order")
        cid = (params or {}).get("clientOrderId")
        if not self._reachable(cid, params):
            raise ccxt_async.OrderNotFound(f"binance Order does not exist: {cid}")
        return self.orders[cid]

    async def cancel_order(self, id, symbol=None, params=None):
        self._raise_injected("cancel_order")
        cid = (params or {}).get("clientOrderId")
        order = self.orders.get(cid) if self._reachable(cid, params) else None
        if order is None or order["status"] != "open":
            raise ccxt_async.OrderNotFound("binance Unknown order sent.")
        order["status"] = "canceled"
        return order

    async def fetch_open_orders(self, symbol=None, since=None, limit=None, params=None):
        self.open_orders_calls.append((symbol, dict(params or {})))
        return [
            o
            for cid, o in self.orders.items()
            if o["status"] == "open"
            and symbol in (None, o["symbol"])
            and self._reachable(cid, params)
        ]

    async def fetch_my_trades(self, symbol=None, since=None, limit=None, params=None):
        self.trades_calls.append((symbol, dict(params or {})))
        self._raise_injected("fetch_my_trades")
        return [t for t in self.trades if t["symbol"] == symbol]

    async def load_markets(self, reload=False):
        self.markets_loaded = True
        self.markets = self.all_markets
        return self.markets

    async def fetch_balance(self):
        if self.auth_error is not None:
            raise self.auth_error
        return {
            "free": {"USDT": 950.5, "BTC": 0.1, "ETH": 0.0},
            "used": {"USDT": 49.5, "BTC": 0.0, "ETH": 0.0},
        }

    async def fetch_positions(self, symbols=None):
        return [
            {"symbol": "BTC/USDT:USDT", "contracts": 0.0, "side": "long"},
            {
                "symbol": "ETH/USDT:USDT",
                "contracts": 2.0,
                "contractSize": 0.5,
                "side": "short",
                "entryPrice": 2000.1,
                "leverage": 3,
                "initialMargin": 333.35,
                "liquidationPrice": 2650.5,
                "timestamp": T0,
            },
        ]

    async def set_leverage(self, leverage, symbol):
        self._raise_injected("set_leverage")
        self.leverage.append((leverage, symbol))

    async def fetch_ohlcv(self, symbol, timeframe, since=None, limit=None):
        self.ohlcv_calls.append(symbol)
        return self.ohlcv

    async def fetch_tickers(self, symbols=None, params=None):
        self._raise_injected("fetch_tickers")
        return self.tickers

    async def close(self):
        self.closed = True


def adapter(fake: FakeCcxt, market_type: MarketType = MarketType.SPOT) -> CcxtExchange:
    async def no_sleep(_: float) -> None:
        return None

    return CcxtExchange(
        fake, clock=SimClock(T0), market_type=market_type, sleep=no_sleep, rng=random.Random(0)
    )
