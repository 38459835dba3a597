"""A process's market rules: the venue's (stored), else stored, inferred or the fallback."""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from bot.market_rules import ProcessRules, download_rules, rules_book
from core.clock import SimClock
from core.config import Settings, load_settings
from core.domain.enums import MarketType
from core.domain.market import CandleSeries
from core.domain.market_rules import MarketRules, RulesSource
from core.errors import ConfigError, TemporaryError
from jobs.registry import JOBS, JobContext
from storage.memory import MemoryStorage

T0 = 1_704_067_200_000
XRP = "XRP/USDT"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)


def settings(**trading: object) -> Settings:
    return load_settings(
        None,
        trading={"symbols": [XRP, "ADA/USDT"], **trading},
        market={"symbols": {"ADA/USDT": {"min_notional": "1"}}},
    )


def venue_rules(tick: str = "0.0001", lev: int | None = None) -> dict[str, MarketRules]:
    return {
        s: MarketRules(
            symbol=s, amount_step=D("0.1"), price_tick=D(tick), min_notional=D(5), max_leverage=lev
        )
        for s in (XRP, "ADA/USDT")
    }


class Venue:
    """A rules fetch that answers, or fails like an unreachable venue."""

    def __init__(self, rules: dict[str, MarketRules] | None) -> None:
        self.rules, self.calls = rules, 0

    async def __call__(self, symbols: list[str]) -> Mapping[str, MarketRules]:
        self.calls += 1
        if self.rules is None:
            raise TemporaryError("binance load_markets: timed out")
        return {s: self.rules[s] for s in symbols if s in self.rules}


def warmup(symbol: str, price: float) -> CandleSeries:
    p = np.array([price, price + 0.0001, price + 0.0002])
    ts = T0 + np.arange(3, dtype=np.int64) * 3_600_000
    return CandleSeries.from_columns(symbol, "1h", ts, p, p, p, p, np.ones(3))


def process(s: Settings, storage: MemoryStorage, fetch: Venue | None) -> ProcessRules:
    return ProcessRules(
        settings=s, book=rules_book(s), repo=storage.market_rules, clock=SimClock(T0), fetch=fetch
    )


async def test_the_venues_rules_are_used_and_stored_for_later_runs_and_backtests() -> None:
    storage = MemoryStorage()
    rules = process(settings(), storage, Venue(venue_rules()))
    await rules.start({})
    held = rules.book.in_force(XRP)
    assert held.source is RulesSource.VENUE
    assert held.rules.price_tick == D("0.0001")
    assert held.note == "binance, 2024-01-01 00:00 UTC"
    stored = await storage.market_rules.load("binance", MarketType.SPOT)
    assert {s: r.rules for s, r in stored.items()} == venue_rules()
    assert {r.fetched_ms for r in stored.values()} == {T0}


async def test_an_unreachable_venue_falls_back_to_stored_then_inferred_rules(
    caplog: pytest.LogCaptureFixture,
) -> None:
    only_xrp = {XRP: venue_rules()[XRP]}
    fresh = MemoryStorage()
    await process(settings(), fresh, Venue(only_xrp)).start({})  # stores XRP only
    down = process(settings(), fresh, Venue(None))
    await down.start({"ADA/USDT": warmup("ADA/USDT", 0.45)})
    assert down.book.in_force(XRP).source is RulesSource.STORED
    ada = down.book.in_force("ADA/USDT")
    assert ada.source is RulesSource.SETTINGS  # the override's min notional over inferred
    assert (ada.rules.price_tick, ada.rules.min_notional) == (D("0.0001"), D(1))
    assert "inferred" in ada.note
    assert "market rules not fetched (binance load_markets: timed out)" in caplog.text


async def test_live_refuses_to_start_without_the_venues_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "QT__EXCHANGE__MARKET_TYPE": "perp",
        "QT__EXCHANGE__API_KEY": "k",
        "QT__EXCHANGE__API_SECRET": "s",
        "QT__TRADING__LIVE_CONFIRMATION": "I accept real-money risk",
    }.items():
        monkeypatch.setenv(name, value)
    live = settings(mode="live")
    with pytest.raises(TemporaryError):
        await process(live, MemoryStorage(), Venue(None)).start({})


