"""The ccxt adapters against a fake ccxt object: error mapping, Decimals, idempotent orders."""

from __future__ import annotations

from decimal import Decimal

import ccxt.async_support as ccxt_async
import numpy as np
import pytest

from core.domain.enums import MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.orders import OrderRequest
from core.errors import (
    ConfigError,
    DataError,
    DependencyError,
    OperationalError,
    OrderRejected,
    RateLimited,
    TemporaryError,
)
from core.exchange.ccxt import (
    CcxtMarketData,
    ccxt_errors,
    domain_symbol,
    make_ccxt_exchange,
    map_ccxt_error,
)
from tests.fakes_ccxt import T0, FakeCcxt, adapter


@pytest.mark.parametrize(
    ("ccxt_error", "ours"),
    [
        (ccxt_async.RateLimitExceeded, RateLimited),
        (ccxt_async.DDoSProtection, RateLimited),
        (ccxt_async.AuthenticationError, OperationalError),
        (ccxt_async.PermissionDenied, OperationalError),
        (ccxt_async.AccountSuspended, OperationalError),
        (ccxt_async.InsufficientFunds, OrderRejected),
        (ccxt_async.InvalidOrder, OrderRejected),
        (ccxt_async.OrderNotFound, OrderRejected),
        (ccxt_async.NetworkError, TemporaryError),
        (ccxt_async.RequestTimeout, TemporaryError),
        (ccxt_async.ExchangeNotAvailable, TemporaryError),
        (ccxt_async.OnMaintenance, TemporaryError),
        (ccxt_async.BadSymbol, DataError),
        (ccxt_async.BadRequest, DataError),
        (ccxt_async.NotSupported, DependencyError),
        (ccxt_async.ExchangeError, DependencyError),
    ],
)
def test_error_mapping_most_specific_first(ccxt_error: type[Exception], ours: type) -> None:
    mapped = map_ccxt_error(ccxt_error("boom"), "binance op")
    assert type(mapped) is ours
    assert str(mapped) == f"binance op: {ccxt_error.__name__}: boom"


def test_ccxt_errors_context_chains_and_passes_other_errors() -> None:
    with pytest.raises(RateLimited) as info, ccxt_errors("ctx"):
        raise ccxt_async.RateLimitExceeded("slow down")
    assert isinstance(info.value.__cause__, ccxt_async.RateLimitExceeded)
    with pytest.raises(KeyError), ccxt_errors("ctx"):
        raise KeyError("not ours to map")


def limit_buy(cid: str = "qt-1") -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol="BTC/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        amount=Decimal("0.001"),
        price=Decimal("99.5"),
        tag="entry",
    )


def market_sell(cid: str = "qt-2") -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol="BTC/USDT",
        side=Side.SELL,
        type=OrderType.MARKET,
        amount=Decimal("0.001"),
    )


async def test_create_limit_order_maps_to_ccxt_and_back() -> None:
    fake = FakeCcxt()
    order = await adapter(fake).create_order(limit_buy())
    assert fake.create_calls == [
        ("BTC/USDT", "limit", "buy", 0.001, 99.5, {"clientOrderId": "qt-1"})
    ]
    assert order.request == limit_buy()  # our own request, tag included
    assert order.status is OrderStatus.OPEN
    assert order.exchange_order_id == "x1"
    assert order.filled == Decimal(0)
    assert order.fee_paid == Decimal("0.1001")
    assert (order.created_ms, order.updated_ms) == (T0, T0 + 5)


async def test_create_market_order_filled_with_decimals() -> None:
    order = await adapter(FakeCcxt()).create_order(market_sell())
    assert order.status is OrderStatus.FILLED
    assert order.filled == Decimal("0.001")
    assert order.average_price == Decimal("100.1")


async def test_stop_market_and_reduce_only_params() -> None:
    fake = FakeCcxt()
    request = OrderRequest(
        client_order_id="qt-sl",
        symbol="BTC/USDT:USDT",
        side=Side.SELL,
        type=OrderType.STOP_MARKET,
        amount=Decimal("0.01"),
        stop_price=Decimal("95"),
        reduce_only=True,
        market_type=MarketType.PERP,
        leverage=3,
    )
    order = await adapter(fake, MarketType.PERP).create_order(request)
    assert fake.create_calls == [
        (
            "BTC/USDT:USDT",
            "market",
            "sell",
            0.01,
            None,
            {"clientOrderId": "qt-sl", "reduceOnly": True, "triggerPrice": 95.0},
        )
    ]
    assert fake.leverage == [(3, "BTC/USDT:USDT")]
    assert order.status is OrderStatus.OPEN


