"""The ccxt adapters: public candles (``CcxtMarketData``) and trading (``CcxtExchange``).

This is the only module that imports ccxt. ccxt exceptions become ours in one place,
:func:`ccxt_errors`; ccxt's dicts become domain values (Decimals, StrEnums) in
``core.exchange.ccxt_parse``. Both adapters take an already built ccxt exchange object, so tests
can point it at a local server (rewrite ``exchange.urls['api']``, call ``set_markets``) or pass
a fake; :func:`make_ccxt_exchange` builds the real one from an exchange id.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import ccxt.async_support as ccxt_async
import numpy as np

from core.clock import Clock
from core.domain.enums import MarketType, OrderType
from core.domain.market import CandleSeries
from core.domain.orders import Order, OrderRequest
from core.domain.portfolio import Balance, Position
from core.errors import (
    ConfigError,
    DataError,
    DependencyError,
    OperationalError,
    OrderRejected,
    QTError,
    RateLimited,
    TemporaryError,
)
from core.exchange.ccxt_parse import parse_balances, parse_order, parse_position
from core.retry import Sleep, retry


class CallKind(StrEnum):
    """What a ccxt call is for, which decides what a venue's refusal of it means."""

    DATA = "data"  # candles, markets, balances, positions: a refused request is bad input
    ORDER = "order"  # placing or cancelling an order: a refusal is the venue saying no to it
    LOOKUP = "lookup"  # asking about an order: a refusal says nothing about the order itself


# Most specific first: several of these subclass NetworkError or OperationRejected. Nothing here
# depends on what the call was for.
_ERROR_MAP: tuple[tuple[type[Exception], type[QTError]], ...] = (
    (ccxt_async.DDoSProtection, RateLimited),  # RateLimitExceeded subclasses it
    (ccxt_async.RateLimitExceeded, RateLimited),
    (ccxt_async.AuthenticationError, OperationalError),  # PermissionDenied, AccountSuspended
    (ccxt_async.RestrictedLocation, OperationalError),
    (ccxt_async.ManualInteractionNeeded, OperationalError),
    # ccxt's "may succeed if retried" branch: NetworkError (RequestTimeout,
    # ExchangeNotAvailable, InvalidNonce), BadResponse (a malformed answer, so the order may
    # have landed: the retry looks it up first), CancelPending.
    (ccxt_async.OperationFailed, TemporaryError),
)
# The venue turned the request down on its merits: an order's amount, price, funds, reduce-only,
# the market's state. Venues use both branches for this: Binance USD-M answers -4005 "Quantity
# greater than max quantity", -1111 precision and -4014 tick size as BadRequest, -2022
# reduce-only and -4164 notional as InvalidOrder.
_REFUSALS: tuple[type[Exception], ...] = (
    ccxt_async.BadRequest,  # BadSymbol
    ccxt_async.InvalidOrder,  # OrderNotFound, OrderImmediatelyFillable, DuplicateOrderId, ...
    ccxt_async.InsufficientFunds,
    ccxt_async.OperationRejected,  # MarketClosed, NoChange
)


def map_ccxt_error(exc: Exception, context: str = "", kind: CallKind = CallKind.DATA) -> QTError:
    """Return our error for a ccxt exception raised by a call of ``kind``.

    A refusal is ``OrderRejected`` on an order call (recorded, never retried, a fallback
    applies), ``DependencyError`` on a lookup (ask again later: it is no proof the order is
    gone) and, on a data call, ``DataError`` for a bad request (``OrderRejected`` for the order
    refusals). Rate limits, network failures and malformed answers keep their kind everywhere;
    anything unknown is a ``DependencyError``.
    """
    prefix = f"{context}: " if context else ""
    return _our_error_type(exc, kind)(f"{prefix}{type(exc).__name__}: {exc}")


def _our_error_type(exc: Exception, kind: CallKind) -> type[QTError]:
    for ccxt_type, ours in _ERROR_MAP:
        if isinstance(exc, ccxt_type):
            return ours
    if not isinstance(exc, _REFUSALS):
        return DependencyError  # NotSupported, ArgumentsRequired: our call is wrong, or unknown
    if kind is CallKind.LOOKUP:
        return DependencyError
    if kind is CallKind.DATA and isinstance(exc, ccxt_async.BadRequest):
        return DataError
    return OrderRejected


@contextmanager
def ccxt_errors(context: str = "", kind: CallKind = CallKind.DATA) -> Iterator[None]:
    """Translate ccxt exceptions raised inside the block into core.errors types."""
    try:
        yield
    except ccxt_async.BaseError as exc:
        raise map_ccxt_error(exc, context, kind) from exc


