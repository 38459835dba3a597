"""Universe candidates from ccxt's markets and tickers (no ccxt import here).

Every market of the traded type is a candidate: spot markets on spot, linear perpetuals settled
in their quote on perps (named ``BTC/USDT``, as the bot trades them). The ticker gives the last
24 h quote volume (or base volume x last price when the venue sends none) and the last price;
the market gives the quote, whether it trades and, when the venue says, its listing time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.domain.enums import MarketType
from core.exchange.ccxt_markets import domain_symbol
from core.market.universe import Candidate

Market = Mapping[str, Any]


def candidates_from(
    markets: Mapping[str, Market], tickers: Mapping[str, Any], market_type: MarketType
) -> list[Candidate]:
    """Return a candidate for every market of ``market_type`` the tickers price."""
    found = []
    for venue_symbol, market in markets.items():
        if not _traded(market, market_type):
            continue
        ticker = tickers.get(venue_symbol)
        if not isinstance(ticker, Mapping):
            continue  # no ticker: nothing traded (or not listed any more)
        last = _number(ticker.get("last")) or _number(ticker.get("close"))
        volume = _number(ticker.get("quoteVolume"))
        if volume is None:
            base = _number(ticker.get("baseVolume"))
            volume = base * last if base is not None and last is not None else None
        found.append(
            Candidate(
                symbol=domain_symbol(str(market.get("symbol", venue_symbol))),
                quote=str(market.get("quote") or ""),
                quote_volume=volume or 0.0,
                last_price=last or 0.0,
                listed_ms=_listed_ms(market),
                active=market.get("active") is not False,  # None: the venue does not say
            )
        )
    return found


def _traded(market: Market, market_type: MarketType) -> bool:
    if market_type is MarketType.SPOT:
        return market.get("spot") is True
    return (
        market.get("swap") is True
        and market.get("linear") is True
        and market.get("settle") == market.get("quote")
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN: unknown


def _listed_ms(market: Market) -> int | None:
    """Return when the market was listed, if the venue says (ccxt's ``created``, Binance
    futures' ``onboardDate``)."""
    info = market.get("info")
    onboard = info.get("onboardDate") if isinstance(info, Mapping) else None
    for value in (market.get("created"), onboard):
        number = _number(value)
        if number is not None and number > 0:
            return int(number)
    return None
