"""An adversarial review of the walk-forward learning manager (``qt backtest --walk-forward``,
``qt evaluate``: the live ``LearningManager`` on simulated time).

Each test drives our own classes with hand-made inputs: planted candles (``tests.planted``),
small xgb fits, the manager's own registry. Those under "defects" reproduce one found in this
review (fixed since, but one known limitation still marked ``xfail(strict=True)``); the others
are attacks that held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.backtest import BacktestResult, run_backtest
from bot.candidate_training import WorkerPool, train_candidates
from bot.model_training import train_config
from bot.trading import meta_from
from bot.walk_forward import WalkForward, walk_forward_ensemble
from core.brains.exit_config import ExitConfig
from core.clock import SimClock
from core.config import ModelsSettings, Settings, load_settings
from core.domain.market import CandleSeries
from core.domain.model_versions import ModelStatus
from core.errors import ConfigError, DataError, QTError
from core.market.synthetic import generate_candles
from core.ml.training import TrainConfig, TrainingSet, prepare_symbol
from core.ports import Storage
from jobs.registry import JOBS, JobContext, JobSpec
from storage.memory import MemoryStorage
from tests.integration.test_learning_manager import HOUR, T0, Live, Trainer
from tests.integration.test_learning_manager import _manager as manager_on
from tests.integration.test_learning_manager import storage as storage  # the fixture
from tests.integration.test_learning_manager import tiny as tiny  # the fixture
from tests.integration.test_walk_forward import START, regimes
from tests.integration.test_walk_forward import settings as settings  # the fixture
from tests.integration.walk_forward_attack_fits import die_once

Tiny = tuple[TrainingSet, list[dict[str, bytes]]]
GENEROUS_S = 120.0  # a bound no healthy fit of these sizes nears, even on a busy machine


def only_xgb(settings: Settings, **models: object) -> Settings:
    """One small member: the attacks are on the manager, not on the models."""
    return settings.model_copy(
        update={"models": settings.models.model_copy(update={"members": ["xgb"], **models})}
    )


def with_volume(series: CandleSeries, quote_volume: float) -> CandleSeries:
    """``series`` with ``quote_volume`` traded per candle (what a volume universe ranks)."""
    s = series
    volume = np.full(len(s), quote_volume) / s.close
    return CandleSeries.from_columns(
        s.symbol, s.timeframe, s.ts_ms, s.open, s.high, s.low, s.close, volume
    )


async def backtest(
    settings: Settings, series: dict[str, CandleSeries], start_ms: int
) -> tuple[BacktestResult, WalkForward]:
    provider, trainer = walk_forward_ensemble(settings)
    result = await run_backtest(
        settings, series, start_ms=start_ms, provider=provider, walk_forward=trainer
    )
    return result, trainer


def walk_forward_folders(root: Path) -> list[Path]:
    return sorted(root.glob("qt-walk-forward-*"))


# --- defects ---------------------------------------------------------------------------------


async def test_a_symbol_that_starts_later_does_not_stop_the_others_training(
    settings: Settings,
) -> None:
    s = only_xgb(settings)
    btc = regimes(seed=1, drift=0.7, n=1_700)
    late = regimes(seed=5, drift=0.7, symbol="ETH/USDT").slice(1_100, 1_700)  # listed later

    _, trainer = await backtest(s, {"BTC/USDT": btc, "ETH/USDT": late}, int(btc.ts_ms[START]))

    assert trainer.runs == 3  # a check at 240 h, 480 h, 720 h: each trains
    refused = [d.reason for d in trainer.decisions if d.kind == "not trained"]
    assert not refused, refused
    assert trainer.trained == 3


async def test_with_a_dynamic_universe_only_its_members_are_trained_on(
    settings: Settings,
) -> None:
    s = only_xgb(settings).model_copy(
        update={
            "universe": settings.universe.model_copy(
                update={"mode": "volume", "top_n": 1, "min_listing_days": 0.0}
            )
        }
    )
    big = with_volume(regimes(seed=1, drift=0.7, n=1_300), 1e6)
    thin = with_volume(regimes(seed=5, drift=0.7, n=1_300, symbol="ETH/USDT"), 1.0)

    result, trainer = await backtest(s, {"BTC/USDT": big, "ETH/USDT": thin}, int(big.ts_ms[START]))

    assert result.universe is not None
    assert result.universe.ever_selected == ("BTC/USDT",)
    trained = [v for report in trainer.manager.reports for v in report.trained]
    assert trained
    assert all(v.symbols == ("BTC/USDT",) for v in trained), [v.symbols for v in trained]


def test_an_infinite_cadence_is_refused_by_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    # "never retrain nhits": what a user might write
    monkeypatch.setenv("QT__MODELS__CADENCE_HOURS", '{"nhits": Infinity}')
    with pytest.raises(ConfigError, match="cadence"):
        load_settings()


async def test_a_walk_forward_whose_start_fails_leaves_no_temporary_folder(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp puts its folders
    # model_copy skips the validators: the trigger stands whatever the settings refuse
    s = only_xgb(settings, cadence_hours={"xgb": float("inf")})
    series = regimes(seed=1, drift=0.7, n=1_300)

    with pytest.raises((QTError, OverflowError)):  # which: the test above
        await backtest(s, {series.symbol: series}, int(series.ts_ms[START]))

    assert walk_forward_folders(tmp_path) == []


async def test_a_member_whose_first_version_was_rejected_is_trained_at_the_next_due_check(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock, live, trainer = SimClock(T0), Live(), Trainer(data)
    manager, _ = await manager_on(
        storage, tmp_path, clock, live, trainer, cadence_ms={"xgb": 400 * HOUR}
    )
    run = trainer.fit(files[0], better=True, champion=False)
    flat = dataclasses.replace(
        run.fits["xgb"],
        fit=dataclasses.replace(
            run.fits["xgb"].fit, metrics={**run.fits["xgb"].fit.metrics, "healthy": 0.0}
        ),
    )
    trainer.script.append(dataclasses.replace(run, fits={"xgb": flat}))
    assert "training started" in await manager.check()
    report = await manager.wait()
    assert report is not None and "rejected (near-constant output)" in " ".join(report.lines)
    assert await storage.model_versions.newest("xgb", ModelStatus.CHAMPION) is None

    clock.advance_to(T0 + 200 * HOUR)  # the schedule (168 h) is due; no champion serves
    trainer.script.append(trainer.fit(files[1], better=True, champion=False))
    said = await manager.check()

    assert "training started" in said, said


async def test_a_kept_pool_whose_idle_worker_died_trains_the_next_run(tmp_path: Path) -> None:
    series = [generate_candles("BTC/USDT", "1h", 1_200, seed=2)]
    config = TrainConfig(params={"n_estimators": 10, "n_jobs": 1})
    pool = WorkerPool(1)
    try:
        first = await train_candidates(
            series,
            ["xgb"],
            champions={},
            config=config,
            exits=ExitConfig(),
            timeout_s=GENEROUS_S,
            pool=pool,
        )
        assert set(first.fits) == {"xgb"}
        (worker,) = multiprocessing.active_children()  # kept for the next run
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)

        second = await train_candidates(
            series,
            ["xgb"],
            champions={},
            config=config,
            exits=ExitConfig(),
            timeout_s=GENEROUS_S,
            pool=pool,
        )

        assert set(second.fits) == {"xgb"} and not second.failures
    finally:
        await pool.discard()
    assert not multiprocessing.active_children()


@pytest.mark.xfail(
    strict=True,
    reason="known limitation: the leak guard (prepare_symbol -> guard_features) refuses most "
    "random walks of a few hundred rows (a chance rank correlation of a calendar or trend "
    "column with the overlapping 48-candle forward return passes its 0.5 limit); a refused "
    "symbol is now left out of the training run alone (the others train), but a short "
    "history still cannot be trained on until it is longer",
)
def test_the_leak_guard_passes_a_short_random_walk() -> None:
    config = train_config(ModelsSettings(), threads=1)  # the defaults the walk-forward uses
    refused = []
    for seed in range(8):
        candles = generate_candles("BTC/USDT", "1h", 520, seed=seed)  # ~3 weeks: 320 rows
        try:
            prepare_symbol(candles, config, ExitConfig())
        except DataError as exc:
            refused.append(f"seed {seed}: {exc}")
    assert not refused, refused


def test_an_unknown_member_in_the_disabled_list_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QT__STRATEGY__ENSEMBLE_DISABLED", '["lgb"]')  # meant lgbm
    with pytest.raises(QTError, match="lgb"):
        walk_forward_ensemble(load_settings())


# --- attacks that held -----------------------------------------------------------------------


async def test_a_kept_pool_broken_by_a_crash_mid_run_gives_the_next_run_fresh_workers(
    tmp_path: Path,
) -> None:
    series = [generate_candles("BTC/USDT", "1h", 1_200, seed=2)]
    config = TrainConfig(params={"n_estimators": 10, "n_jobs": 1, "pid_dir": str(tmp_path)})
    pool = WorkerPool(2)
    try:
        first = await train_candidates(
            series,
            ["xgb", "lgbm"],
            champions={},
            config=config,
            exits=ExitConfig(),
            timeout_s=GENEROUS_S,
            fit=die_once,
            pool=pool,
        )
        assert any("BrokenProcessPool" in why for why in first.failures.values()), first
        second = await train_candidates(
            series,
            ["xgb", "lgbm"],
            champions={},
            config=config,
            exits=ExitConfig(),
            timeout_s=GENEROUS_S,
            fit=die_once,
            pool=pool,
        )
        assert set(second.fits) == {"xgb", "lgbm"} and not second.failures
        assert multiprocessing.active_children()  # kept for the runs after
    finally:
        await pool.discard()
    assert not multiprocessing.active_children()


class Watched(WalkForward):
    """The walk-forward, keeping the backtest's storage it was started with (to read the
    registry and the recorded predictions after the run)."""

    storage: MemoryStorage

    async def start(self, *, storage: MemoryStorage, **given: Any) -> None:
        self.storage = storage
        await super().start(storage=storage, **given)


async def test_every_recorded_prediction_is_of_a_closed_candle_by_a_version_trained_before(
    settings: Settings,
) -> None:
    learning = settings.learning.model_copy(  # shadows often, judged after a day
        update={
            "every_hours": 100.0,
            "min_new_candles": 50,
            "gate_alpha": 0.9,
            "shadow_hours": 24.0,
            "shadow_min_rows": 20,
            "shadow_margin": 1.0,  # a shadow not worse by a whole nat is promoted
        }
    )
    s = only_xgb(settings, retrain_hours=120.0).model_copy(update={"learning": learning})
    series = regimes(seed=1, drift=0.7, n=1_500)
    provider, _ = walk_forward_ensemble(s)
    trainer = Watched(provider, s)

    result = await run_backtest(
        s,
        {series.symbol: series},
        start_ms=int(series.ts_ms[START]),
        provider=provider,
        walk_forward=trainer,
    )

    checks = [t for job, t in result.job_runs if job == "learning"]
    assert len(checks) == 5 and trainer.checks == 5
    kinds = {d.kind for d in trainer.decisions}
    assert {"first champion", "passed the gate", "promoted"} <= kinds, trainer.decisions
    assert len(provider.sets) >= 2  # the promotions changed what serves
    versions = await trainer.storage.model_versions.list_versions()
    shadowed = 0
    for v in versions:
        assert v.train_end_ms <= v.created_ms and v.created_ms in checks  # trained by then
        rows = await trainer.storage.predictions.list_predictions(v.id)
        for p in rows:
            assert p.ts_ms + HOUR <= p.created_ms  # its candle had closed when recorded
            assert p.ts_ms >= v.train_end_ms  # out of sample
        shadowed += bool(rows) and v.status is not ModelStatus.CHAMPION
    assert shadowed >= 1  # a shadow's record was kept
    # each serving version's every candle from its activation to the last check, once
    bounds = [st.active_from_ms for st in provider.sets] + [checks[-1]]
    for i, member_set in enumerate(provider.sets):
        a, b = bounds[i], bounds[i + 1]
        assert a is not None and b is not None
        want = [int(t) for t in series.ts_ms if a < t + HOUR <= b]
        for m in member_set.members:
            assert m.trained_until_ms <= a
            got = [
                p.ts_ms
                for p in await trainer.storage.predictions.list_predictions(m.version_id)
                if a < p.ts_ms + HOUR <= b
            ]
            assert got == want


async def test_a_disabled_member_is_never_trained_and_a_cadence_shorter_than_the_check_trains_each(
    settings: Settings,
) -> None:
    s = settings.model_copy(
        update={
            "models": settings.models.model_copy(
                update={"members": ["xgb", "lgbm"], "cadence_hours": {"xgb": 1.0, "lgbm": 1.0}}
            ),
            "strategy": settings.strategy.model_copy(update={"ensemble_disabled": ["lgbm"]}),
        }
    )
    series = regimes(seed=1, drift=0.7, n=1_500)

    result, trainer = await backtest(s, {series.symbol: series}, int(series.ts_ms[START]))

    checks = [t for job, t in result.job_runs if job == "learning"]
    trained = [
        (d.ts_ms, d.member)
        for d in trainer.decisions
        if d.member != "every member"
        and d.kind in ("first champion", "passed the gate", "rejected")
    ]
    assert trained == [(t, "xgb") for t in checks]
    assert all({m.name for m in st.members} == {"xgb"} for st in trainer.provider.sets)
    every = s.model_copy(
        update={"strategy": s.strategy.model_copy(update={"ensemble_disabled": ["xgb", "lgbm"]})}
    )
    with pytest.raises(QTError, match="QT__MODELS__MEMBERS"):
        walk_forward_ensemble(every)


class Abort(BaseException):
    """What a Ctrl-C or a kill of a job does to the replay: nothing catches it on the way."""


async def abort(_ctx: JobContext) -> str:
    raise Abort("stopped mid-run")


async def test_a_backtest_that_dies_mid_run_leaves_no_folder_nor_worker(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp puts its folders
    s = only_xgb(settings)
    series = regimes(seed=1, drift=0.7, n=1_300)
    # after the first check (240 h) trained and kept its workers
    boom = JobSpec(job_id="boom", every_market_s=300 * 3600.0, target=abort, in_backtest=True)
    provider, trainer = walk_forward_ensemble(s)

    with pytest.raises(Abort):
        await run_backtest(
            s,
            {series.symbol: series},
            start_ms=int(series.ts_ms[START]),
            provider=provider,
            walk_forward=trainer,
            jobs=(*JOBS, boom),
        )

    assert trainer.runs == 1 and trainer.trained == 1
    assert walk_forward_folders(tmp_path) == []
    assert not multiprocessing.active_children()


async def test_a_backtest_cancelled_while_it_trains_leaves_no_folder_nor_worker(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    s = only_xgb(settings)
    series = regimes(seed=1, drift=0.7, n=1_500)
    provider, trainer = walk_forward_ensemble(s)
    run = asyncio.create_task(
        run_backtest(
            s,
            {series.symbol: series},
            start_ms=int(series.ts_ms[START]),
            provider=provider,
            walk_forward=trainer,
        )
    )
    for _ in range(600):  # the workers spawned (the first check trains): at most 60 s
        if multiprocessing.active_children() or run.done():
            break
        await asyncio.sleep(0.1)
    assert multiprocessing.active_children() and walk_forward_folders(tmp_path)
    assert trainer.manager.training and trainer.runs == 0  # the first run under way

    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    assert walk_forward_folders(tmp_path) == []
    assert not multiprocessing.active_children()


async def test_the_meta_strategy_walks_forward_alike_fast_and_full(settings: Settings) -> None:
    s = only_xgb(settings).model_copy(
        update={
            "strategy": settings.strategy.model_copy(
                update={"provider": "meta", "meta_min_record": 3}
            ),
            "regime": settings.regime.model_copy(update={"vol_history": 200}),
        }
    )
    series = regimes(seed=1, drift=0.7, n=1_200)  # one check
    runs = []
    for fast in (True, False):
        provider, trainer = walk_forward_ensemble(s)
        result = await run_backtest(
            s,
            {series.symbol: series},
            start_ms=int(series.ts_ms[START]),
            provider=meta_from(s, provider),
            walk_forward=trainer,
            fast=fast,
        )
        runs.append((result, trainer))
    (fast_run, fast_trainer), (full_run, full_trainer) = runs
    assert fast_trainer.trained == 1 and fast_trainer.decisions == full_trainer.decisions
    assert fast_run.job_runs == full_run.job_runs
    assert [(t.symbol, t.opened_ms, t.pnl) for t in fast_run.trades] == [
        (t.symbol, t.opened_ms, t.pnl) for t in full_run.trades
    ]
