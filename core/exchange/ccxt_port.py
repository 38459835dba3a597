"""The Exchange port over ccxt's unified API (live trading), without importing ccxt.

``CcxtExchange`` (``core.exchange.ccxt``) is this class plus the one piece that touches ccxt,
``_call``: it calls the ccxt client, maps ccxt's errors to ours in one place and hands back the
answers the port handles itself (an order the venue does not know, a client id already taken,
a setting already in place, a call the venue lacks) as a ``Miss``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Iterable, Mapping
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any

from core.clock import Clock
from core.domain.enums import MarketType, OrderType
from core.domain.market_rules import MarketRules
from core.domain.orders import ZERO, Order, OrderRequest
from core.domain.portfolio import Balance, Position
from core.errors import DataError, DependencyError, OrderRejected
from core.exchange.ccxt_fees import fee_entries, quote_fee, schedule_fee, trade_fees
from core.exchange.ccxt_markets import (
    TICK_SIZE,
    Market,
    SymbolNames,
    contract_size,
    market_rules,
    resolve_market,
)
from core.exchange.ccxt_orders import (
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


class CallKind(StrEnum):
    """What a ccxt call is for, which decides what a venue's refusal of it means."""

    DATA = "data"  # candles, markets, balances, positions: a refused request is bad input
    ORDER = "order"  # placing or cancelling an order: a refusal is the venue saying no to it
    LOOKUP = "lookup"  # asking about an order: a refusal says nothing about the order itself


class Miss(Enum):
    """An answer of the venue the port handles itself instead of raising it."""

    NOT_FOUND = "not found"  # the venue does not know the order (any more)
    DUPLICATE = "duplicate"  # the client id is taken: the order exists
    NO_CHANGE = "no change"  # the setting is already in place
    NOT_SUPPORTED = "not supported"  # the venue (or its ccxt class) has no such call


_NOT_FOUND = frozenset({Miss.NOT_FOUND})
_DUPLICATE = frozenset({Miss.DUPLICATE})
_NO_CHANGE = frozenset({Miss.NO_CHANGE})
_NOT_SUPPORTED = frozenset({Miss.NOT_SUPPORTED})


