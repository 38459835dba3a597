"""`qt run` against a local fake Binance: warm-up download, live polling, paper orders."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from bot.app import TradingProcess
from bot.ensemble_loader import load_ensemble
from bot.modes import _claim_run_database, build_run, run_provider
from bot.runner import run_process
from core.config import Settings, load_settings
from core.domain.enums import MarketType, PositionSide, TradingState
from core.domain.events import AlertRaised, Event, OrderDenied
from core.domain.market import timeframe_to_ms
from core.domain.market_rules import MarketRules
from core.domain.portfolio import Position
from core.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    DependencyError,
    OperationalError,
    RateLimited,
    TemporaryError,
)
from core.exchange.ccxt import CcxtMarketData, make_ccxt_exchange
from core.market.synthetic import generate_candles
from core.ml.artifacts import TrainingInfo
from core.ml.ensemble import EnsembleProvider
from core.ml.members import MEMBERS
from core.ml.training import TrainConfig, fit_member, prepare
from core.ml.versions import save_version
from core.services import reconciliation
from core.services.execution import client_order_id
from core.signals.handover import HandOverProvider
from jobs.registry import JOBS
from storage import open_storage
from tests.fakes import FakeExchange
from tests.fakes_http import FakeBinance, point_ccxt_at, set_minimal_markets
from tests.unit.services.engine_harness import ScriptedProvider

HOUR_MS = timeframe_to_ms("1h")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings(app={"data_dir": str(tmp_path / "ud")}, trading={"symbols": ["BTC/USDT"]})


@pytest.fixture
async def market_data() -> AsyncIterator[tuple[CcxtMarketData, FakeBinance, int]]:
    # The venue's history ends with the candle that closed most recently in real time: `qt run`
    # runs on the wall clock, as it does live.
    now_ms = time.time_ns() // 1_000_000
    if HOUR_MS - now_ms % HOUR_MS < 15_000:  # an hour is about to close: let it, so the
        await asyncio.sleep((HOUR_MS - now_ms % HOUR_MS) / 1000 + 0.5)  # data stays current
        now_ms = time.time_ns() // 1_000_000
    last_open = now_ms - now_ms % HOUR_MS - HOUR_MS
    n = 2_100
    series = generate_candles(
        "BTC/USDT", "1h", n, seed=5, start_ms=last_open - (n - 1) * HOUR_MS, start_price=42_000.0
    )
    async with FakeBinance({"BTCUSDT": series}, page_limit=1000) as fake:
        exchange = make_ccxt_exchange("binance", timeout_s=5)
        exchange.enableRateLimit = False
        point_ccxt_at(exchange, fake.base_url)
        set_minimal_markets(exchange)
        yield CcxtMarketData(exchange), fake, last_open


async def test_run_warms_up_polls_and_stops_cleanly(
    settings: Settings, market_data: tuple[CcxtMarketData, FakeBinance, int]
) -> None:
    md, fake, last_open = market_data
    stop = asyncio.Event()
    built: list[TradingProcess] = []

    async def build() -> TradingProcess:
        process = await build_run(settings, market_data=md)

        async def stop_after_first(_symbol: str, _candle: object) -> None:
            stop.set()

        process.market.on_candle(stop_after_first)
        built.append(process)
        return process

    before = asyncio.all_tasks()
    reason = await asyncio.wait_for(run_process(build, console=Console(record=True), stop=stop), 30)
    assert reason == "signal"
    assert {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()} == set()
    process = built[0]
    assert process.market.stats.last_candle_ms == last_open  # the newest closed candle
    assert process.engine.signals.frame("BTC/USDT") is not None
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        stored = await storage.candles.list_series()
        topics = [e.topic for e in await storage.events.list_events(limit=100)]
    finally:
        await storage.stop()
    # warm-up history (2,000 candles back from now) was downloaded before trading started
    assert [(s.exchange, s.symbol, s.rows, s.last_ms) for s in stored] == [
        ("binance", "BTC/USDT", 2_000, last_open)
    ]
    assert topics[0] == "process.started" and topics[-1] == "process.stopped"
    assert fake.served_pages >= 3  # preflight + paginated warm-up + first poll


def live_perp(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Return live perp settings on BTC/USDT (keys and the confirmation set), in the data
    folder of ``settings``."""
    for name, value in {
        "QT__TRADING__MODE": "live",
        "QT__EXCHANGE__MARKET_TYPE": "perp",
        "QT__EXCHANGE__API_KEY": "k",
        "QT__EXCHANGE__API_SECRET": "s",
        "QT__TRADING__LIVE_CONFIRMATION": "I accept real-money risk",
    }.items():
        monkeypatch.setenv(name, value)
    return load_settings(
        app={"data_dir": str(settings.app.data_dir)}, trading={"symbols": ["BTC/USDT"]}
    )


