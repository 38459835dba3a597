"""Universe candidates from ccxt's markets and tickers: the traded market type only, volumes
in the quote, listings where the venue states them, errors mapped like every ccxt call."""

from __future__ import annotations

from typing import Any

import ccxt.async_support as ccxt_async
import pytest

from core.domain.enums import MarketType
from core.errors import DependencyError
from core.exchange.ccxt import CcxtMarketData
from core.exchange.ccxt_universe import candidates_from
from tests.fakes_ccxt import T0, FakeCcxt, market


def ticker(symbol: str, **kw: Any) -> dict[str, Any]:
    return {"symbol": symbol, "last": 2.0, "quoteVolume": 1_000.0, **kw}


MARKETS = {
    s: market(s) for s in ("BTC/USDT", "ETH/USDT", "ETH/BTC", "BTC/USDT:USDT", "SOL/USDT:USDT")
}


def test_spot_takes_spot_markets_with_tickers_only() -> None:
    tickers = {
        "BTC/USDT": ticker("BTC/USDT", quoteVolume=5e9, last=90_000.0),
        "ETH/BTC": ticker("ETH/BTC"),
        "BTC/USDT:USDT": ticker("BTC/USDT:USDT"),  # a perp: not on spot
        # ETH/USDT: no ticker, no candidate
    }
    got = candidates_from(MARKETS, tickers, MarketType.SPOT)
    assert [(c.symbol, c.quote, c.quote_volume, c.last_price) for c in got] == [
        ("BTC/USDT", "USDT", 5e9, 90_000.0),
        ("ETH/BTC", "BTC", 1_000.0, 2.0),
    ]


def test_perps_are_linear_perpetuals_under_our_names() -> None:
    tickers = {s: ticker(s) for s in MARKETS}
    got = candidates_from(MARKETS, tickers, MarketType.PERP)
    assert sorted(c.symbol for c in got) == ["BTC/USDT", "SOL/USDT"]


def test_missing_quote_volume_is_base_times_last_and_listing_and_state_are_read() -> None:
    markets = {
        "A/USDT": market("A/USDT", created=T0),
        "B/USDT": market("B/USDT", active=False, info={"onboardDate": str(T0 + 1)}),
        "C/USDT": market("C/USDT", active=None),
    }
    tickers = {
        "A/USDT": ticker("A/USDT", quoteVolume=None, baseVolume=10.0, last=3.0),
        "B/USDT": ticker("B/USDT", last=None, close=4.0),
        "C/USDT": ticker("C/USDT", quoteVolume=None, baseVolume=None, last=float("nan")),
    }
    a, b, c = candidates_from(markets, tickers, MarketType.SPOT)
    assert (a.quote_volume, a.listed_ms, a.active) == (30.0, T0, True)
    assert (b.last_price, b.listed_ms, b.active) == (4.0, T0 + 1, False)
    assert (c.quote_volume, c.last_price, c.listed_ms, c.active) == (0.0, 0.0, None, True)


async def test_the_adapter_reloads_markets_and_maps_errors() -> None:
    fake = FakeCcxt(markets=MARKETS)
    fake.tickers = {"BTC/USDT": ticker("BTC/USDT")}
    md = CcxtMarketData(fake)
    [btc] = await md.universe_candidates()
    assert btc.symbol == "BTC/USDT" and fake.markets_loaded
    fake.fail_next("fetch_tickers", ccxt_async.RequestTimeout("slow"))
    with pytest.raises(DependencyError, match=r"universe.*RequestTimeout"):
        await md.universe_candidates()


async def test_listed_since_is_the_first_daily_candle() -> None:
    fake = FakeCcxt(markets=MARKETS)
    md = CcxtMarketData(fake)
    assert await md.listed_since("BTC/USDT", T0) is None
    fake.ohlcv = [[T0 + 86_400_000, 1.0, 1.0, 1.0, 1.0, 1.0]]
    assert await md.listed_since("BTC/USDT", T0) == T0 + 86_400_000


async def test_a_tickers_answer_that_is_no_mapping_is_a_data_error() -> None:
    from core.errors import DataError

    fake = FakeCcxt(markets=MARKETS)
    fake.tickers = [ticker("BTC/USDT")]  # type: ignore[assignment]
    with pytest.raises(DataError, match="markets and tickers must be mappings, were dict and list"):
        await CcxtMarketData(fake).universe_candidates()
