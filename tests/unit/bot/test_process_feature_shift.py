"""The running process's feature drift source: the worst feature shift of each champion,
computed off the loop and once a market day for all members (it was computed at every hourly
check, once per member, and held the loop for a quarter of its time in the demo)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import bot.learning
from bot.learning import FEATURE_EVERY_MS, ProcessLearning, feature_sample
from core.clock import SimClock
from core.config import load_settings
from core.domain.market import CandleSeries
from core.domain.model_versions import ModelStatus, ModelVersion
from core.market.synthetic import generate_candles
from core.ml.features import compute_features
from core.ml.learning import worst_psi
from core.services.bus import EventBus
from storage.memory import MemoryStorage

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01
N = 2_400


def champion(member: str, *, end: int = 1_500) -> ModelVersion:
    return ModelVersion(
        id=f"{member}-1",
        member=member,
        status=ModelStatus.CHAMPION,
        train_start_ms=T0 + 300 * HOUR,
        train_end_ms=T0 + end * HOUR,
        feature_set_hash="h",
        metrics={"log_loss": 0.69, "accuracy": 0.5},
        artifact_path=f"models/{member}/{member}-1",
        artifact_sha256="0" * 64,
        created_ms=T0 + end * HOUR,
        symbols=("BTC/USDT",),
        status_ms=T0 + end * HOUR,
    )


def head(series: CandleSeries, n: int) -> CandleSeries:
    return dataclasses.replace(
        series,
        **{f: getattr(series, f)[:n] for f in ("ts_ms", "open", "high", "low", "close", "volume")},
    )


async def process_sources(tmp_path: Path) -> SimpleNamespace:
    """A ProcessLearning on 2,400 stored BTC candles, the engine trading on the first 2,000,
    at the 2,000th hour: its feature-shift source, the clock, the live histories, the series
    and the process itself."""
    settings = load_settings(trading={"symbols": ["BTC/USDT"]})
    storage = MemoryStorage()
    full = generate_candles("BTC/USDT", "1h", N, seed=3, start_ms=T0)
    await storage.candles.upsert("binance", full)
    live = {"BTC/USDT": head(full, 2_000)}
    engine = SimpleNamespace(signals=SimpleNamespace(histories=lambda: live))
    clock = SimClock(T0 + 2_000 * HOUR)
    process = ProcessLearning(
        settings,
        engine=engine,  # type: ignore[arg-type]
        storage=storage,
        source="binance",
        data_dir=tmp_path,
        clock=clock,
        bus=EventBus(),
    )
    return SimpleNamespace(
        shift=process.sources().features, clock=clock, live=live, full=full, process=process
    )


@pytest.fixture
async def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    computed: list[int] = []

    def counted(series: CandleSeries) -> Any:
        computed.append(len(series))
        return compute_features(series)

    monkeypatch.setattr(bot.learning, "compute_features", counted)
    made = await process_sources(tmp_path)
    made.computed = computed
    return made


async def test_the_shift_is_the_worst_psi_of_the_champions_training_rows_against_the_live_ones(
    sources: Any,
) -> None:
    xgb = champion("xgb")
    shift = await sources.shift(xgb)

    live = head(sources.full, 2_000)
    trained = head(sources.full, 1_500)
    expected = worst_psi(
        *feature_sample(
            [compute_features(trained)],
            [compute_features(live)],
            xgb,
            tf_ms=HOUR,
            now_ms=sources.clock.now_ms(),
            live_rows=720,
        )
    )
    assert shift is not None and shift == pytest.approx(expected)


async def test_the_live_features_are_computed_once_a_market_day_for_every_member(
    sources: Any,
) -> None:
    xgb, lgbm, nhits = champion("xgb"), champion("lgbm"), champion("nhits", end=1_400)
    first = [await sources.shift(c) for c in (xgb, lgbm, nhits)]
    # the live histories once; the two training windows (xgb and lgbm share one) once each
    assert len(sources.computed) == 3 and sources.computed[0] == 2_000
    assert first[0] == first[1] and all(s is not None for s in first)

    for hour in range(1, 24):  # hourly checks through the day: nothing computed again
        sources.clock.advance_to(T0 + (2_000 + hour) * HOUR)
        assert [await sources.shift(c) for c in (xgb, lgbm, nhits)] == first
    assert len(sources.computed) == 3

    # a market day later the live rows are read again (they have grown); the windows are not
    sources.live["BTC/USDT"] = sources.full
    sources.clock.advance_to(T0 + 2_000 * HOUR + FEATURE_EVERY_MS)
    later = [await sources.shift(c) for c in (xgb, lgbm, nhits)]
    assert len(sources.computed) == 4 and sources.computed[-1] == N
    assert later != first
