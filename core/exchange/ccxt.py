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
import logging
import random
from collections.abc import Iterable, Iterator, Mapping
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
from core.exchange.ccxt_markets import (
    Market,
    SymbolNames,
    contract_size,
    domain_symbol,
    resolve_market,
)
from core.exchange.ccxt_orders import (
    is_duplicate_message,
    is_not_found_message,
    is_triggered,
    list_params,
    lookup_params,
    merge_triggered,
    order_args,
    stops_apart,
    triggered_order_id,
)
from core.exchange.ccxt_parse import parse_balances, parse_order, parse_position
from core.retry import Sleep, retry

log = logging.getLogger(__name__)

__all__ = [
    "CallKind",
    "CcxtExchange",
    "CcxtMarketData",
    "ccxt_errors",
    "domain_symbol",
    "make_ccxt_exchange",
    "map_ccxt_error",
]


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

    def __init__(self, exchange: Any, *, market_type: MarketType | None = None) -> None:
        self._exchange = exchange
        self.name: str = exchange.id
        if market_type is None:  # as make_ccxt_exchange configured the client
            options = getattr(exchange, "options", None) or {}
            swap = options.get("defaultType") == "swap"
            market_type = MarketType.PERP if swap else MarketType.SPOT
        self._market_type = market_type
        self._venue_symbols: dict[str, str] = {}

    @classmethod
    def create(cls, exchange_id: str, *, timeout_s: float = 30.0) -> CcxtMarketData:
        """Build the adapter for a public (keyless) exchange by id."""
        return cls(make_ccxt_exchange(exchange_id, timeout_s=timeout_s))

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None, limit: int
    ) -> CandleSeries:
        """Return up to ``limit`` candles with open time >= ``since_ms``, oldest first (a perp's
        from the perpetual's market, named as asked)."""
        with ccxt_errors(f"{self.name} fetch_ohlcv {symbol} {timeframe} since {since_ms}"):
            venue_symbol = await self._venue_symbol(symbol)
            rows = await self._exchange.fetch_ohlcv(
                venue_symbol, timeframe, since=since_ms, limit=limit
            )
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

    async def _venue_symbol(self, symbol: str) -> str:
        if self._market_type is MarketType.SPOT:
            return symbol  # ccxt's spot names are ours: no markets to load
        if symbol not in self._venue_symbols:
            markets = self._exchange.markets or await self._exchange.load_markets()
            market = resolve_market(markets, symbol, self._market_type, self.name)
            self._venue_symbols[symbol] = str(market["symbol"])
        return self._venue_symbols[symbol]


