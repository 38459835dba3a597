"""The walk-forward ensemble in a backtest: the learning manager on simulated time (its
learning job) trains, gates and serves the members, each prediction from members trained on
candles closed before it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bot.backtest import BacktestResult, run_backtest
from bot.walk_forward import WalkForward, walk_forward_ensemble
from core.config import Settings, load_settings
from core.domain.market import CandleSeries, timeframe_to_ms
from core.ml.ensemble import EnsembleProvider
from core.ml.labels import triple_barrier_labels
from tests.planted import HOUR_MS, T0, N, regimes

START = 900  # trading (and the first retrain's clock) from this candle on


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings(
        app={"data_dir": str(tmp_path / "ud")},
        models={"retrain_hours": 240, "window_days": 0, "trees": 20},
    )


async def walk_forward(
    settings: Settings, series: CandleSeries, *, fast: bool = True
) -> tuple[BacktestResult, WalkForward, EnsembleProvider]:
    provider, trainer = walk_forward_ensemble(settings)
    result = await run_backtest(
        settings,
        {series.symbol: series},
        start_ms=int(series.ts_ms[START]),
        provider=provider,
        walk_forward=trainer,
        fast=fast,
    )
    return result, trainer, provider


def hit_rate(provider: EnsembleProvider, series: CandleSeries) -> tuple[float, float, int]:
    """Return the label's rate at the ensemble's entries, its base rate after the first
    retrain, and how many entries there were."""
    frame = provider.compute(series)
    labels = triple_barrier_labels(series, horizon=24, exits=provider.exits)
    after = np.arange(N) >= START
    entries = (frame.entry == 1) & labels.valid & after
    base = float(labels.y[labels.valid & after].mean())
    hits = float(labels.y[entries].mean()) if entries.any() else float("nan")
    return hits, base, int(entries.sum())


def assert_trained_before_each_prediction(provider: EnsembleProvider, series: CandleSeries) -> None:
    """Every prediction comes from members trained on labels that ended before its candle."""
    frame = provider.compute(series)
    active = np.array([s.active_from_ms for s in provider.sets])
    close_ms = series.ts_ms + timeframe_to_ms(series.timeframe)
    used = np.searchsorted(active, close_ms, side="left") - 1  # the newest set active before
    predicted = np.flatnonzero(np.isfinite(frame.member_p).any(axis=1))
    assert len(predicted) > 500 and (used[predicted] >= 0).all()  # none before the first set
    ends = np.array([max(m.trained_until_ms for m in s.members) for s in provider.sets])
    assert (ends[used[predicted]] <= series.ts_ms[predicted]).all()
    assert (ends <= active).all()


async def test_the_walk_forward_ensemble_learns_a_planted_signal_out_of_sample(
    settings: Settings,
) -> None:
    signal = regimes(seed=1, drift=0.7)
    result, trainer, provider = await walk_forward(settings, signal)
    every_ms = 240 * HOUR_MS
    checks = [t for job, t in result.job_runs if job == "learning"]
    assert checks == list(
        range(int(signal.ts_ms[START]) + every_ms, T0 + N * HOUR_MS + 1, every_ms)
    )
    # every check trains (240 h > the 168 h schedule, 240 new candles > 168): the first
    # versions become champions at once, every later candidate is gated against them
    assert trainer.checks == trainer.runs == len(checks)
    assert trainer.trained == 2 * len(checks)
    first = [d for d in trainer.decisions if d.kind == "first champion"]
    assert [(d.member, d.ts_ms) for d in first] == [("xgb", checks[0]), ("lgbm", checks[0])]
    gated = [d for d in trainer.decisions if d.kind in ("passed the gate", "rejected")]
    assert len(gated) == 2 * (len(checks) - 1)
    assert all("diebold-mariano" in d.reason or "p " in d.reason for d in gated), gated
    hits, base, entries = hit_rate(provider, signal)
    assert entries >= 50 and hits > base + 0.1, (hits, base, entries)
    assert result.trades  # it traded on them
    assert_trained_before_each_prediction(provider, signal)


async def test_on_pure_noise_the_walk_forward_ensemble_is_no_better_than_chance(
    settings: Settings,
) -> None:
    noise = regimes(seed=2, drift=0.0)
    _, trainer, provider = await walk_forward(settings, noise)
    assert trainer.trained >= 10
    hits, base, entries = hit_rate(provider, noise)
    assert entries == 0 or hits < base + 0.05, (hits, base, entries)


async def test_fast_and_full_replays_retrain_and_trade_alike(settings: Settings) -> None:
    series = regimes(seed=1, drift=0.7, n=1_500)  # two retrains
    (fast, fast_trainer, _), (full, full_trainer, _) = [
        await walk_forward(settings, series, fast=f) for f in (True, False)
    ]
    assert fast_trainer.runs == 2 and fast_trainer.decisions == full_trainer.decisions
    assert fast.job_runs == full.job_runs
    assert len(fast.fills) >= 10
    key = [(f.client_order_id, f.amount, f.price, f.ts_ms) for f in fast.fills]
    assert key == [(f.client_order_id, f.amount, f.price, f.ts_ms) for f in full.fills]
