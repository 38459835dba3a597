"""A venue that blips (a 503, a timeout) on a read must not stop or confuse the bot.

Found by the chaos harness (``bench/chaos.py``): one 503 on ``/fapi/v3/account`` at start
ended the process, and one on ``/fapi/v3/positionRisk`` while the exits of a fresh fill were
being placed escaped the engine's fill handler, leaving the position without its stop until
the next sync repaired it.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from core.clock import SimClock
from core.domain.enums import MarketType, OrderType, Side
from core.domain.orders import OrderRequest
from core.errors import TemporaryError
from core.exchange.ccxt import CcxtExchange
from tests.fakes_fapi import T0_MS, FakeFapi, binance_usdm


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def fapi() -> AsyncIterator[FakeFapi]:
    async with FakeFapi(price="100") as fake:
        yield fake


@pytest.fixture
async def venue(fapi: FakeFapi) -> AsyncIterator[CcxtExchange]:
    exchange = CcxtExchange(
        binance_usdm(fapi.base_url),
        clock=SimClock(T0_MS),
        market_type=MarketType.PERP,
        symbols=["BTC/USDT"],
        sleep=no_sleep,
        rng=random.Random(0),
    )
    yield exchange
    await exchange.close()


async def test_a_503_on_the_balance_at_start_is_asked_again(
    fapi: FakeFapi, venue: CcxtExchange
) -> None:
    fapi.fail_next("GET", "/fapi/v3/account", 503)
    await venue.start()  # it used to raise TemporaryError here, ending the process
    account_reads = [r for r in fapi.requests if r[1] == "/fapi/v3/account"]
    assert len(account_reads) == 2


async def test_positions_are_asked_again_after_a_503_and_the_retries_are_bounded(
    fapi: FakeFapi, venue: CcxtExchange
) -> None:
    fapi.position["BTCUSDT"] = Decimal("0.05")
    fapi.fail_next("GET", "/fapi/v3/positionRisk", 503)
    [position] = await venue.fetch_positions()
    assert position.amount == Decimal("0.05")
    for _ in range(4):  # as many as the attempts: the last failure is raised
        fapi.fail_next("GET", "/fapi/v3/positionRisk", 503)
    with pytest.raises(TemporaryError):
        await venue.fetch_positions()
    assert venue.fault_count == 5  # every one counted, for the health check's alert


async def test_an_answer_cut_short_is_asked_again_not_a_crash(
    fapi: FakeFapi, venue: CcxtExchange
) -> None:
    """ccxt handed a JSON body cut short on as a string and failed parsing it with an
    AttributeError that no error mapping saw: it ended the process at start."""
    fapi.cut_next("GET", "/fapi/v1/leverageBracket")
    rules = await venue.load_market_rules(["BTC/USDT"])
    assert rules["BTC/USDT"].max_leverage == 125


async def test_an_order_whose_answer_was_cut_is_found_not_sent_twice(
    fapi: FakeFapi, venue: CcxtExchange
) -> None:
    fapi.cut_next("POST", "/fapi/v1/order")  # the venue took it; the answer broke on the way
    order = await venue.create_order(
        OrderRequest(
            client_order_id="qt-BTC-1-e",
            symbol="BTC/USDT",
            side=Side.BUY,
            type=OrderType.MARKET,
            amount=Decimal("0.05"),
            market_type=MarketType.PERP,
            leverage=2,
        )
    )
    assert order.filled == Decimal("0.05")
    assert [o["clientOrderId"] for o in fapi.orders.values()] == ["qt-BTC-1-e"]