async def test_a_leverage_above_the_venues_cap_stops_the_start_and_is_logged_on_refresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    perp = load_settings(
        None, exchange={"market_type": "perp"}, trading={"symbols": [XRP], "max_leverage": 5}
    )
    with pytest.raises(ConfigError, match="MAX_LEVERAGE=5 is more than binance allows on XRP"):
        await process(perp, MemoryStorage(), Venue(venue_rules(lev=3))).start({})
    venue = Venue(venue_rules(lev=10))
    rules = process(perp, MemoryStorage(), venue)
    await rules.start({})
    venue.rules = venue_rules(lev=3)
    await rules.refresh()
    assert "the venue will refuse new entries" in caplog.text


async def test_the_refresh_job_fetches_again_and_says_what_changed() -> None:
    storage = MemoryStorage()
    venue = Venue(venue_rules())
    rules = process(settings(), storage, venue)
    await rules.start({})
    [job] = [j for j in JOBS if j.job_id == "market_rules"]
    ctx = JobContext(portfolio=None, market_rules=rules.refresh)  # type: ignore[arg-type]
    assert job.runs_in(ctx)
    assert not job.runs_in(JobContext(portfolio=None))  # type: ignore[arg-type]
    assert await job.target(ctx) == "market rules of 2 symbol(s) fetched"
    venue.rules = venue_rules(tick="0.001")
    assert (
        await job.target(ctx) == "market rules of 2 symbol(s) fetched; changed: XRP/USDT, ADA/USDT"
    )
    assert rules.book.rules(XRP).price_tick == D("0.001")
    stored = await storage.market_rules.load("binance", MarketType.SPOT)
    assert stored[XRP].rules.price_tick == D("0.001")


async def test_download_stores_the_rules_and_a_failed_fetch_keeps_the_candles_going() -> None:
    storage = MemoryStorage()
    s = settings()
    line = await download_rules(
        Venue(venue_rules()), storage.market_rules, settings=s, exchange="binance",
        symbols=[XRP], now_ms=T0,
    )  # fmt: skip
    assert line == "market rules of XRP/USDT stored (binance spot)"
    assert list(await storage.market_rules.load("binance", MarketType.SPOT)) == [XRP]
    line = await download_rules(
        Venue(None), storage.market_rules, settings=s, exchange="binance", symbols=[XRP],
        now_ms=T0,
    )  # fmt: skip
    assert line == "market rules not stored: binance load_markets: timed out"


def test_notices_name_guessed_rules_partial_overrides_and_overrides_never_used() -> None:
    from bot.market_rules import notices, resolved

    s = load_settings(
        None,
        trading={"symbols": [XRP]},
        market={"symbols": {XRP: {"min_notional": "1"}, "doge/usdt": {"amount_step": "1"}}},
    )
    lines = notices(s, resolved(s, [XRP], series={XRP: warmup(XRP, 1000.0)}))
    assert lines[0].startswith("market rules XRP/USDT: tick 0.0001, step 0.1, minimums 0.1 / 1")
    assert "settings (price_tick, amount_step, min_amount: inferred)" in lines[0]
    assert lines[1] == (
        "QT__MARKET__SYMBOLS names doge/usdt, not traded here (symbols are matched exactly: "
        "XRP/USDT)"
    )


async def test_an_older_database_is_neither_read_for_rules_nor_migrated_by_looking(
    tmp_path: Path,
) -> None:
    from bot.market_rules import stored_rules
    from storage.migrate import current_revision, upgrade

    url = f"sqlite+aiosqlite:///{tmp_path}/old.sqlite"
    await upgrade(url, "0002")  # before the market_rules table
    s = load_settings(None, database={"url": url})
    assert await stored_rules(s) == {}
    assert current_revision(url) == "0002"


async def test_symbols_a_universe_adds_do_not_call_the_overrides_of_traded_ones_unused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    eth = "ETH/USDT"
    s = load_settings(
        None, trading={"symbols": [XRP]}, market={"symbols": {XRP: {"min_notional": "1"}}}
    )
    rules = process(s, MemoryStorage(), None)  # no venue: the rules are inferred, said
    await rules.start({XRP: warmup(XRP, 1.0)})
    caplog.clear()
    await rules.extend([XRP, eth], {eth: warmup(eth, 2000.0)})
    said = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("market rules ETH/USDT") for line in said)
    assert not any("not traded here" in line for line in said)  # XRP/USDT is traded
