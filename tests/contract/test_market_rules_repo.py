"""The market rules table, for both Storage implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import text

from core.domain.enums import MarketType
from core.domain.market_rules import MarketRules, StoredRules
from core.errors import InvariantViolation
from core.ports import Storage
from storage.memory import MemoryStorage
from storage.repositories import SqlStorage


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store: Storage
    if request.param == "memory":
        store = MemoryStorage()
    else:
        store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3")
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


def stored(symbol: str, tick: str, *, market: str = "spot", at: int = 1, lev: int | None = None):
    return StoredRules(
        exchange="binance",
        market=market,
        rules=MarketRules(
            symbol=symbol,
            amount_step=D("0.1"),
            price_tick=D(tick),
            min_amount=D("0.1"),
            min_notional=D(5),
            max_leverage=lev,
        ),
        fetched_ms=at,
    )


async def test_saved_rules_come_back_exactly_per_venue_and_market(storage: Storage) -> None:
    repo = storage.market_rules
    await repo.save([stored("XRP/USDT", "0.0001"), stored("DOGE/USDT", "0.00001")])
    await repo.save([stored("XRP/USDT", "0.001", market="perp", lev=75)])

    spot = await repo.load("binance", MarketType.SPOT)
    assert spot == {
        "DOGE/USDT": stored("DOGE/USDT", "0.00001"),
        "XRP/USDT": stored("XRP/USDT", "0.0001"),
    }
    assert (await repo.load("binance", MarketType.PERP))["XRP/USDT"].rules.max_leverage == 75
    assert await repo.load("bybit", MarketType.SPOT) == {}


async def test_a_new_fetch_replaces_a_symbols_rules_and_keeps_the_others(storage: Storage) -> None:
    repo = storage.market_rules
    await repo.save([stored("XRP/USDT", "0.0001"), stored("DOGE/USDT", "0.00001")])
    await repo.save([stored("XRP/USDT", "0.001", at=2)])

    got = await repo.load("binance", MarketType.SPOT)
    assert got["XRP/USDT"] == stored("XRP/USDT", "0.001", at=2)
    assert got["DOGE/USDT"] == stored("DOGE/USDT", "0.00001")


async def test_a_tampered_row_is_refused_naming_it(tmp_path: Path) -> None:
    store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3")
    await store.start()
    try:
        await store.market_rules.save([stored("XRP/USDT", "0.0001")])
        async with store.uow.connection() as conn:
            await conn.execute(text("UPDATE market_rules SET price_tick = '-1'"))
            await conn.commit()
        with pytest.raises(InvariantViolation, match="market_rules binance spot XRP/USDT"):
            await store.market_rules.load("binance", MarketType.SPOT)
    finally:
        await store.stop()
