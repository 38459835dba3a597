"""The market rules table, for both Storage implementations."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import text

from core.domain.enums import MarketType
from core.domain.market_rules import MarketRules, StoredRules
from core.errors import InvariantViolation
from core.ports import Storage
from storage.repositories import SqlStorage
from tests.contract.test_repositories import storage as storage  # the fixture: both kinds


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


@pytest.mark.parametrize(
    "change",
    [
        "price_tick = '-1'",
        "price_tick = 'NaN'",
        "price_tick = 'sNaN'",
        "min_notional = 'Infinity'",
        "amount_step = 'abc'",
        "max_leverage = 'abc'",
        "max_leverage = 2.5",
        "fetched_ms = 'abc'",
        "fetched_ms = 9999999999999999",
        "fetched_ms = 1e30",
        "fetched_ms = -1",
    ],
)
async def test_a_tampered_row_is_refused_naming_it(tmp_path: Path, change: str) -> None:
    store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3")
    await store.start()
    try:
        await store.market_rules.save([stored("XRP/USDT", "0.0001")])
        async with store.uow.connection() as conn:
            await conn.execute(text(f"UPDATE market_rules SET {change}"))  # noqa: S608
            await conn.commit()
        with pytest.raises(InvariantViolation, match="market_rules binance spot XRP/USDT"):
            await store.market_rules.load("binance", MarketType.SPOT)
    finally:
        await store.stop()