def make_ccxt_exchange(
    exchange_id: str,
    *,
    api_key: str | None = None,
    secret: str | None = None,
    password: str | None = None,
    sandbox: bool = False,
    timeout_s: float = 30.0,
    market_type: MarketType = MarketType.SPOT,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Build a ccxt.async_support exchange with rate limiting on; raise ConfigError if unknown."""
    cls = getattr(ccxt_async, exchange_id, None)
    if exchange_id not in ccxt_async.exchanges or cls is None:
        raise ConfigError(
            f"unknown exchange {exchange_id!r}; ccxt supports e.g. binance, bybit, okx"
        )
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(timeout_s * 1000),
        "options": {
            "defaultType": "swap" if market_type is MarketType.PERP else "spot",
            "warnOnFetchOpenOrdersWithoutSymbol": False,
            **(options or {}),
        },
    }
    for key, value in (("apiKey", api_key), ("secret", secret), ("password", password)):
        if value:
            config[key] = value
    exchange = cls(config)
    if sandbox:
        with ccxt_errors(f"{exchange_id} sandbox"):
            exchange.set_sandbox_mode(True)
    return exchange


class CcxtMarketData:
    """The MarketData port over a ccxt.async_support exchange."""

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange
        self.name: str = exchange.id

    @classmethod
    def create(cls, exchange_id: str, *, timeout_s: float = 30.0) -> CcxtMarketData:
        """Build the adapter for a public (keyless) exchange by id."""
        return cls(make_ccxt_exchange(exchange_id, timeout_s=timeout_s))

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None, limit: int
    ) -> CandleSeries:
        """Return up to ``limit`` candles with open time >= ``since_ms``, oldest first."""
        with ccxt_errors(f"{self.name} fetch_ohlcv {symbol} {timeframe} since {since_ms}"):
            rows = await self._exchange.fetch_ohlcv(symbol, timeframe, since=since_ms, limit=limit)
        if not rows:
            return CandleSeries.empty(symbol, timeframe)
        try:
            # None values (some venues send them) become NaN so validation names the row.
            arr = np.array([row[:6] for row in rows], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{self.name} fetch_ohlcv {symbol}: malformed rows: {exc}") from exc
        order = np.argsort(arr[:, 0], kind="stable")
        arr = arr[order]
        return CandleSeries.from_columns(
            symbol, timeframe, arr[:, 0].astype(np.int64), *(arr[:, i] for i in range(1, 6))
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._exchange.close()


class CcxtExchange:
    """The Exchange port over a ccxt.async_support exchange (live trading).

    Orders are addressed by our client order id. ``create_order`` is idempotent: after a
    TemporaryError it looks the order up by client id before submitting again, and a venue's
    "duplicate client id" answer returns the existing order.
    """

    def __init__(
        self,
        exchange: Any,
        *,
        clock: Clock,
        market_type: MarketType = MarketType.SPOT,
        attempts: int = 4,
        base_delay_s: float = 0.5,
        max_delay_s: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._exchange = exchange
        self.name: str = exchange.id
        self._clock = clock
        self._market_type = market_type
        self._retry = functools.partial(
            retry,
            attempts=attempts,
            base_delay_s=base_delay_s,
            max_delay_s=max_delay_s,
            sleep=sleep,
            rng=rng or random.Random(),
        )
        self._requests: dict[str, OrderRequest] = {}  # what we asked, to map answers back
        self._leverage: dict[str, int] = {}

    async def create_order(self, request: OrderRequest) -> Order:
        """Submit an order; resubmitting a known client order id returns the existing order."""
        self._requests[request.client_order_id] = request
        submitted = False

        async def attempt() -> Order:
            nonlocal submitted
            if submitted:
                # The last try may have reached the venue before failing: never place it twice.
                existing = await self._find(request.client_order_id, request.symbol)
                if existing is not None:
                    return existing
            submitted = True
            return await self._submit(request)

        return await self._retry(attempt, what=f"create_order {request.client_order_id}")

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        """Cancel an open order and return its final state (a finished order is returned as is)."""
        params = {"clientOrderId": client_order_id}
        context = f"{self.name} cancel_order {client_order_id} {symbol}"
        with ccxt_errors(context, CallKind.ORDER):
            try:
                raw = await self._exchange.cancel_order(None, symbol, params)
            except ccxt_async.OrderNotFound:
                raw = None
        if raw is None or not raw.get("status"):
            # Already filled/canceled, or the venue answered without a status: ask for it.
            return await self.fetch_order(client_order_id, symbol)
        return self._parse(raw, client_order_id)

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        """Return the order's current state; OrderRejected if the venue does not know it."""
        order = await self._find(client_order_id, symbol)
        if order is None:
            raise OrderRejected(
                f"{self.name}: no order with client id {client_order_id} on {symbol}"
            )
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return open orders, optionally of one symbol."""
        with ccxt_errors(f"{self.name} fetch_open_orders {symbol or ''}", CallKind.LOOKUP):
            raws = await self._exchange.fetch_open_orders(symbol)
        return [self._parse(raw, raw.get("clientOrderId") or "") for raw in raws]

    async def fetch_balances(self) -> dict[str, Balance]:
        """Return non-zero balances by asset."""
        with ccxt_errors(f"{self.name} fetch_balance"):
            raw = await self._exchange.fetch_balance()
        return parse_balances(raw)

    async def fetch_positions(self) -> list[Position]:
        """Return open perp positions; spot holdings are balances (entries are in our fills)."""
        if self._market_type is MarketType.SPOT:
            return []
        with ccxt_errors(f"{self.name} fetch_positions"):
            raws = await self._exchange.fetch_positions()
        now_ms = self._clock.now_ms()
        positions = [parse_position(_with_domain_symbol(raw), now_ms=now_ms) for raw in raws]
        return [p for p in positions if p is not None]

    async def start(self) -> None:
        """Load the markets and make one private call, so bad keys stop the process at start
        (``OperationalError``) instead of at its first order."""
        with ccxt_errors(f"{self.name} load_markets"):
            await self._exchange.load_markets()
        await self.fetch_balances()

    async def stop(self) -> None:
        """Close the HTTP session."""
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._exchange.close()

    # --- internals ---------------------------------------------------------------------------

    async def _submit(self, request: OrderRequest) -> Order:
        ccxt_type, price, params = _order_args(request)
        context = f"{self.name} create_order {request.client_order_id} {request.symbol}"
        with ccxt_errors(context, CallKind.ORDER):
            if request.market_type is MarketType.PERP:
                await self._ensure_leverage(request.symbol, request.leverage)
            try:
                raw = await self._exchange.create_order(
                    request.symbol,
                    ccxt_type,
                    request.side.value,
                    float(request.amount),
                    price,
                    params,
                )
            except ccxt_async.InvalidOrder as exc:
                if not _is_duplicate(exc):
                    raise
                existing = await self._find(request.client_order_id, request.symbol)
                if existing is None:
                    raise
                return existing
        return self._parse(raw, request.client_order_id)

    async def _find(self, client_order_id: str, symbol: str) -> Order | None:
        context = f"{self.name} fetch_order {client_order_id} {symbol}"
        with ccxt_errors(context, CallKind.LOOKUP):
            try:
                raw = await self._exchange.fetch_order(
                    None, symbol, {"clientOrderId": client_order_id}
                )
            except ccxt_async.OrderNotFound:
                return None
        return self._parse(raw, client_order_id)

    async def _ensure_leverage(self, symbol: str, leverage: int) -> None:
        if self._leverage.get(symbol) != leverage:
            try:
                await self._exchange.set_leverage(leverage, symbol)
            except ccxt_async.BaseError as exc:
                if not _is_no_change(exc):
                    raise
            self._leverage[symbol] = leverage

    def _parse(self, raw: Mapping[str, Any], client_order_id: str) -> Order:
        cid = raw.get("clientOrderId") or client_order_id
        return parse_order(
            _with_domain_symbol(raw),
            request=self._requests.get(cid),
            client_order_id=cid,
            market_type=self._market_type,
            now_ms=self._clock.now_ms(),
        )


def domain_symbol(symbol: str) -> str:
    """Return our name of a ccxt symbol: a linear perpetual ``BTC/USDT:USDT`` is ``BTC/USDT``
    (the market type says it is a perp; ccxt maps it back with ``defaultType=swap``)."""
    pair, _, settle = symbol.partition(":")
    return pair if settle and pair.endswith(f"/{settle}") else symbol


def _with_domain_symbol(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    symbol = raw.get("symbol")
    if not isinstance(symbol, str) or domain_symbol(symbol) == symbol:
        return raw
    return {**raw, "symbol": domain_symbol(symbol)}


def _order_args(request: OrderRequest) -> tuple[str, float | None, dict[str, Any]]:
    """Return ccxt's (type, price, params) for a request; ccxt maps clientOrderId per venue."""
    params: dict[str, Any] = {"clientOrderId": request.client_order_id}
    if request.reduce_only and request.market_type is MarketType.PERP:
        params["reduceOnly"] = True  # spot venues have no such flag (ccxt refuses it there)
    # OrderRequest guarantees the prices its type needs.
    if request.type is OrderType.LIMIT and request.price is not None:
        return "limit", float(request.price), params
    if request.type is OrderType.STOP_MARKET and request.stop_price is not None:
        params["triggerPrice"] = float(request.stop_price)
    return "market", None, params


def _is_no_change(exc: Exception) -> bool:
    """Return True when the venue refused a setting because it is already in place (Bybit
    answers an unchanged leverage with 110043 "Set leverage not modified", as BadRequest)."""
    return isinstance(exc, ccxt_async.NoChange) or "not modified" in str(exc).lower()


def _is_duplicate(exc: Exception) -> bool:
    return isinstance(exc, ccxt_async.DuplicateOrderId) or "duplicate" in str(exc).lower()
