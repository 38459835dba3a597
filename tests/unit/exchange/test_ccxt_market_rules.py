"""The venue's market precision and limits per symbol, from ccxt's markets (issue 8, item 8).

ccxt states precision in one of three modes per exchange (``precisionMode``): TICK_SIZE (the
step itself, e.g. 0.001: Binance, Bybit, OKX), DECIMAL_PLACES (a count of digits, 3 meaning a
step of 0.001) and SIGNIFICANT_DIGITS (digits that count from the first non-zero one, a step that
depends on the value: Bitfinex). A contract market's amounts are contracts; ours are base units.
"""

from __future__ import annotations

from decimal import Decimal

import ccxt.async_support as ccxt_async
import pytest

from core.domain.enums import MarketType
from core.domain.market_rules import MarketRules
from core.errors import ConfigError, DataError
from core.exchange import ccxt_markets
from core.exchange.ccxt_markets import market_rules
from tests.fakes_ccxt import FakeCcxt, adapter, default_markets, market

D = Decimal


def test_our_precision_modes_are_ccxts() -> None:
    assert ccxt_markets.DECIMAL_PLACES == ccxt_async.DECIMAL_PLACES
    assert ccxt_markets.SIGNIFICANT_DIGITS == ccxt_async.SIGNIFICANT_DIGITS
    assert ccxt_markets.TICK_SIZE == ccxt_async.TICK_SIZE
    for venue in ("binance", "bybit", "okx"):
        assert getattr(ccxt_async, venue)().precisionMode == ccxt_async.TICK_SIZE


def test_tick_size_precision_is_the_step() -> None:
    rules = market_rules(
        market("BTC/USDT:USDT"),
        symbol="BTC/USDT",
        precision_mode=ccxt_async.TICK_SIZE,
        venue="binance",
    )
    assert rules == MarketRules(
        symbol="BTC/USDT",
        amount_step=D("0.001"),
        price_tick=D("0.1"),
        min_amount=D("0.001"),
        min_notional=D(5),
        max_leverage=125,
    )


def test_a_float_step_keeps_its_exact_decimal() -> None:
    tiny = market("PEPE/USDT:USDT", precision={"amount": 1e-05, "price": 1e-08})
    rules = market_rules(tiny, symbol="PEPE/USDT", precision_mode=4, venue="binance")
    assert (rules.amount_step, rules.price_tick) == (D("0.00001"), D("0.00000001"))


@pytest.mark.parametrize(
    ("digits", "step"), [(3, D("0.001")), (8.0, D("0.00000001")), (0, D(1)), (-1, D(10))]
)
def test_decimal_places_become_the_step_they_mean(digits: float, step: Decimal) -> None:
    m = market("BTC/USDT:USDT", precision={"amount": digits, "price": 2})
    rules = market_rules(m, symbol="BTC/USDT", precision_mode=ccxt_async.DECIMAL_PLACES, venue="x")
    assert (rules.amount_step, rules.price_tick) == (step, D("0.01"))


def test_significant_digits_have_no_fixed_step_and_are_refused_by_name() -> None:
    m = market("BTC/USDT:USDT", precision={"amount": 8, "price": 5})
    with pytest.raises(
        ConfigError, match="bitfinex states BTC/USDT:USDT's precision in significant"
    ):
        market_rules(
            m, symbol="BTC/USDT", precision_mode=ccxt_async.SIGNIFICANT_DIGITS, venue="bitfinex"
        )


def test_a_contract_markets_steps_and_minimums_are_in_base_units() -> None:
    okx = market(
        "BTC/USDT:USDT",
        contract_size=0.01,
        precision={"amount": 1.0, "price": 0.1},
        limits={"amount": {"min": 1.0}, "cost": {"min": None}, "leverage": {"max": 100.0}},
    )
    rules = market_rules(okx, symbol="BTC/USDT", precision_mode=4, venue="okx")
    assert (rules.amount_step, rules.min_amount) == (D("0.01"), D("0.01"))  # one contract
    assert (rules.min_notional, rules.max_leverage) == (D(0), 100)


def test_a_market_without_precision_is_bad_data() -> None:
    m = market("BTC/USDT:USDT", precision={"amount": None, "price": 0.1})
    with pytest.raises(DataError, match="binance states no amount precision for BTC/USDT:USDT"):
        market_rules(m, symbol="BTC/USDT", precision_mode=4, venue="binance")


async def test_the_adapter_gives_the_rules_of_our_symbols() -> None:
    fake = FakeCcxt("bybit", default_type="swap")
    fake.precisionMode = ccxt_async.TICK_SIZE
    ex = adapter(fake, MarketType.PERP)
    rules = await ex.load_market_rules(["BTC/USDT", "ETH/USDT:USDT"])
    assert set(rules) == {"BTC/USDT", "ETH/USDT:USDT"}  # keyed by our names
    assert rules["BTC/USDT"].amount_step == D("0.001")
    assert await ex.market_rules("BTC/USDT") == rules["BTC/USDT"]
    with pytest.raises(ConfigError, match="DOGE/USDT"):
        await ex.market_rules("DOGE/USDT")


async def test_spot_rules_come_from_the_spot_market() -> None:
    markets = default_markets()
    markets["BTC/USDT"] = market("BTC/USDT", precision={"amount": 0.00001, "price": 0.01})
    fake = FakeCcxt("binance", markets=markets)
    fake.precisionMode = ccxt_async.TICK_SIZE
    rules = await adapter(fake).market_rules("BTC/USDT")
    assert (rules.amount_step, rules.price_tick, rules.max_leverage) == (
        D("0.00001"),
        D("0.01"),
        None,
    )


async def test_the_public_client_gives_rules_by_our_names_for_paper_runs_and_downloads() -> None:
    from core.exchange.ccxt import CcxtMarketData

    spot = CcxtMarketData(FakeCcxt())
    rules = await spot.load_market_rules(["BTC/USDT", "ETH/USDT"])
    assert set(rules) == {"BTC/USDT", "ETH/USDT"}
    assert rules["BTC/USDT"].symbol == "BTC/USDT"
    assert rules["BTC/USDT"].price_tick > 0 and rules["BTC/USDT"].max_leverage is None
    perp = CcxtMarketData(FakeCcxt(default_type="swap"))
    assert (await perp.load_market_rules(["BTC/USDT"]))["BTC/USDT"].max_leverage == 125
    with pytest.raises(ConfigError, match="lists no spot market DOGE/USDT"):
        await spot.load_market_rules(["DOGE/USDT"])
