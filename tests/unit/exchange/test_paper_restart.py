"""Restarting the paper exchange on the same storage resumes exactly where it stopped.

Run on the in-memory store and on SQLite (a real close and reopen of the database file).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import SimClock
from core.domain.enums import OrderStatus, OrderType, Side
from core.exchange.paper import PaperExchange
from core.ports import Storage
from storage.memory import MemoryStorage
from storage.repositories import SqlStorage
from tests.unit.exchange.builders import BTC, T0_MS, D, bar, req, started_paper

BUY, SELL = Side.BUY, Side.SELL
Reopen = Callable[[], Awaitable[Storage]]


@pytest.fixture(params=["memory", "sqlite"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Storage, Reopen]]:
    """Yield a started storage and a function that 'restarts' it (same data, new objects)."""
    if request.param == "memory":
        memory = MemoryStorage()

        async def same() -> Storage:
            return memory

        yield memory, same
        return
    url = f"sqlite+aiosqlite:///{tmp_path}/paper.sqlite3"
    opened: list[SqlStorage] = [SqlStorage(url)]
    await opened[0].start()

    async def reopen() -> Storage:
        await opened[-1].stop()
        opened.append(SqlStorage(url))
        await opened[-1].start()
        return opened[-1]

    yield opened[0], reopen
    await opened[-1].stop()


async def snapshot(paper: PaperExchange) -> dict[str, Any]:
    return {
        "balances": await paper.fetch_balances(),
        "positions": await paper.fetch_positions(),
        "open": await paper.fetch_open_orders(),
        "mark": paper.last_price(BTC),
    }


async def test_state_after_restart_equals_state_before(stores: tuple[Storage, Reopen]) -> None:
    storage, reopen = stores
    clock = SimClock(T0_MS)
    first = await started_paper(storage, clock=clock)
    await first.on_candle(BTC, bar(0, 100))
    await first.create_order(req("entry", BUY, "1"))
    await first.on_candle(BTC, bar(1, 100, close=105))
    await first.create_order(req("dip", BUY, "1", OrderType.LIMIT, price="90"))
    await first.create_order(
        req("sl", SELL, "1", OrderType.STOP_MARKET, stop="95", reduce_only=True)
    )
    pending = await first.create_order(req("more", BUY, "0.5"))
    before = await snapshot(first)
    await first.stop()

    # a different starting balance proves the account is not seeded a second time
    reopened = await reopen()
    second = await started_paper(reopened, clock=clock, starting_balance=D(1))

    assert await snapshot(second) == before
    assert before["mark"] == D(105)
    assert [o.client_order_id for o in before["open"]] == ["dip", "sl", "more"]
    # idempotent across the restart: the same client id returns the stored order
    assert await second.create_order(req("more", BUY, "0.5")) == pending
    assert await second.create_order(req("entry", BUY, "1")) == await second.fetch_order(
        "entry", BTC
    )
    assert len(await reopened.orders.list_all()) == 4
    # the candle seen before the restart is not filled again; the next one fills the market order
    assert await second.on_candle(BTC, bar(1, 100, close=105)) == []
    fills = await second.on_candle(BTC, bar(2, 106))
    assert [(f.client_order_id, f.price) for f in fills] == [("more", D("106.106"))]
    assert (await second.fetch_order("more", BTC)).status is OrderStatus.FILLED
    [position] = await second.fetch_positions()
    assert position.amount == D("1.5")
