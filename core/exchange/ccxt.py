"""The ccxt adapters: public candles (``CcxtMarketData``) and trading (``CcxtExchange``).

This is the only module that imports ccxt: it builds ccxt clients, calls them and maps ccxt's
exceptions to ours in one place (:func:`map_ccxt_error`, by what the call is for). The rest
needs no ccxt import and lives beside it: the trading port's logic (``ccxt_port``), symbols and
market rules (``ccxt_markets``), where each venue keeps orders (``ccxt_orders``), fees
(``ccxt_fees``) and ccxt's dicts as domain values (``ccxt_parse``). Both adapters take an
already built ccxt exchange object, so tests can point it at a local server (rewrite
``exchange.urls['api']``, call ``set_markets``) or pass a fake; :func:`make_ccxt_exchange`
builds the real one from an exchange id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import ccxt.async_support as ccxt_async
import numpy as np

from core.domain.enums import MarketType
from core.domain.market import CandleSeries
from core.domain.market_rules import MarketRules
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
from core.exchange.ccxt_markets import TICK_SIZE, domain_symbol, market_rules, resolve_market
from core.exchange.ccxt_orders import is_duplicate_message, is_not_found_message
from core.exchange.ccxt_port import CallKind, CcxtPort, Miss
from core.exchange.ccxt_universe import candidates_from
from core.market.universe import Candidate

__all__ = [
    "CallKind",
    "CcxtExchange",
    "CcxtMarketData",
    "ccxt_errors",
    "domain_symbol",
    "make_ccxt_exchange",
    "map_ccxt_error",
]


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
    """Build a ccxt.async_support exchange with rate limiting on; raise ConfigError if the
    venue is unknown, or ``sandbox`` is asked of one without a testnet."""
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
    _refuse_cut_json(exchange)
    if sandbox:
        # About half of ccxt's venues have no testnet: ccxt then raises NotSupported, or a
        # TypeError when the venue lists its test URL as None. Both mean a setting to change.
        if not exchange.urls.get("test"):
            raise ConfigError(
                f"{exchange_id} has no testnet in ccxt: set QT__EXCHANGE__SANDBOX=false (paper "
                "orders need none) or pick a venue with one, e.g. binance, bybit, okx"
            )
        with ccxt_errors(f"{exchange_id} sandbox"):
            exchange.set_sandbox_mode(True)
    return exchange


def _refuse_cut_json(exchange: Any) -> None:
    """Make an answer that looks like JSON but does not parse (cut short, garbled) a ccxt
    ``BadResponse`` (ours: ``TemporaryError``, asked again, an order looked up first).

    ccxt hands such a body on as a string, and the unified method then fails parsing it with
    an ``AttributeError`` or ``TypeError`` that no error mapping sees: at start that ended the
    process, on an order it failed the symbol as if our code were wrong.
    """
    plain = exchange.parse_json

    def parse_json(http_response: Any) -> Any:
        parsed = plain(http_response)
        if parsed is None and exchange.is_json_encoded_object(http_response):
            raise ccxt_async.BadResponse(
                f"{exchange.id}: malformed answer {str(http_response)[:60]!r}"
            )
        return parsed

    exchange.parse_json = parse_json


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

    async def load_market_rules(self, symbols: Iterable[str]) -> dict[str, MarketRules]:
        """Return the venue's precision and limits of our ``symbols`` from its public markets
        (a perp's leverage cap only where its market states one). ConfigError for a symbol
        the venue does not list."""
        with ccxt_errors(f"{self.name} load_markets"):
            markets = await self._exchange.load_markets()
        mode = getattr(self._exchange, "precisionMode", TICK_SIZE)
        out: dict[str, MarketRules] = {}
        for symbol in symbols:
            market = resolve_market(markets, symbol, self._market_type, self.name)
            out[symbol] = market_rules(market, symbol=symbol, precision_mode=mode, venue=self.name)
        return out

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._exchange.close()

    async def universe_candidates(self) -> list[Candidate]:
        """Return every market of the traded type with its 24 h quote volume, last price,
        quote and listing (``ccxt_universe``): fresh markets, then every ticker."""
        with ccxt_errors(f"{self.name} universe: load_markets, fetch_tickers"):
            markets = await self._exchange.load_markets(True)  # listings change
            tickers = await self._exchange.fetch_tickers()
        if not isinstance(markets, Mapping) or not isinstance(tickers or {}, Mapping):
            raise DataError(
                f"{self.name} universe: markets and tickers must be mappings, were "
                f"{type(markets).__name__} and {type(tickers).__name__}"
            )
        return candidates_from(markets, tickers or {}, self._market_type)

    async def listed_since(self, symbol: str, since_ms: int) -> int | None:
        """Return the open time of the first daily candle of ``symbol`` at or after
        ``since_ms`` (None if there is none): when the venue does not say when a market was
        listed, its first candle does."""
        series = await self.fetch_ohlcv(symbol, "1d", since_ms, 1)
        return int(series.ts_ms[0]) if len(series) else None

    async def _venue_symbol(self, symbol: str) -> str:
        if self._market_type is MarketType.SPOT:
            return symbol  # ccxt's spot names are ours: no markets to load
        if symbol not in self._venue_symbols:
            markets = self._exchange.markets or await self._exchange.load_markets()
            market = resolve_market(markets, symbol, self._market_type, self.name)
            self._venue_symbols[symbol] = str(market["symbol"])
        return self._venue_symbols[symbol]


class CcxtExchange(CcxtPort):
    """The Exchange port over a ccxt.async_support exchange (live trading).

    Orders are addressed by our client order id. ``create_order`` is idempotent: after a
    TemporaryError it looks the order up by client id before submitting again, and a venue's
    "duplicate client id" answer returns the existing order. Stops are reached where ccxt put
    them (Binance USD-M: the algo-order service) and a triggered stop reports its order's fills.

    Symbols are ours: each is resolved through the venue's markets (a perp's ``BTC/USDT`` is
    ccxt's ``BTC/USDT:USDT`` on every venue) and what the venue reports comes back under the
    name the caller used. Amounts are base units (a venue counting contracts gets contracts).
    ``symbols`` are resolved at ``start``, so a name the venue does not list stops the process
    there (``ConfigError``) instead of at its first order.
    """

    async def _call(
        self,
        method: str,
        *args: Any,
        kind: CallKind = CallKind.DATA,
        context: str,
        handles: frozenset[Miss] = frozenset(),
    ) -> Any:
        """Call ccxt's ``method``; return a ``Miss`` among ``handles`` instead of raising it,
        and raise our error (``map_ccxt_error``) for anything else the venue answered."""
        with ccxt_errors(context, kind):
            try:
                return await getattr(self._exchange, method)(*args)
            except ccxt_async.BaseError as exc:
                miss = _miss(exc)
                if miss is not None and miss in handles:
                    return miss
                raise


def _miss(exc: Exception) -> Miss | None:
    """Return what a ccxt error means when it is an answer the port handles itself."""
    text = str(exc)
    if isinstance(exc, ccxt_async.DuplicateOrderId) or (
        isinstance(exc, ccxt_async.InvalidOrder | ccxt_async.BadRequest)
        and is_duplicate_message(text)
    ):
        return Miss.DUPLICATE
    if isinstance(exc, ccxt_async.OrderNotFound) or (
        isinstance(exc, ccxt_async.BadRequest) and is_not_found_message(text)
    ):
        return Miss.NOT_FOUND
    # Bybit answers an unchanged leverage with 110043 "Set leverage not modified" (BadRequest).
    if isinstance(exc, ccxt_async.NoChange) or "not modified" in text.lower():
        return Miss.NO_CHANGE
    if isinstance(exc, ccxt_async.NotSupported):
        return Miss.NOT_SUPPORTED
    return None
