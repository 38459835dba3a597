"""The FakeExchange's own controls: scripted fills, injected errors, the call log."""

from __future__ import annotations

import pytest

from core.domain.enums import OrderStatus, OrderType, Side
from core.errors import RateLimited
from tests.fakes import FakeExchange
from tests.unit.exchange.builders import BTC, D, req


async def test_scripted_fill_applies_now_or_when_the_order_arrives() -> None:
    fake = FakeExchange()
    fake.script_fill("later", price=D(101), fee=D("0.1"))
    await fake.create_order(req("now", Side.BUY, "2", OrderType.LIMIT, price="100"))

    partial = fake.script_fill("now", price=D(100), amount=D("0.5"))
    later = await fake.create_order(req("later", Side.BUY, "1"))

    assert partial is not None and partial.amount == D("0.5")
    now = await fake.fetch_order("now", BTC)
    assert (now.status, now.filled, now.average_price) == (
        OrderStatus.PARTIALLY_FILLED,
        D("0.5"),
        D(100),
    )
    assert (later.status, later.filled, later.fee_paid) == (OrderStatus.FILLED, D(1), D("0.1"))
    assert [f.client_order_id for f in fake.fills] == ["now", "later"]


async def test_injected_error_is_raised_once_and_every_call_is_recorded() -> None:
    fake = FakeExchange()
    fake.fail_next("create_order", RateLimited("slow down"))
    request = req("c1", Side.BUY, "1", OrderType.LIMIT, price="100")

    with pytest.raises(RateLimited):
        await fake.create_order(request)
    order = await fake.create_order(request)

    assert order.status is OrderStatus.OPEN
    assert [c.args for c in fake.calls_to("create_order")] == [(request,), (request,)]
    with pytest.raises(ValueError, match="no method 'create'"):
        fake.fail_next("create", RateLimited("x"))
