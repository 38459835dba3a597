"""One contract suite for every ``Exchange`` implementation we can run offline.

Semantics pinned here (``CcxtExchange`` follows them too, checked by its own tests):
``create_order`` is idempotent on the client order id; cancelling a finished order returns its
final state unchanged; fetching or cancelling an unknown client id raises ``OrderRejected``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from core.clock import SimClock
from core.domain.enums import OrderStatus, OrderType, Side
from core.domain.orders import OrderRequest
from core.errors import OrderRejected
from core.exchange.paper import PaperExchange
from core.exchange.sim import FillModelConfig
from core.ports import Exchange
from storage.memory import MemoryStorage
from tests.fakes import FakeExchange

BTC, ETH = "BTC/USDT", "ETH/USDT"


def limit_buy(cid: str, symbol: str = BTC, price: str = "100") -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol=symbol,
        side=Side.BUY,
        type=OrderType.LIMIT,
        amount=Decimal("0.5"),
        price=Decimal(price),
    )


@pytest.fixture(params=["paper", "fake"])
async def exchange(request: pytest.FixtureRequest) -> AsyncIterator[Exchange]:
    clock = SimClock(1_700_000_000_000)
    if request.param == "fake":
        yield FakeExchange(balances={"USDT": Decimal(10_000)}, clock=clock)
        return
    paper = PaperExchange(
        storage=MemoryStorage(),
        clock=clock,
        fill_config=FillModelConfig(),
        starting_balance=Decimal(10_000),
    )
    await paper.start()
    yield paper
    await paper.stop()


async def test_create_then_fetch_returns_the_same_open_order(exchange: Exchange) -> None:
    created = await exchange.create_order(limit_buy("c1"))

    assert created.client_order_id == "c1"
    assert created.status is OrderStatus.OPEN
    assert created.exchange_order_id
    assert created.filled == 0
    assert await exchange.fetch_order("c1", BTC) == created


async def test_resubmitting_a_client_id_returns_the_existing_order(exchange: Exchange) -> None:
    first = await exchange.create_order(limit_buy("c1"))
    again = await exchange.create_order(limit_buy("c1"))

    assert again == first
    assert [o.client_order_id for o in await exchange.fetch_open_orders()] == ["c1"]


async def test_open_orders_filter_by_symbol(exchange: Exchange) -> None:
    await exchange.create_order(limit_buy("b1", BTC))
    await exchange.create_order(limit_buy("e1", ETH, price="10"))
    await exchange.create_order(limit_buy("b2", BTC))

    assert [o.client_order_id for o in await exchange.fetch_open_orders(BTC)] == ["b1", "b2"]
    assert [o.client_order_id for o in await exchange.fetch_open_orders(ETH)] == ["e1"]
    assert len(await exchange.fetch_open_orders()) == 3


async def test_cancel_closes_the_order_and_a_second_cancel_returns_it_unchanged(
    exchange: Exchange,
) -> None:
    await exchange.create_order(limit_buy("c1"))

    canceled = await exchange.cancel_order("c1", BTC)
    again = await exchange.cancel_order("c1", BTC)

    assert canceled.status is OrderStatus.CANCELED
    assert again == canceled
    assert await exchange.fetch_order("c1", BTC) == canceled
    assert await exchange.fetch_open_orders() == []


async def test_unknown_orders_are_rejected_on_fetch_and_cancel(exchange: Exchange) -> None:
    await exchange.create_order(limit_buy("c1"))

    with pytest.raises(OrderRejected, match="nope"):
        await exchange.fetch_order("nope", BTC)
    with pytest.raises(OrderRejected, match="nope"):
        await exchange.cancel_order("nope", BTC)
    with pytest.raises(OrderRejected, match="c1"):
        await exchange.fetch_order("c1", ETH)  # right id, wrong symbol


async def test_balances_hold_the_quote_currency_and_no_positions_at_start(
    exchange: Exchange,
) -> None:
    balances = await exchange.fetch_balances()

    assert balances["USDT"].asset == "USDT"
    assert balances["USDT"].total == Decimal(10_000)
    assert await exchange.fetch_positions() == []