class CcxtExchange:
    """The Exchange port over a ccxt.async_support exchange (live trading).

    Orders are addressed by our client order id. ``create_order`` is idempotent: after a
    TemporaryError it looks the order up by client id before submitting again, and a venue's
    "duplicate client id" answer returns the existing order.

    Symbols are ours: each is resolved through the venue's markets (a perp's ``BTC/USDT`` is
    ccxt's ``BTC/USDT:USDT`` on every venue) and what the venue reports comes back under the
    name the caller used. Amounts are base units (a venue counting contracts gets contracts).
    ``symbols`` are resolved at ``start``, so a name the venue does not list stops the process
    there (``ConfigError``) instead of at its first order.
    """

    def __init__(
        self,
        exchange: Any,
        *,
        clock: Clock,
        market_type: MarketType = MarketType.SPOT,
        symbols: Iterable[str] = (),
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
        self._symbols = tuple(symbols)
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
        self._names = SymbolNames()
        self._stops_apart = stops_apart(self.name, market_type)
        self._stops: set[str] = set()  # client ids of stops, where those live apart

    async def create_order(self, request: OrderRequest) -> Order:
        """Submit an order; resubmitting a known client order id returns the existing order."""
        self._requests[request.client_order_id] = request
        if request.type is OrderType.STOP_MARKET and self._stops_apart:
            self._stops.add(request.client_order_id)
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
        market = await self._market(symbol)
        context = f"{self.name} cancel_order {client_order_id} {symbol}"
        for stop in self._kinds(client_order_id):
            with ccxt_errors(context, CallKind.ORDER):
                try:
                    raw = await self._exchange.cancel_order(
                        None, market["symbol"], lookup_params(client_order_id, stop=stop)
                    )
                except ccxt_async.BaseError as exc:
                    if not _is_not_found(exc):
                        raise
                    continue  # not there, or already ended
            if raw.get("status"):
                return await self._order_from(raw, client_order_id, market, stop=stop)
            break  # canceled, answered without a status (Binance's algo service)
        return await self.fetch_order(client_order_id, symbol)

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        """Return the order's current state; OrderRejected if the venue does not know it."""
        order = await self._find(client_order_id, symbol)
        if order is None:
            raise OrderRejected(
                f"{self.name}: no order with client id {client_order_id} on {symbol}"
            )
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return open orders (stops included), optionally of one symbol."""
        venue_symbol = None if symbol is None else (await self._market(symbol))["symbol"]
        markets = await self._markets()
        orders: list[Order] = []
        for stop in (False, True) if self._stops_apart else (False,):
            params = list_params(self._market_type, symbol_given=symbol is not None, stop=stop)
            context = f"{self.name} fetch_open_orders {symbol or ''}"
            with ccxt_errors(context, CallKind.LOOKUP):
                raws = await self._exchange.fetch_open_orders(venue_symbol, None, None, params)
            for raw in raws:
                cid = raw.get("clientOrderId") or ""
                if stop:
                    self._stops.add(cid)
                market = markets.get(raw.get("symbol"), {})
                orders.append(await self._order_from(raw, cid, market, stop=stop))
        return orders

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
        positions = [parse_position(self._ours(raw), now_ms=now_ms) for raw in raws]
        return [p for p in positions if p is not None]

    async def venue_symbol(self, symbol: str) -> str:
        """Return ccxt's name of the market our ``symbol`` trades on (``BTC/USDT:USDT`` for a
        perp's ``BTC/USDT``); ConfigError if the venue lists none."""
        return str((await self._market(symbol))["symbol"])

    async def start(self) -> None:
        """Load the markets, resolve the declared symbols and make one private call, so an
        unknown symbol (``ConfigError``) or bad keys (``OperationalError``) stop the process at
        start instead of at its first order."""
        with ccxt_errors(f"{self.name} load_markets"):
            await self._exchange.load_markets()
        for symbol in self._symbols:
            await self._market(symbol)
        await self.fetch_balances()

    async def stop(self) -> None:
        """Close the HTTP session."""
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._exchange.close()

    # --- internals ---------------------------------------------------------------------------

    async def _markets(self) -> Mapping[str, Market]:
        markets = getattr(self._exchange, "markets", None)
        if not markets:
            with ccxt_errors(f"{self.name} load_markets"):
                markets = await self._exchange.load_markets()
        return markets or {}

    async def _market(self, symbol: str) -> Market:
        """Return the venue's market of our ``symbol``, remembering our name of it."""
        markets = await self._markets()
        known = self._names.venue(symbol)
        if known is not None and known in markets:
            return markets[known]
        market = resolve_market(markets, symbol, self._market_type, self.name)
        self._names.remember(symbol, str(market["symbol"]))
        return market

    def _kinds(self, client_order_id: str) -> tuple[bool, ...]:
        """Return where to ask for an order, in turn: on the stops' endpoint (True) or the
        regular one. Where stops live apart, an order we know nothing of (placed before a
        restart) is asked for on both before it counts as unknown."""
        if not self._stops_apart:
            return (False,)
        if client_order_id in self._stops:
            return (True, False)
        request = self._requests.get(client_order_id)
        return (False,) if request is not None else (False, True)

    async def _submit(self, request: OrderRequest) -> Order:
        market = await self._market(request.symbol)
        venue_symbol = market["symbol"]
        ccxt_type, price, params = order_args(request)
        amount = request.amount / contract_size(market)
        context = f"{self.name} create_order {request.client_order_id} {request.symbol}"
        with ccxt_errors(context, CallKind.ORDER):
            if request.market_type is MarketType.PERP:
                await self._ensure_leverage(venue_symbol, request.leverage)
            try:
                raw = await self._exchange.create_order(
                    venue_symbol, ccxt_type, request.side.value, float(amount), price, params
                )
            except ccxt_async.BaseError as exc:
                if not _is_duplicate(exc):
                    raise
                existing = await self._find(request.client_order_id, request.symbol)
                if existing is None:
                    raise
                return existing
        stop = request.client_order_id in self._stops
        return await self._order_from(raw, request.client_order_id, market, stop=stop)

    async def _find(self, client_order_id: str, symbol: str) -> Order | None:
        market = await self._market(symbol)
        context = f"{self.name} fetch_order {client_order_id} {symbol}"
        for stop in self._kinds(client_order_id):
            with ccxt_errors(context, CallKind.LOOKUP):
                try:
                    raw = await self._exchange.fetch_order(
                        None, market["symbol"], lookup_params(client_order_id, stop=stop)
                    )
                except ccxt_async.BaseError as exc:
                    if not _is_not_found(exc):
                        raise
                    continue
            if stop:
                self._stops.add(client_order_id)
            return await self._order_from(raw, client_order_id, market, stop=stop)
        return None

    async def _order_from(
        self, raw: Mapping[str, Any], client_order_id: str, market: Market, *, stop: bool
    ) -> Order:
        """Return the Order of a ccxt answer; a triggered stop's state is its order's."""
        if stop and is_triggered(raw):
            actual_id = triggered_order_id(raw)
            actual = None if actual_id is None else await self._by_id(actual_id, market)
            if actual is None:
                log.warning(
                    "%s: stop %s triggered, its order is not visible yet: still working",
                    self.name,
                    client_order_id,
                )
            raw = merge_triggered(raw, actual)
        return self._parse(raw, client_order_id, market)

    async def _by_id(self, order_id: str, market: Market) -> Mapping[str, Any] | None:
        """Return a regular order by the venue's id, None if it does not know it."""
        with ccxt_errors(f"{self.name} fetch_order {order_id}", CallKind.LOOKUP):
            try:
                raw: Mapping[str, Any] = await self._exchange.fetch_order(
                    order_id, market["symbol"]
                )
            except ccxt_async.OrderNotFound:
                return None
        return raw

    async def _ensure_leverage(self, venue_symbol: str, leverage: int) -> None:
        if self._leverage.get(venue_symbol) != leverage:
            try:
                await self._exchange.set_leverage(leverage, venue_symbol)
            except ccxt_async.BaseError as exc:
                if not _is_no_change(exc):
                    raise
            self._leverage[venue_symbol] = leverage

    def _ours(self, raw: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return ``raw`` with the venue's symbol replaced by our name of it."""
        symbol = raw.get("symbol")
        if not isinstance(symbol, str) or self._names.ours(symbol) == symbol:
            return raw
        return {**raw, "symbol": self._names.ours(symbol)}

    def _parse(self, raw: Mapping[str, Any], client_order_id: str, market: Market) -> Order:
        cid = raw.get("clientOrderId") or client_order_id
        return parse_order(
            self._ours(raw),
            request=self._requests.get(cid),
            client_order_id=cid,
            market_type=self._market_type,
            now_ms=self._clock.now_ms(),
            contract_size=contract_size(market),
        )


def _is_no_change(exc: Exception) -> bool:
    """Return True when the venue refused a setting because it is already in place (Bybit
    answers an unchanged leverage with 110043 "Set leverage not modified", as BadRequest)."""
    return isinstance(exc, ccxt_async.NoChange) or "not modified" in str(exc).lower()


def _is_duplicate(exc: Exception) -> bool:
    """Return True when the venue refused an order because its client id is taken."""
    if isinstance(exc, ccxt_async.DuplicateOrderId):
        return True
    refused = isinstance(exc, ccxt_async.InvalidOrder | ccxt_async.BadRequest)
    return refused and is_duplicate_message(str(exc))


def _is_not_found(exc: Exception) -> bool:
    """Return True when the venue does not know the order (any more)."""
    return isinstance(exc, ccxt_async.OrderNotFound) or (
        isinstance(exc, ccxt_async.BadRequest) and is_not_found_message(str(exc))
    )
