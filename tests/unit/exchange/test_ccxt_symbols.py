"""Our symbols on every venue's markets (issue 8, item 9).

A USDT-margined perp is ``BTC/USDT`` to us (the market type says perp). ccxt resolves that pair
to the linear perpetual only on Binance with ``defaultType=swap``; on Bybit and OKX it picks the
spot market (pinned below with the real ccxt classes), so leverage is refused and every entry
fails. The adapter resolves the name through the venue's markets itself, on every venue, sends
ccxt ``BTC/USDT:USDT``, and reports positions and orders back under the name the caller used
(``BTC/USDT``, or ``BTC/USDT:USDT`` when that is what is configured). Amounts cross the boundary
in base units: a venue that counts contracts (OKX: 0.01 BTC each) gets contracts.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from core.clock import SimClock
from core.domain.enums import MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.orders import OrderRequest
from core.errors import ConfigError
from core.exchange.ccxt import CcxtExchange, CcxtMarketData, make_ccxt_exchange
from tests.fakes_ccxt import T0, FakeCcxt, adapter, default_markets

VENUES = ["binance", "bybit", "okx"]


def entry(symbol: str = "BTC/USDT", amount: str = "0.05") -> OrderRequest:
    return OrderRequest(
        client_order_id="qt-e",
        symbol=symbol,
        side=Side.BUY,
        type=OrderType.MARKET,
        amount=Decimal(amount),
        market_type=MarketType.PERP,
        leverage=3,
    )


@pytest.mark.parametrize("venue", ["bybit", "okx"])
async def test_ccxt_alone_resolves_the_pair_to_spot_on_bybit_and_okx(venue: str) -> None:
    # Why the adapter resolves names itself: the venue behaviour the fix is for.
    from core.exchange.ccxt_markets import resolve_market

    ex = make_ccxt_exchange(venue, market_type=MarketType.PERP)
    try:
        ex.set_markets(list(default_markets().values()))
        assert ex.market("BTC/USDT")["type"] == "spot"
        assert resolve_market(ex.markets, "BTC/USDT", MarketType.PERP, venue)["type"] == "swap"
    finally:
        await ex.close()


@pytest.mark.parametrize("venue", VENUES)
async def test_a_perp_order_goes_to_the_linear_perpetual_on_every_venue(venue: str) -> None:
    fake = FakeCcxt(venue, default_type="swap")
    order = await adapter(fake, MarketType.PERP).create_order(entry())
    assert fake.leverage == [(3, "BTC/USDT:USDT")]
    assert [call[0] for call in fake.create_calls] == ["BTC/USDT:USDT"]
    assert order.symbol == "BTC/USDT"


@pytest.mark.parametrize("venue", VENUES)
async def test_positions_and_orders_come_back_under_our_name(venue: str) -> None:
    fake = FakeCcxt(venue, default_type="swap")
    ex = adapter(fake, MarketType.PERP)
    await ex.create_order(entry())
    limit = OrderRequest(
        client_order_id="qt-tp",
        symbol="BTC/USDT",
        side=Side.SELL,
        type=OrderType.LIMIT,
        amount=Decimal("0.05"),
        price=Decimal("105"),
        reduce_only=True,
        market_type=MarketType.PERP,
        leverage=3,
    )
    await ex.create_order(limit)
    assert [o.symbol for o in await adapter(fake, MarketType.PERP).fetch_open_orders()] == [
        "BTC/USDT"  # rebuilt after a "restart": no memory of the request, still our name
    ]
    assert {p.symbol for p in await ex.fetch_positions()} == {"ETH/USDT"}
    assert (await ex.fetch_order("qt-e", "BTC/USDT")).symbol == "BTC/USDT"


async def test_a_configured_unified_perp_symbol_works_and_keeps_its_name() -> None:
    fake = FakeCcxt("bybit", default_type="swap")
    ex = adapter(fake, MarketType.PERP)
    await ex.create_order(entry("ETH/USDT:USDT"))
    assert [call[0] for call in fake.create_calls] == ["ETH/USDT:USDT"]
    [position] = await ex.fetch_positions()  # the fake's venue holds an ETH short
    assert (position.symbol, position.side) == ("ETH/USDT:USDT", PositionSide.SHORT)
    fake.orders["qt-e"]["status"] = "open"
    [order] = await ex.fetch_open_orders()
    assert order.symbol == "ETH/USDT:USDT"


async def test_declared_symbols_are_resolved_at_start() -> None:
    fake = FakeCcxt("okx", default_type="swap")
    ok = CcxtExchange(
        fake, clock=SimClock(T0), market_type=MarketType.PERP, symbols=["BTC/USDT", "ETH/USDT:USDT"]
    )
    await ok.start()
    assert [await ok.venue_symbol(s) for s in ("BTC/USDT", "ETH/USDT:USDT")] == [
        "BTC/USDT:USDT",
        "ETH/USDT:USDT",
    ]
    missing = CcxtExchange(
        fake, clock=SimClock(T0), market_type=MarketType.PERP, symbols=["DOGE/USDT"]
    )
    with pytest.raises(ConfigError, match="okx lists no linear perpetual for DOGE/USDT"):
        await missing.start()


@pytest.mark.parametrize("symbol", ["DOGE/USDT", "BTC/USD:BTC"])
async def test_a_perp_the_venue_does_not_list_is_refused_before_anything_is_sent(
    symbol: str,
) -> None:
    fake = FakeCcxt("bybit", default_type="swap")
    with pytest.raises(ConfigError, match=f"no linear perpetual for {symbol}"):
        await adapter(fake, MarketType.PERP).create_order(entry(symbol))
    assert fake.create_calls == [] and fake.leverage == []


async def test_spot_symbols_are_the_venue_spot_markets() -> None:
    fake = FakeCcxt("bybit")
    order = await adapter(fake).create_order(
        OrderRequest(
            client_order_id="qt-s",
            symbol="BTC/USDT",
            side=Side.BUY,
            type=OrderType.MARKET,
            amount=Decimal("0.05"),
        )
    )
    assert [call[0] for call in fake.create_calls] == ["BTC/USDT"]
    assert order.symbol == "BTC/USDT"


async def test_amounts_are_contracts_at_the_venue_and_base_units_to_us() -> None:
    fake = FakeCcxt("okx", markets=default_markets(contract_size=0.01), default_type="swap")
    ex = adapter(fake, MarketType.PERP)
    order = await ex.create_order(entry(amount="0.05"))
    assert fake.create_calls[0][3] == 5.0  # 0.05 BTC is 5 contracts of 0.01
    assert (order.status, order.filled) == (OrderStatus.FILLED, Decimal("0.05"))
    rebuilt = await adapter(fake, MarketType.PERP).fetch_order("qt-e", "BTC/USDT")
    assert rebuilt.request.amount == Decimal("0.05")


async def test_listing_every_open_perp_order_asks_for_the_linear_perps() -> None:
    # ccxt's binance lists spot orders when no symbol is given, whatever defaultType says.
    fake = FakeCcxt("binance", default_type="swap")
    await adapter(fake, MarketType.PERP).fetch_open_orders()
    assert fake.open_orders_calls[0] == (None, {"type": "swap", "subType": "linear"})


@pytest.mark.parametrize("venue", VENUES)
async def test_perp_candles_come_from_the_perpetual(venue: str) -> None:
    fake = FakeCcxt(venue, default_type="swap")
    fake.ohlcv = [[T0, 1.0, 2.0, 0.5, 1.5, 10.0]]
    series = await CcxtMarketData(fake).fetch_ohlcv("BTC/USDT", "1h", T0, 10)
    assert fake.ohlcv_calls == ["BTC/USDT:USDT"]
    assert series.symbol == "BTC/USDT"
    assert np.allclose(series.close, [1.5])
    spot = FakeCcxt(venue)
    await CcxtMarketData(spot).fetch_ohlcv("BTC/USDT", "1h", T0, 10)
    assert spot.ohlcv_calls == ["BTC/USDT"] and spot.markets is None  # no markets needed
