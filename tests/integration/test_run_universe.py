"""`qt run` with QT__UNIVERSE__MODE=volume, against a fake ccxt client: the first selection
at start, the refresh job every REFRESH_HOURS, changes in the audit trail, the feed following
the universe, and a venue that cannot answer keeping the last universe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
import pytest

from bot.modes import build_run
from core.config import Settings, load_settings
from core.domain.market_rules import RulesSource
from core.errors import ConfigError
from core.exchange.ccxt import CcxtMarketData
from jobs.registry import JOBS
from jobs.scheduler import wall_interval_s
from tests.fakes_ccxt import FakeCcxt, market

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "DOGE/USDT", "USDC/USDT", "ETH/BTC")
[REFRESH] = [spec for spec in JOBS if spec.job_id == "universe_refresh"]


def tickers(**volumes: float) -> dict[str, dict[str, Any]]:
    return {
        name.replace("_", "/"): {"symbol": name.replace("_", "/"), "last": 1.5, "quoteVolume": v}
        for name, v in volumes.items()
    }


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QT__UNIVERSE__MODE", "volume")
    monkeypatch.setenv("QT__UNIVERSE__TOP_N", "2")
    monkeypatch.setenv("QT__UNIVERSE__MIN_LISTING_DAYS", "0")
    monkeypatch.setenv("QT__UNIVERSE__REFRESH_HOURS", "6")
    return load_settings(app={"data_dir": str(tmp_path / "ud")})


@pytest.fixture
def venue() -> FakeCcxt:
    fake = FakeCcxt(markets={s: market(s) for s in SYMBOLS})
    fake.tickers = tickers(
        BTC_USDT=9e9, USDC_USDT=8e9, ETH_USDT=5e9, SOL_USDT=1e9, DOGE_USDT=1e3, ETH_BTC=1e12
    )
    return fake


async def test_run_starts_on_the_top_n_and_the_job_refreshes_it(
    settings: Settings, venue: FakeCcxt
) -> None:
    process = await build_run(settings, market_data=CcxtMarketData(venue))
    # Stablecoins are blacklisted by default, ETH/BTC is not quoted in the account's USDT.
    assert process.parts.settings.trading.symbols == ["BTC/USDT", "ETH/USDT"]
    assert "universe_refresh" in process.scheduler.job_ids
    assert wall_interval_s(REFRESH, 1.0, process.scheduler._ctx) == 6 * 3600
    await process.start()
    try:
        venue.tickers = tickers(BTC_USDT=9e9, SOL_USDT=6e9, ETH_USDT=5e9)
        await process.scheduler.run_job(REFRESH)
        assert process.engine.universe is not None
        assert process.engine.universe.current == ("BTC/USDT", "SOL/USDT")
        assert "SOL/USDT" in venue.ohlcv_calls  # its warm-up candles were asked for
        # ... and its market rules are the venue's, refreshed with the others from now on.
        assert process.rules.book.in_force("SOL/USDT").source is RulesSource.VENUE
        venue.fail_next("fetch_tickers", ccxt_async.ExchangeNotAvailable("down"))
        await process.scheduler.run_job(REFRESH)
        assert process.engine.universe.current == ("BTC/USDT", "SOL/USDT")  # kept
    finally:
        await process.stop("test")
    stored = await _events(process)
    changes = [e.payload for e in stored if e.topic == "universe.changed"]
    assert [(c["entered"], c["left"]) for c in changes] == [
        (["BTC/USDT", "ETH/USDT"], []),
        (["SOL/USDT"], ["ETH/USDT"]),
    ]
    ran = [e.payload for e in stored if e.topic == "job.ran"]
    assert [r["detail"] for r in ran if r["job_id"] == "universe_refresh"] == [
        "2 symbol(s); entered SOL/USDT; left ETH/USDT",
        "refresh failed, kept 2 symbol(s): binance universe: load_markets, fetch_tickers: "
        "ExchangeNotAvailable: down",
    ]


async def test_the_feed_keeps_a_symbol_that_left_while_its_trade_is_open(
    settings: Settings, venue: FakeCcxt
) -> None:
    process = await build_run(settings, market_data=CcxtMarketData(venue))
    live = process.parts.universe
    assert live is not None
    await process.start()
    try:
        assert live.wanted() == ["BTC/USDT", "ETH/USDT"]
        process.engine.trades["ETH/USDT"] = object()  # type: ignore[assignment]
        venue.tickers = tickers(BTC_USDT=9e9, SOL_USDT=6e9)
        await process.scheduler.run_job(REFRESH)
        assert live.wanted() == ["BTC/USDT", "SOL/USDT", "ETH/USDT"]
        del process.engine.trades["ETH/USDT"]
        assert live.wanted() == ["BTC/USDT", "SOL/USDT"]
    finally:
        await process.stop("test")


async def test_no_symbol_passing_the_filters_is_a_clear_error(
    settings: Settings, venue: FakeCcxt
) -> None:
    venue.tickers = tickers(USDC_USDT=8e9, ETH_BTC=1e12)
    md = CcxtMarketData(venue)
    with pytest.raises(ConfigError, match="no symbol passes the universe filters"):
        await build_run(settings, market_data=md)
    assert venue.closed


async def _events(process: Any) -> list[Any]:
    from storage import open_storage

    storage = open_storage(process.parts.database_url)
    await storage.start()
    try:
        return await storage.events.list_events(limit=500)
    finally:
        await storage.stop()


async def test_a_restart_warms_up_open_trades_the_first_selection_left_out(
    settings: Settings, venue: FakeCcxt
) -> None:
    from core.domain.enums import MarketType, PositionSide
    from core.ports import StateKey
    from core.services.open_trade import OpenTrade
    from core.services.trade_codec import encode_trades
    from storage import open_storage

    trade = OpenTrade(
        trade_id="t",
        symbol="DOGE/USDT",
        side=PositionSide.LONG,
        decided_ms=0,
        entry_cid="t",
        confidence=0.5,
        atr=float("nan"),
        market_type=MarketType.SPOT,
        leverage=1,
    )
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        await storage.state.set(StateKey.ENGINE_TRADES, encode_trades({"DOGE/USDT": trade}))
    finally:
        await storage.stop()
    process = await build_run(settings, market_data=CcxtMarketData(venue))
    assert process.parts.settings.trading.symbols == ["BTC/USDT", "ETH/USDT"]  # DOGE is out
    await process.start()
    try:
        assert "DOGE/USDT" in venue.ohlcv_calls  # its candles, as for the others
        assert process.rules.book.in_force("DOGE/USDT").source is RulesSource.VENUE
    finally:
        await process.stop("test")
