"""Our symbols on a venue's markets, read from ccxt's market dicts (no ccxt import here).

A USDT-margined perpetual is ``BTC/USDT`` to us, the market type saying it is a perp; a
configured ccxt name ``BTC/USDT:USDT`` works as well. ccxt itself resolves the bare pair to the
perpetual only on Binance (with ``defaultType=swap``): Bybit and OKX give the spot market. So
the adapter looks every name up in the venue's markets here, and reports what comes back under
the name the caller used.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from core.domain.enums import MarketType
from core.domain.market_rules import MarketRules
from core.errors import ConfigError, DataError

Market = Mapping[str, Any]

# ccxt's precision modes (``ccxt.base.decimal_to_precision``), the values of an exchange's
# ``precisionMode``; a test pins them against ccxt's own.
DECIMAL_PLACES = 2  # precision is a count of decimals: 3 means a step of 0.001
SIGNIFICANT_DIGITS = 3  # a count of significant digits: the step depends on the value
TICK_SIZE = 4  # precision is the step itself: 0.001 (Binance, Bybit, OKX)


def domain_symbol(symbol: str) -> str:
    """Return our default name of a ccxt symbol: a linear perpetual ``BTC/USDT:USDT`` is
    ``BTC/USDT`` (the market type says it is a perp); anything else keeps its name."""
    pair, _, settle = symbol.partition(":")
    return pair if settle and pair.endswith(f"/{settle}") else symbol


def resolve_market(
    markets: Mapping[str, Market], symbol: str, market_type: MarketType, venue: str
) -> Market:
    """Return the venue's market that ``symbol`` trades on for ``market_type``.

    Spot: the spot market of that name. Perp: the linear perpetual settled in the quote
    (``BTC/USDT`` and ``BTC/USDT:USDT`` both name ``BTC/USDT:USDT``). ConfigError if the venue
    lists none: nothing can be traded under that name.
    """
    if market_type is MarketType.SPOT:
        market = markets.get(symbol)
        if market is None or market.get("spot") is not True:
            raise ConfigError(f"{venue} lists no spot market {symbol}")
        return market
    pair, _, settle = symbol.partition(":")
    base, _, quote = pair.partition("/")
    if not settle or settle == quote:
        market = markets.get(f"{pair}:{quote}")
        if market is not None and _is_linear_perp(market):
            return market
        # A venue whose ccxt names do not follow BASE/QUOTE:SETTLE: match on the currencies.
        for market in markets.values():
            same = (market.get("base"), market.get("quote"), market.get("settle"))
            if _is_linear_perp(market) and same == (base, quote, quote):
                return market
    raise ConfigError(
        f"{venue} lists no linear perpetual for {symbol} (looked for {pair}:{quote}); "
        "only USDT-margined style perpetuals settled in their quote are traded"
    )


def _is_linear_perp(market: Market) -> bool:
    return market.get("swap") is True and market.get("linear") is True


def contract_size(market: Market) -> Decimal:
    """Return how many base units one of the market's amount units is (1 for spot, and for
    perps counted in coins; OKX's BTC-USDT-SWAP counts contracts of 0.01 BTC)."""
    size = market.get("contractSize")
    return Decimal(str(size)) if size else Decimal(1)


def market_rules(
    market: Market,
    *,
    symbol: str,
    precision_mode: int,
    venue: str,
    max_leverage: int | None = None,
) -> MarketRules:
    """Return the venue's rules of ``market`` for our ``symbol``, in base units.

    ``max_leverage`` stands in when the market states no cap (Binance keeps it in its leverage
    brackets). ConfigError for precision in significant digits (no fixed step to give),
    DataError for a market that states no precision.
    """
    try:
        size = contract_size(market)
        precision = market.get("precision") or {}
        limits = market.get("limits") or {}
        stated_cap = _limit(limits, "leverage", "max")
        leverage = int(stated_cap) if stated_cap is not None else max_leverage
        step = _step(precision.get("amount"), precision_mode, "amount", market, venue) * size
        return MarketRules(
            symbol=symbol,
            amount_step=step,
            price_tick=_step(precision.get("price"), precision_mode, "price", market, venue),
            min_amount=(_limit(limits, "amount", "min") or Decimal(0)) * size,
            min_notional=_limit(limits, "cost", "min") or Decimal(0),
            max_leverage=leverage,
        )
    # A precision of 0 or below, text or NaN where a number belongs: the venue's answer is
    # unusable (a paper run falls back to other rules; live refuses to start).
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise DataError(f"{venue} states unusable market rules for {symbol}: {exc}") from exc


def _step(value: Any, mode: int, what: str, market: Market, venue: str) -> Decimal:
    name = market.get("symbol")
    if value is None:
        raise DataError(f"{venue} states no {what} precision for {name}")
    if mode == TICK_SIZE:
        return Decimal(str(value))  # via str: 0.1 stays 0.1, 1e-05 is 0.00001
    if mode == DECIMAL_PLACES:
        places = Decimal(str(value))
        if places != places.to_integral_value():
            raise DataError(f"{venue} states {value} decimal places of {what} for {name}")
        return Decimal(1).scaleb(-int(places))
    if mode == SIGNIFICANT_DIGITS:
        raise ConfigError(
            f"{venue} states {name}'s precision in significant digits: its step depends on the "
            "value, and the bot trades on fixed steps (use a venue with tick sizes)"
        )
    raise ConfigError(f"{venue} uses ccxt precision mode {mode}, which is not known here")


def _limit(limits: Mapping[str, Any], what: str, bound: str) -> Decimal | None:
    value = (limits.get(what) or {}).get(bound)
    return None if value is None else Decimal(str(value))


class SymbolNames:
    """Remember how the caller names each venue market, to name what the venue reports back."""

    def __init__(self) -> None:
        self._venue: dict[str, str] = {}
        self._ours: dict[str, str] = {}

    def remember(self, ours: str, venue: str) -> None:
        """Record that our ``ours`` is the venue's ``venue`` (the latest name wins)."""
        self._venue[ours] = venue
        self._ours[venue] = ours

    def venue(self, ours: str) -> str | None:
        """Return the venue's symbol of ``ours`` if it was resolved before."""
        return self._venue.get(ours)

    def ours(self, venue: str) -> str:
        """Return our name of a venue symbol: the caller's, else the default name."""
        return self._ours.get(venue) or domain_symbol(venue)
