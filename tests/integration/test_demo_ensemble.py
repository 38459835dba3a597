"""The demo's ensemble: the baseline trades while it trains in worker processes, then it does;
a restart with saved versions skips the training; its entries are explained."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bot.demo_models import DEMO_MODELS_DIR, DemoEnsemble
from bot.modes import build_demo, demo_market
from bot.trading import ema_rsi_from
from core.clock import SimClock
from core.config import Settings, load_settings
from core.domain.events import Event, SignalProviderChanged
from core.ml.ensemble import EnsembleProvider
from core.services.bus import EventBus
from core.signals.handover import HandOverProvider
from storage import open_storage
from storage.memory import MemoryStorage


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings(
        app={"data_dir": str(tmp_path / "ud")},
        demo={"history_candles": 1500, "replay_candles": 200, "candles_per_second": 40.0},
        models={"trees": 20},  # a few trees: the test is the hand-over, not the model
    )


def _demo_ensemble(
    settings: Settings, storage: MemoryStorage, bus: EventBus
) -> tuple[DemoEnsemble, HandOverProvider, list[str]]:
    markets, replay_ms = demo_market(settings)
    signals = HandOverProvider(ema_rsi_from(settings))
    invalidated: list[str] = []
    demo = DemoEnsemble(
        settings,
        signals=signals,
        history={s: m.between(None, replay_ms) for s, m in markets.items()},
        repo=storage.model_versions,
        bus=bus,
        clock=SimClock(replay_ms),
        invalidate=lambda: invalidated.append("frames"),
        started_s=0.0,
    )
    return demo, signals, invalidated


async def test_the_baseline_serves_until_the_ensemble_trained_then_a_restart_skips_training(
    settings: Settings,
) -> None:
    storage, bus, changes = MemoryStorage(), EventBus(), []

    async def collect(event: Event) -> None:
        assert isinstance(event, SignalProviderChanged)
        changes.append((event.provider, event.previous))

    bus.subscribe(SignalProviderChanged.topic, collect)
    demo, signals, invalidated = _demo_ensemble(settings, storage, bus)
    await demo.start()
    try:
        assert signals.name == "ema_rsi" and changes == [("ema_rsi", "")]  # training runs
        await asyncio.wait_for(demo.ready.wait(), timeout=120)
        assert demo._pool is None  # its workers are gone once it trained
    finally:
        await demo.stop()
    assert isinstance(signals.current, EnsembleProvider) and signals.name == "ensemble"
    assert changes == [("ema_rsi", ""), ("ensemble", "ema_rsi")] and invalidated == ["frames"]
    saved = [await storage.model_versions.newest(m) for m in ("lgbm", "xgb")]
    assert all(v is not None for v in saved)
    assert (settings.app.data_dir / DEMO_MODELS_DIR / "models" / "xgb").is_dir()

    changes.clear()
    again, signals_again, _ = _demo_ensemble(settings, storage, bus)  # the same database
    await again.start()
    assert again.ready.is_set() and signals_again.name == "ensemble"  # no training started
    assert again._task is None and again._pool is None
    await again.stop()
    assert changes == [("ensemble", "ema_rsi")]
    ids = {m.version_id for m in signals_again.current.members}  # type: ignore[attr-defined]
    assert ids == {v.id for v in saved if v is not None}


async def test_too_little_history_keeps_the_baseline_and_spawns_nothing(
    settings: Settings,
) -> None:
    small = settings.model_copy(
        update={"demo": settings.demo.model_copy(update={"history_candles": 100})}
    )
    demo, signals, _ = _demo_ensemble(small, MemoryStorage(), EventBus())
    await demo.start()
    assert demo._pool is None and not demo.ready.is_set() and signals.name == "ema_rsi"
    await demo.stop()


async def test_qt_demo_trades_the_baseline_until_its_ensemble_trained_then_the_ensemble(
    settings: Settings,
) -> None:
    demo = settings.demo.model_copy(update={"replay_candles": 2000, "candles_per_second": 20.0})
    process = await build_demo(settings.model_copy(update={"demo": demo}))
    (trainer,) = [s for s in process.services if isinstance(s, DemoEnsemble)]
    await process.start()
    try:
        await asyncio.wait_for(trainer.ready.wait(), timeout=120)  # meanwhile the feed runs
    finally:
        await process.stop("test")
    provider = process.engine.signals.provider
    assert isinstance(provider, HandOverProvider)
    assert isinstance(provider.current, EnsembleProvider)
    storage = open_storage(f"sqlite+aiosqlite:///{settings.app.data_dir / 'demo.sqlite'}")
    await storage.start()
    try:
        events = await storage.events.list_events(limit=100_000)
    finally:
        await storage.stop()
    changed = [
        (e.payload["provider"], e.payload["previous"])
        for e in events
        if e.topic == "strategy.provider_changed"
    ]
    assert changed == [("ema_rsi", ""), ("ensemble", "ema_rsi")]
    assert events[0].topic == "process.started"


async def test_qt_demo_with_the_baseline_set_trains_nothing(settings: Settings) -> None:
    baseline = settings.model_copy(
        update={"strategy": settings.strategy.model_copy(update={"provider": "ema_rsi"})}
    )
    process = await build_demo(baseline)
    assert process.services == [] and process.engine.signals.provider.name == "ema_rsi"
    await process.stop("test")