class CcxtPort:
    """The Exchange port over ccxt's unified API; ``CcxtExchange`` adds the ccxt calls."""

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
            on_failure=self._count_fault,
        )
        self.fault_count = 0  # the venue's temporary failures so far (timeouts, 429, 5xx ...)
        self._requests: dict[str, OrderRequest] = {}  # what we asked, to map answers back
        self._leverage: dict[str, int] = {}
        self._names = SymbolNames()
        self._stops_apart = stops_apart(self.name, market_type)
        self._stops: set[str] = set()  # client ids of stops, where those live apart
        self._fees: dict[tuple[str, Decimal], Decimal] = {}  # trades' fee by (order, filled)
        has = getattr(exchange, "has", None) or {}
        self._order_trades_call = bool(has.get("fetchOrderTrades"))

    def _count_fault(self, _error: Exception) -> None:
        self.fault_count += 1

    async def create_order(self, request: OrderRequest) -> Order:
        """Submit an order; resubmitting a known client order id returns the existing order."""
        self._requests[request.client_order_id] = request
        if request.type is OrderType.STOP_MARKET and self._stops_apart:
            self._stops.add(request.client_order_id)
        submitted = False

        async def attempt() -> Order:
            nonlocal submitted
            # An entry is looked up before it is ever sent: Binance keeps a client id unique
            # among open orders only, so an entry sent again after its order filled (a crash
            # and restart) would open a second position. (Exits are reduce-only: one sent
            # twice cannot add exposure, so they skip the extra request.) After a failed try,
            # every order is looked up: it may have reached the venue before failing.
            if submitted or not request.reduce_only:
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
            args = (None, market["symbol"], lookup_params(client_order_id, stop=stop))
            raw = await self._call(
                "cancel_order", *args, kind=CallKind.ORDER, context=context, handles=_NOT_FOUND
            )
            if raw is Miss.NOT_FOUND:
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
            args = (venue_symbol, None, None, params)
            raws = await self._call(
                "fetch_open_orders", *args, kind=CallKind.LOOKUP, context=context
            )
            for raw in raws:
                cid = raw.get("clientOrderId") or ""
                if stop:
                    self._stops.add(cid)
                # ccxt names every order by one of its markets; the fallback only keeps a
                # stray answer readable (contract size 1, no fee schedule).
                market = markets.get(raw.get("symbol")) or {"symbol": raw.get("symbol")}
                orders.append(await self._order_from(raw, cid, market, stop=stop))
        return orders

    async def fetch_balances(self) -> dict[str, Balance]:
        """Return non-zero balances by asset (asked again after a timeout, a rate limit or a
        garbled answer, as every read of the account is: it changes nothing)."""
        raw = await self._read("fetch_balance")
        return parse_balances(raw)

    async def fetch_positions(self) -> list[Position]:
        """Return open perp positions; spot holdings are balances (entries are in our fills)."""
        if self._market_type is MarketType.SPOT:
            return []
        raws = await self._read("fetch_positions")
        now_ms = self._clock.now_ms()
        positions = [parse_position(self._ours(raw), now_ms=now_ms) for raw in raws]
        return [p for p in positions if p is not None]

    async def venue_symbol(self, symbol: str) -> str:
        """Return ccxt's name of the market our ``symbol`` trades on (``BTC/USDT:USDT`` for a
        perp's ``BTC/USDT``); ConfigError if the venue lists none."""
        return str((await self._market(symbol))["symbol"])

    async def market_rules(self, symbol: str) -> MarketRules:
        """Return the venue's precision and limits of our ``symbol`` (``load_market_rules``)."""
        return (await self.load_market_rules([symbol]))[symbol]

    async def load_market_rules(self, symbols: Iterable[str]) -> dict[str, MarketRules]:
        """Return the venue's precision and limits of our ``symbols``, by our names.

        They come from the venue's markets; a perp's leverage cap, where its market states
        none (Binance), from the venue's leverage brackets in one private request (None if
        that fails). ConfigError for a symbol the venue does not list. Load them once, at
        start: markets change rarely and the brackets cost a request.
        """
        markets = {symbol: await self._market(symbol) for symbol in symbols}
        uncapped = [
            str(m["symbol"])
            for m in markets.values()
            if ((m.get("limits") or {}).get("leverage") or {}).get("max") is None
        ]
        caps = await self._leverage_caps(uncapped)
        mode = getattr(self._exchange, "precisionMode", TICK_SIZE)
        return {
            symbol: market_rules(
                market,
                symbol=symbol,
                precision_mode=mode,
                venue=self.name,
                max_leverage=caps.get(str(market["symbol"])),
            )
            for symbol, market in markets.items()
        }

    async def start(self) -> None:
        """Load the markets, resolve the declared symbols and make one private call, so an
        unknown symbol (``ConfigError``) or bad keys (``OperationalError``) stop the process at
        start instead of at its first order. A venue that times out, rate limits or answers
        garbage is asked again (with backoff, as an order is): a blip is no reason not to start."""

        async def load() -> Any:
            return await self._call("load_markets", context=f"{self.name} load_markets")

        await self._retry(load, what=f"{self.name} load_markets")
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

    async def _read(self, method: str) -> Any:
        """Call ccxt's account read ``method`` (no arguments), with the bounded retries."""
        context = f"{self.name} {method}"

        async def ask() -> Any:
            return await self._call(method, context=context)

        return await self._retry(ask, what=context)

    async def _call(
        self,
        method: str,
        *args: Any,
        kind: CallKind = CallKind.DATA,
        context: str,
        handles: frozenset[Miss] = frozenset(),
    ) -> Any:
        """Call ccxt's ``method``; return a ``Miss`` among ``handles`` instead of raising it,
        and raise our error for anything else the venue answered."""
        raise NotImplementedError  # CcxtExchange, the one place that knows ccxt's errors

    async def _markets(self) -> Mapping[str, Market]:
        markets = getattr(self._exchange, "markets", None)
        if not markets:
            markets = await self._call("load_markets", context=f"{self.name} load_markets")
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
        if request.market_type is MarketType.PERP:
            await self._ensure_leverage(venue_symbol, request.leverage, context)
        args = (venue_symbol, ccxt_type, request.side.value, float(amount), price, params)
        raw = await self._call(
            "create_order", *args, kind=CallKind.ORDER, context=context, handles=_DUPLICATE
        )
        if raw is Miss.DUPLICATE:
            existing = await self._find(request.client_order_id, request.symbol)
            if existing is None:
                raise OrderRejected(f"{context}: the venue says its client id is taken")
            return existing
        stop = request.client_order_id in self._stops
        return await self._order_from(raw, request.client_order_id, market, stop=stop)

    async def _find(self, client_order_id: str, symbol: str) -> Order | None:
        market = await self._market(symbol)
        context = f"{self.name} fetch_order {client_order_id} {symbol}"
        for stop in self._kinds(client_order_id):
            args = (None, market["symbol"], lookup_params(client_order_id, stop=stop))
            raw = await self._call(
                "fetch_order", *args, kind=CallKind.LOOKUP, context=context, handles=_NOT_FOUND
            )
            if raw is Miss.NOT_FOUND:
                continue
            if stop:
                self._stops.add(client_order_id)
            return await self._order_from(raw, client_order_id, market, stop=stop)
        return None

    async def _order_from(
        self, raw: Mapping[str, Any], client_order_id: str, market: Market, *, stop: bool
    ) -> Order:
        """Return the Order of a ccxt answer, with its fee; a triggered stop's state (and
        fills) are those of the order it became."""
        fills_id = str(raw.get("id") or "")
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
            fills_id = actual_id or fills_id
        order = self._parse(raw, client_order_id, market)
        return order.with_(fee_paid=await self._fee(order, raw, market, fills_id))

    async def _fee(
        self, order: Order, raw: Mapping[str, Any], market: Market, fills_id: str
    ) -> Decimal:
        """Return the fee ``order`` paid so far, in the quote: as the venue's order states it,
        else from the order's trades, else (what those do not cover) the venue's schedule."""
        entries = fee_entries(raw)
        stated = quote_fee(entries, order.symbol, order.average_price) if entries else None
        if stated is not None:
            return stated  # a fee in a third asset (BNB) is no figure in the quote: go on
        if order.filled <= ZERO:
            return ZERO
        key = (order.client_order_id, order.filled)
        if key in self._fees:
            return self._fees[key]
        trades = await self._order_trades(fills_id, market)
        fee, covered = trade_fees(trades or [], fills_id, order.symbol, contract_size(market))
        missing = order.filled - covered
        if missing <= ZERO:
            self._fees[key] = fee  # final for this much filled: not asked for again
            return fee
        price = order.average_price or order.request.price or order.request.stop_price
        estimate = (
            None if price is None else schedule_fee(market, missing, price, order.request.type)
        )
        if estimate is None:
            log.error(
                "%s: fee of %s of order %s unknown (no trades, no fee schedule); booked %s",
                self.name,
                missing,
                order.client_order_id,
                fee,
            )
            return fee
        log.warning(
            "%s: fee of %s of order %s taken from the venue's fee schedule (%s): its trades "
            "do not show it",
            self.name,
            missing,
            order.client_order_id,
            estimate,
        )
        return fee + estimate

    async def _leverage_caps(self, venue_symbols: list[str]) -> dict[str, int]:
        """Return the most leverage each perp allows (its first bracket), by ccxt symbol;
        empty when the venue has no brackets to give."""
        has = getattr(self._exchange, "has", None) or {}
        if not venue_symbols or self._market_type is MarketType.SPOT:
            return {}
        if not has.get("fetchLeverageTiers"):
            return {}
        context = f"{self.name} fetch_leverage_tiers"

        async def ask() -> Any:
            return await self._call(
                "fetch_leverage_tiers", venue_symbols, context=context, handles=_NOT_SUPPORTED
            )

        try:
            tiers = await self._retry(ask, what=context)
        except (DependencyError, DataError) as exc:
            log.warning("%s: leverage caps unknown: %s", self.name, exc)
            return {}
        if tiers is Miss.NOT_SUPPORTED:
            return {}
        return {
            symbol: int(max(tier["maxLeverage"] for tier in symbol_tiers))
            for symbol, symbol_tiers in tiers.items()
            if symbol in venue_symbols and symbol_tiers
        }

    async def _order_trades(self, order_id: str, market: Market) -> list[Any] | None:
        """Return the venue's trades of one order; None when it gives none (no such call, a
        refusal, or failures past the retries)."""
        symbol = market["symbol"]
        context = f"{self.name} trades of order {order_id} {symbol}"
        has = getattr(self._exchange, "has", None) or {}
        calls: list[tuple[str, tuple[Any, ...]]] = []
        if self._order_trades_call:
            calls.append(("fetch_order_trades", (order_id, symbol)))
        if has.get("fetchMyTrades"):
            # Binance USD-M: fetch_order_trades is spot-only; userTrades filters by orderId.
            calls.append(("fetch_my_trades", (symbol, None, None, {"orderId": order_id})))
        for method, args in calls:

            async def ask(method: str = method, args: tuple[Any, ...] = args) -> Any:
                return await self._call(
                    method, *args, kind=CallKind.LOOKUP, context=context, handles=_NOT_SUPPORTED
                )

            try:
                trades = await self._retry(ask, what=context)
            except DependencyError as exc:
                log.warning("%s: %s", context, exc)
                return None
            if trades is not Miss.NOT_SUPPORTED:
                return list(trades)
            if method == "fetch_order_trades":
                self._order_trades_call = False  # not for these markets: ask the other way
        return None

    async def _by_id(self, order_id: str, market: Market) -> Mapping[str, Any] | None:
        """Return a regular order by the venue's id, None if it does not know it."""
        context = f"{self.name} fetch_order {order_id}"
        raw = await self._call(
            "fetch_order",
            order_id,
            market["symbol"],
            kind=CallKind.LOOKUP,
            context=context,
            handles=_NOT_FOUND,
        )
        return None if raw is Miss.NOT_FOUND else raw

    async def _ensure_leverage(self, venue_symbol: str, leverage: int, context: str) -> None:
        if self._leverage.get(venue_symbol) != leverage:
            # An unchanged leverage may be refused as such (Bybit 110043): it is set.
            await self._call(
                "set_leverage",
                leverage,
                venue_symbol,
                kind=CallKind.ORDER,
                context=context,
                handles=_NO_CHANGE,
            )
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