async def test_live_orders_go_to_the_venue_and_its_fills_come_back_through_the_sync_job(
    settings: Settings,
    market_data: tuple[CcxtMarketData, FakeBinance, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``QT__TRADING__MODE=live`` (perps): the engine's orders reach the venue (a fake one
    here), nothing is filled from candles, and the ``venue_sync`` job turns the venue's fills
    into events, after which the exit ladder goes out."""
    md, _fake, last_open = market_data
    live = live_perp(settings, monkeypatch)
    venue = FakeExchange(balances={"USDT": Decimal(10_000)}, track_positions=True)
    process = await build_run(live, market_data=md, exchange=venue)
    process.engine.signals.provider = ScriptedProvider(entries={last_open: 1})
    assert process.parts.mode_label == "live" and process.parts.venue is None
    assert "venue_sync" in process.scheduler.job_ids
    await process.start()
    try:
        entry = client_order_id("BTC/USDT", last_open, "e")
        for _ in range(200):  # the first poll hands the newest closed candle to the engine
            if entry in venue.orders:
                break
            await asyncio.sleep(0.05)
        assert venue.orders[entry].is_open  # sent, and not filled by any candle
        venue.script_fill(entry, Decimal(42_000))
        [sync] = [spec for spec in JOBS if spec.job_id == "venue_sync"]
        await process.scheduler.run_job(sync)
        kinds = sorted(o.request.type.value for o in venue.orders.values() if o.is_open)
        assert kinds == ["limit", "limit", "limit", "stop_market"]
        assert all(o.request.reduce_only for o in venue.orders.values() if o.is_open)
    finally:
        await process.stop("test")
    storage = open_storage(live.database_url)
    await storage.start()
    try:
        ran = await storage.events.list_events("job.ran")
        filled = await storage.events.list_events("order.filled")
    finally:
        await storage.stop()
    assert [(e.payload["job_id"], e.payload["detail"]) for e in ran] == [
        ("venue_sync", "1 event(s) from the venue")
    ]
    assert [e.payload["client_order_id"] for e in filled] == [entry]


async def test_a_position_at_the_venue_the_bot_did_not_open_holds_entries_at_start(
    settings: Settings,
    market_data: tuple[CcxtMarketData, FakeBinance, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Start-up reconciliation fails closed: the live venue holds a BTC position no trade of
    the bot's explains, so trading starts REDUCING with a critical alert and the entry the
    strategy asks for is not sent; the position is left alone."""
    md, _fake, last_open = market_data
    live = live_perp(settings, monkeypatch)
    venue = FakeExchange(balances={"USDT": Decimal(10_000)}, track_positions=True)
    venue.positions.append(
        Position(
            symbol="BTC/USDT",
            market_type=MarketType.PERP,
            side=PositionSide.LONG,
            amount=Decimal("0.05"),
            entry_price=Decimal(40_000),
            opened_ms=last_open - 3_600_000,
            updated_ms=last_open - 3_600_000,
        )
    )
    process = await build_run(live, market_data=md, exchange=venue)
    process.engine.signals.provider = ScriptedProvider(entries={last_open: 1})
    alerts: list[Event] = []

    async def heard(event: Event) -> None:
        alerts.append(event)

    process.bus.subscribe("alert.raised", heard)
    process.bus.subscribe(OrderDenied.topic, heard)
    await process.start()
    try:
        assert await process.trading_state.current() is TradingState.REDUCING
        for _ in range(200):  # the first poll hands the newest closed candle to the engine
            if any(isinstance(e, OrderDenied) for e in alerts):
                break
            await asyncio.sleep(0.05)
        [denied] = [e for e in alerts if isinstance(e, OrderDenied)]
        assert denied.reason == "reducing_only"  # the entry the strategy asked for
        assert venue.orders == {}  # nothing sent, for the entry or the unknown position
    finally:
        await process.stop("test")
    [alert] = [e for e in alerts if isinstance(e, AlertRaised)]
    assert isinstance(alert, AlertRaised) and alert.severity == "critical"
    assert "BTC/USDT long 0.05 at 40000" in alert.detail


async def test_a_venue_whose_book_cannot_be_read_at_start_is_asked_again_then_not_traded(
    settings: Settings,
    market_data: tuple[CcxtMarketData, FakeBinance, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Start-up reconciliation: positions the venue cannot report (a timeout, a 429) are
    asked for again with pauses, and the process starts once they come."""
    md, _fake, _last_open = market_data
    live = live_perp(settings, monkeypatch)
    monkeypatch.setattr(reconciliation, "READ_PAUSES_S", (0.01, 0.01))
    venue = FakeExchange(balances={"USDT": Decimal(10_000)}, track_positions=True)
    venue.fail_next("fetch_positions", TemporaryError("read timed out"))
    venue.fail_next("fetch_positions", RateLimited("429 Too Many Requests"))
    process = await build_run(live, market_data=md, exchange=venue)
    await process.start()  # the third read answers
    try:
        assert await process.trading_state.current() is TradingState.ACTIVE
    finally:
        await process.stop("test")


async def test_a_venue_that_never_reports_its_book_stops_the_start_before_any_order(
    settings: Settings,
    market_data: tuple[CcxtMarketData, FakeBinance, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    md, _fake, _last_open = market_data
    live = live_perp(settings, monkeypatch)
    monkeypatch.setattr(reconciliation, "READ_PAUSES_S", (0.01, 0.01))
    down = FakeExchange(balances={"USDT": Decimal(10_000)}, track_positions=True)
    for _ in range(3):
        down.fail_next("fetch_positions", TemporaryError("connection refused"))
    process = await build_run(live, market_data=md, exchange=down)
    try:
        with pytest.raises(DependencyError, match="3 tries, the last: connection refused"):
            await process.start()
    finally:
        await process.stop("test")
    assert down.orders == {}


class VenueWithRules(FakeExchange):
    """A fake live venue that states its market rules, as CcxtExchange does from ccxt."""

    max_leverage = 20

    async def load_market_rules(self, symbols: list[str]) -> dict[str, MarketRules]:
        return {
            s: MarketRules(
                symbol=s,
                amount_step=Decimal("0.001"),
                price_tick=Decimal("0.1"),
                min_amount=Decimal("0.001"),
                min_notional=Decimal(5),
                max_leverage=self.max_leverage,
            )
            for s in symbols
        }


@pytest.mark.parametrize("leverage", ["3", "50"])
async def test_live_trading_takes_the_venues_market_rules_at_start(
    settings: Settings,
    market_data: tuple[CcxtMarketData, FakeBinance, int],
    monkeypatch: pytest.MonkeyPatch,
    leverage: str,
) -> None:
    md, _fake, _last_open = market_data
    for name, value in {
        "QT__TRADING__MODE": "live",
        "QT__EXCHANGE__MARKET_TYPE": "perp",
        "QT__EXCHANGE__API_KEY": "k",
        "QT__EXCHANGE__API_SECRET": "s",
        "QT__TRADING__LIVE_CONFIRMATION": "I accept real-money risk",
        "QT__TRADING__MAX_LEVERAGE": leverage,
    }.items():
        monkeypatch.setenv(name, value)
    live = load_settings(
        app={"data_dir": str(settings.app.data_dir)}, trading={"symbols": ["BTC/USDT"]}
    )
    venue = VenueWithRules(balances={"USDT": Decimal(10_000)}, track_positions=True)
    process = await build_run(live, market_data=md, exchange=venue)
    try:
        if leverage == "50":
            with pytest.raises(ConfigError, match=r"MAX_LEVERAGE=50 is more than .* allows"):
                await process.start()
            return
        await process.start()
        rules = process.engine.rules("BTC/USDT")
        assert (rules.amount_step, rules.price_tick) == (Decimal("0.001"), Decimal("0.1"))
    finally:
        await process.stop("test")


async def test_a_perp_run_stores_and_seeds_from_the_perp_series(
    settings: Settings,
    market_data: tuple[CcxtMarketData, FakeBinance, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spot candles of the same symbol (an earlier import) are neither the warm-up's nor the
    live feed's: a perp run downloads, stores and trades on its own series."""
    md, _fake, last_open = market_data
    monkeypatch.setenv("QT__EXCHANGE__MARKET_TYPE", "perp")
    perp = load_settings(
        app={"data_dir": str(settings.app.data_dir)}, trading={"symbols": ["BTC/USDT"]}
    )
    storage = open_storage(perp.database_url)
    await storage.start()
    try:
        spot = generate_candles("BTC/USDT", "1h", 10, seed=1, start_ms=last_open - 9 * HOUR_MS)
        await storage.candles.upsert("binance", spot)  # spot, as `qt data import` filed it
    finally:
        await storage.stop()
    stop = asyncio.Event()

    async def build() -> TradingProcess:
        process = await build_run(perp, market_data=md)

        async def stop_after_first(_symbol: str, _candle: object) -> None:
            stop.set()

        process.market.on_candle(stop_after_first)
        return process

    assert await asyncio.wait_for(run_process(build, console=Console(), stop=stop), 30) == "signal"
    storage = open_storage(perp.database_url)
    await storage.start()
    try:
        stored = await storage.candles.list_series()
    finally:
        await storage.stop()
    assert [(s.market, s.rows, s.last_ms) for s in stored] == [
        ("perp", 2_000, last_open),
        ("spot", 10, last_open),
    ]


async def test_a_stored_future_candle_is_not_seeded_and_is_reported(
    settings: Settings,
    market_data: tuple[CcxtMarketData, FakeBinance, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database an earlier version wrote can end a series with a mistyped 2027 candle. Seeded,
    it made every later candle look older than the history's newest: the engine ignored them
    all and never had a signal again, without a word."""
    md, _fake, last_open = market_data
    future_ms = last_open + 400 * 24 * HOUR_MS
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        stray = generate_candles("BTC/USDT", "1h", 1, seed=1, start_ms=future_ms)
        await storage.candles.upsert("binance", stray)
    finally:
        await storage.stop()
    stop = asyncio.Event()
    built: list[TradingProcess] = []

    async def build() -> TradingProcess:
        process = await build_run(settings, market_data=md)

        async def stop_after_first(_symbol: str, _candle: object) -> None:
            stop.set()

        process.market.on_candle(stop_after_first)
        built.append(process)
        return process

    assert await asyncio.wait_for(run_process(build, console=Console(), stop=stop), 30) == "signal"
    frame = built[0].engine.signals.frame("BTC/USDT")
    assert frame is not None
    assert frame.index_of(last_open) is not None
    assert frame.index_of(future_ms) is None  # the history ends at the newest closed candle
    assert "binance spot BTC/USDT 1h: 1 stored candle left out" in caplog.text


# --- the ensemble in qt run ------------------------------------------------------------------


async def _save_a_version(settings: Settings, last_open: int, *, trees: int = 5) -> str:
    """Fit a tiny lgbm on older candles and save it as a version in the run database."""
    candles = generate_candles("BTC/USDT", "1h", 800, seed=3, start_ms=last_open - 4_000 * HOUR_MS)
    data = prepare([candles], TrainConfig(params={"n_estimators": trees, "n_jobs": 1}))
    member = MEMBERS["lgbm"].from_files(fit_member("lgbm", data, {"n_estimators": trees}).files)
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        info = TrainingInfo(
            train_start_ms=data.train_start_ms, train_end_ms=data.end_ms, label=data.label
        )
        version = await save_version(
            storage.model_versions,
            settings.app.data_dir,
            member,
            info,
            created_ms=last_open - 100 + trees,  # distinct ids
        )
    finally:
        await storage.stop()
    return version.id


async def _promote(settings: Settings, vid: str, at_ms: int) -> None:
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        await storage.model_versions.promote(vid, reason="test", ts_ms=at_ms)
    finally:
        await storage.stop()


def _tamper(settings: Settings, vid: str) -> None:
    model = settings.app.data_dir / "models" / "lgbm" / vid / "model.txt"
    model.write_bytes(model.read_bytes() + b"\n")


async def test_run_trades_the_champion_and_falls_back_from_a_tampered_one(
    settings: Settings,
    market_data: tuple[CcxtMarketData, FakeBinance, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    md, _fake, last_open = market_data
    ensemble = settings.model_copy(
        update={"strategy": settings.strategy.model_copy(update={"provider": "ensemble"})}
    )
    first = await _save_a_version(ensemble, last_open, trees=4)
    await _promote(ensemble, first, last_open - 10)
    second = await _save_a_version(ensemble, last_open, trees=5)
    await _save_a_version(ensemble, last_open, trees=6)  # newer, a candidate: not served
    await _promote(ensemble, second, last_open - 5)
    process = await build_run(ensemble, market_data=md)
    provider = process.engine.signals.provider
    assert isinstance(provider, EnsembleProvider)
    assert [m.version_id for m in provider.members] == [second]  # the champion, not newest
    await process.stop("test")

    _tamper(ensemble, second)  # the champion's file altered: the earlier champion serves
    provider = await run_provider(ensemble)
    assert isinstance(provider, EnsembleProvider)
    assert [m.version_id for m in provider.members] == [first]
    assert f"model version {second} is not served" in caplog.text
    assert "truncated or altered" in caplog.text

    _tamper(ensemble, first)  # none loads: the baseline trades until the manager trains
    provider = await run_provider(ensemble)
    assert isinstance(provider, HandOverProvider)
    assert provider.name == "ema_rsi"


async def test_a_backtest_refuses_a_tampered_champion(
    settings: Settings, market_data: tuple[CcxtMarketData, FakeBinance, int]
) -> None:
    _md, _fake, last_open = market_data
    vid = await _save_a_version(settings, last_open)
    _tamper(settings, vid)
    with pytest.raises(ArtifactError, match="truncated or altered"):
        await load_ensemble(settings)


async def test_run_without_saved_versions_trades_the_baseline_and_says_how_to_train(
    settings: Settings,
    market_data: tuple[CcxtMarketData, FakeBinance, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    md, _fake, _last_open = market_data
    ensemble = settings.model_copy(
        update={"strategy": settings.strategy.model_copy(update={"provider": "ensemble"})}
    )
    process = await build_run(ensemble, market_data=md)
    assert process.engine.signals.provider.name == "ema_rsi"
    assert process.learning is not None  # it trains the first champions, then hands over
    await process.stop("test")
    (warning,) = [r for r in caplog.records if r.name == "bot.modes" and r.levelname == "WARNING"]
    assert "no model version to serve: ema_rsi trades until the learning manager" in (
        warning.getMessage()
    )
    caplog.clear()
    unlearned = ensemble.model_copy(
        update={"learning": ensemble.learning.model_copy(update={"enabled": False})}
    )
    assert (await run_provider(unlearned)).name == "ema_rsi"  # type: ignore[union-attr]
    (warning,) = [r for r in caplog.records if r.name == "bot.modes" and r.levelname == "WARNING"]
    assert "no saved model versions: ema_rsi trades" in warning.getMessage()
    assert "`qt models train`" in warning.getMessage() and "\n" not in warning.getMessage()
    # Unset, qt run trades the baseline without looking for models at all.
    assert await run_provider(settings) is None


async def test_run_refuses_saved_versions_of_another_feature_set_in_one_line(
    settings: Settings,
) -> None:
    # Trained on 1h candles; qt run on 4h computes another feature set: the ensemble would
    # leave every member out of every decision and never trade, saying nothing.
    ensemble = settings.model_copy(
        update={
            "strategy": settings.strategy.model_copy(update={"provider": "ensemble"}),
            "trading": settings.trading.model_copy(update={"timeframe": "4h"}),
        }
    )
    vid = await _save_a_version(ensemble, 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS)
    with pytest.raises(DataError) as refused:
        await run_provider(ensemble)
    message = str(refused.value)
    assert vid in message and "4h" in message and "\n" not in message


async def test_a_second_qt_run_on_one_database_is_refused_while_the_first_runs(
    settings: Settings, market_data: tuple[CcxtMarketData, FakeBinance, int]
) -> None:
    """Two processes on one database would both manage its trades; the lock goes with the
    process that held it (stopped here; killed, the kernel drops it alike)."""
    md, _fake, _last_open = market_data
    stop = asyncio.Event()
    refused: list[str] = []

    async def build() -> TradingProcess:
        process = await build_run(settings, market_data=md)

        async def second_start(_symbol: str, _candle: object) -> None:
            with pytest.raises(OperationalError) as caught:
                await build_run(settings, market_data=md)
            refused.append(str(caught.value))
            stop.set()

        process.market.on_candle(second_start)
        return process

    await asyncio.wait_for(run_process(build, console=Console(record=True), stop=stop), 30)
    [why] = refused
    assert f"another `qt run` (pid {os.getpid()}) is using" in why
    assert "stop it first" in why
    lock = _claim_run_database(settings)  # free again once the first stopped
    assert lock is not None
    lock.release()