async def test_temporary_error_after_the_order_landed_is_not_resubmitted() -> None:
    fake = FakeCcxt()
    fake.create_errors = [(ccxt_async.RequestTimeout("timed out"), True)]
    order = await adapter(fake).create_order(limit_buy())
    assert len(fake.create_calls) == 1  # looked up by client id instead of placing it again
    assert order.client_order_id == "qt-1"
    assert len(fake.orders) == 1


async def test_temporary_error_before_the_order_landed_resubmits_once() -> None:
    fake = FakeCcxt()
    fake.create_errors = [(ccxt_async.NetworkError("reset"), False)]
    order = await adapter(fake).create_order(limit_buy())
    assert len(fake.create_calls) == 2
    assert order.status is OrderStatus.OPEN


async def test_resubmitting_a_known_client_id_returns_the_existing_order() -> None:
    fake = FakeCcxt()
    ex = adapter(fake)
    first = await ex.create_order(limit_buy())
    again = await ex.create_order(limit_buy())
    assert again.exchange_order_id == first.exchange_order_id
    assert len(fake.orders) == 1


async def test_rejections_are_not_retried() -> None:
    fake = FakeCcxt()
    fake.create_errors = [
        (ccxt_async.InsufficientFunds("binance Account has insufficient balance"), False)
    ]
    with pytest.raises(OrderRejected, match="insufficient balance"):
        await adapter(fake).create_order(limit_buy())
    assert len(fake.create_calls) == 1


async def test_cancel_then_cancel_again_returns_final_state() -> None:
    fake = FakeCcxt()
    ex = adapter(fake)
    await ex.create_order(limit_buy())
    canceled = await ex.cancel_order("qt-1", "BTC/USDT")
    assert canceled.status is OrderStatus.CANCELED
    again = await ex.cancel_order("qt-1", "BTC/USDT")  # venue says "unknown": we fetch it
    assert again.status is OrderStatus.CANCELED


async def test_fetch_unknown_order_is_rejected_with_its_client_id() -> None:
    with pytest.raises(OrderRejected, match="no order with client id qt-9"):
        await adapter(FakeCcxt()).fetch_order("qt-9", "BTC/USDT")


async def test_orders_placed_elsewhere_are_rebuilt_from_ccxt_data() -> None:
    fake = FakeCcxt()
    await adapter(fake).create_order(limit_buy("qt-old"))
    fresh = adapter(fake)  # e.g. after a restart: no memory of the request
    [order] = await fresh.fetch_open_orders()
    assert order.request.type is OrderType.LIMIT
    assert order.request.price == Decimal("99.5")
    assert order.request.amount == Decimal("0.001")
    assert order.request.side is Side.BUY


async def test_balances_are_decimals_without_zero_assets() -> None:
    balances = await adapter(FakeCcxt()).fetch_balances()
    assert set(balances) == {"USDT", "BTC"}
    assert balances["USDT"].free == Decimal("950.5")
    assert balances["USDT"].total == Decimal("1000.0")


async def test_positions_perp_parsed_and_spot_empty() -> None:
    assert await adapter(FakeCcxt()).fetch_positions() == []
    [pos] = await adapter(FakeCcxt(), MarketType.PERP).fetch_positions()
    assert pos.symbol == "ETH/USDT"  # ours: the perp is the market type, not the name
    assert pos.side is PositionSide.SHORT
    assert pos.amount == Decimal("1.00")
    assert pos.entry_price == Decimal("2000.1")
    assert (pos.leverage, pos.margin) == (3, Decimal("333.35"))
    assert pos.liquidation_price == Decimal("2650.5")  # the venue's own figure


