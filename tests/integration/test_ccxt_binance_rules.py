"""Binance USD-M market rules through the real ccxt.binance, against tests/fakes_fapi (issue 8,
item 8): ccxt's binance markets state no leverage cap, its leverage brackets do."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from core.clock import SimClock
from core.domain.enums import MarketType
from core.exchange.ccxt import CcxtExchange
from tests.fakes_fapi import T0_MS, FakeFapi, binance_usdm

D = Decimal


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def usdm() -> AsyncIterator[tuple[FakeFapi, CcxtExchange]]:
    async with FakeFapi() as fapi:
        exchange = CcxtExchange(
            binance_usdm(fapi.base_url),
            clock=SimClock(T0_MS),
            market_type=MarketType.PERP,
            sleep=no_sleep,
            rng=random.Random(0),
        )
        yield fapi, exchange
        await exchange.close()


async def test_binance_usdm_rules_with_the_leverage_cap_from_its_brackets(
    usdm: tuple[FakeFapi, CcxtExchange],
) -> None:
    # ccxt's binance markets state no leverage cap; the brackets endpoint does (one request).
    fapi, exchange = usdm
    rules = await exchange.load_market_rules(["BTC/USDT", "ETH/USDT"])
    assert [(r.amount_step, r.price_tick, r.max_leverage) for r in rules.values()] == [
        (D("0.001"), D("0.1"), 125),
        (D("0.001"), D("0.1"), 100),
    ]
    assert [p for _, p, _ in fapi.requests] == ["/fapi/v1/leverageBracket"]
    # The engine's 0.01544 of r07 is what the venue keeps: 0.015.
    assert rules["BTC/USDT"].floor_amount(D("0.01544")) == D("0.015")


async def test_without_leverage_brackets_the_cap_is_unknown_not_a_failure(
    usdm: tuple[FakeFapi, CcxtExchange],
) -> None:
    fapi, exchange = usdm
    for _ in range(4):
        fapi.fail_next("GET", "/fapi/v1/leverageBracket", 503)
    rules = await exchange.market_rules("BTC/USDT")
    assert (rules.amount_step, rules.max_leverage) == (D("0.001"), None)