async def test_market_data_converts_rows_sorting_and_keeping_none_as_nan() -> None:
    fake = FakeCcxt()
    fake.ohlcv = [
        [T0 + 60_000, 2.0, 3.0, 1.0, 2.5, 10.0],
        [T0, 1.0, 2.0, 0.5, 1.5, None],
    ]
    md = CcxtMarketData(fake)
    series = await md.fetch_ohlcv("BTC/USDT", "1m", T0, 10)
    assert series.ts_ms.tolist() == [T0, T0 + 60_000]
    assert series.close.tolist() == [1.5, 2.5]
    assert np.isnan(series.volume[0])
    fake.ohlcv = []
    assert len(await md.fetch_ohlcv("BTC/USDT", "1m", T0, 10)) == 0
    await md.close()
    assert fake.closed


async def test_make_ccxt_exchange() -> None:
    with pytest.raises(ConfigError, match="unknown exchange 'nope'"):
        make_ccxt_exchange("nope")
    ex = make_ccxt_exchange("binance", timeout_s=7.5, market_type=MarketType.PERP)
    try:
        assert ex.enableRateLimit is True
        assert ex.timeout == 7500
        assert ex.options["defaultType"] == "swap"
    finally:
        await ex.close()


async def test_start_checks_the_keys_with_one_private_call_and_stop_closes() -> None:
    fake = FakeCcxt()
    exchange = adapter(fake)
    await exchange.start()
    assert fake.markets_loaded
    await exchange.stop()
    assert fake.closed
    fake.auth_error = ccxt_async.AuthenticationError(
        'binance {"code":-2015,"msg":"Invalid API-key"}'
    )
    with pytest.raises(OperationalError, match="Invalid API-key"):
        await adapter(fake).start()


async def test_spot_orders_carry_no_reduce_only_flag() -> None:
    fake = FakeCcxt()
    request = OrderRequest(
        client_order_id="qt-tp",
        symbol="BTC/USDT",
        side=Side.SELL,
        type=OrderType.LIMIT,
        amount=Decimal("0.01"),
        price=Decimal("105"),
        reduce_only=True,
    )
    await adapter(fake).create_order(request)
    assert fake.create_calls[0][-1] == {"clientOrderId": "qt-tp"}


def test_linear_perp_symbols_are_reported_by_our_name() -> None:
    assert domain_symbol("BTC/USDT:USDT") == "BTC/USDT"
    assert domain_symbol("BTC/USD:BTC") == "BTC/USD:BTC"  # inverse: left alone
    assert domain_symbol("BTC/USDT") == "BTC/USDT"


async def test_a_perp_order_read_back_after_a_restart_keeps_our_symbol() -> None:
    fake = FakeCcxt()
    fake.orders["qt-x"] = fake._order("qt-x", "BTC/USDT:USDT", "limit", "sell", 0.01, 105.0, {})
    order = await adapter(fake, MarketType.PERP).fetch_order("qt-x", "BTC/USDT")
    assert order.symbol == "BTC/USDT"


async def test_an_entry_sent_again_after_a_restart_is_found_not_placed_twice() -> None:
    """Binance keeps a client id unique among OPEN orders only: an entry that filled, sent
    again under its id by a process that restarted, would open a second position. The adapter
    looks every entry up before sending it."""
    fake = FakeCcxt()
    await adapter(fake).create_order(limit_buy("qt-e"))
    fake.orders["qt-e"]["status"] = "closed"  # it filled
    fake.orders["qt-e"]["filled"] = 0.001
    again = await adapter(fake).create_order(limit_buy("qt-e"))  # a fresh adapter: no memory
    assert len(fake.create_calls) == 1
    assert again.status is OrderStatus.FILLED


async def test_exits_are_sent_without_the_extra_lookup() -> None:
    fake = FakeCcxt()
    sell = OrderRequest(
        client_order_id="qt-x",
        symbol="BTC/USDT",
        side=Side.SELL,
        type=OrderType.LIMIT,
        amount=Decimal("0.001"),
        price=Decimal("120"),
        reduce_only=True,
        market_type=MarketType.PERP,
    )
    looked_up: list[object] = []
    original = fake.fetch_order

    async def counting_fetch_order(*args: object, **kwargs: object) -> object:
        looked_up.append(args)
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    fake.fetch_order = counting_fetch_order  # type: ignore[method-assign]
    await adapter(fake, MarketType.PERP).create_order(sell)
    assert looked_up == []  # reduce-only: sent twice it could not add exposure
    assert len(fake.create_calls) == 1
