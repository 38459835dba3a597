"""The walk-forward with the torch members: per-member cadences, warm starts from the
champion, and the same model as ``qt models train`` on the same candles (the parity)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from bot.holdout_backtest import holdout_backtest
from bot.learning import train_in_workers
from bot.model_training import train_and_save, train_config
from bot.trading import exit_config_from
from bot.walk_forward import WalkForward
from core.config import Settings
from core.errors import QTError
from core.ml.ensemble import EnsembleProvider
from core.ml.features import compute_features
from core.ml.members import MEMBERS as KNOWN
from core.ml.training import ChampionRef
from core.ml.versions import load_version
from storage.memory import MemoryStorage
from tests.integration.test_walk_forward import HOUR_MS, START, regimes, walk_forward
from tests.integration.test_walk_forward import settings as settings  # the fixture

# Small sizes: 20 trees, 2 epochs of the torch members (1 from a warm start).
SMALL = {"trees": 20, "epochs": 2, "warm_epochs": 1}


def with_models(settings: Settings, **models: object) -> Settings:
    return settings.model_copy(
        update={"models": settings.models.model_copy(update={**SMALL, **models})}
    )


async def test_each_member_is_trained_on_its_own_cadence(settings: Settings) -> None:
    s = with_models(settings, members=["xgb", "nhits"], cadence_hours={"nhits": 480.0})
    # no drift: a drifting member is trained at the next check whatever its cadence
    no_drift = {"drift_log_loss_excess": 100.0, "drift_hit_rate_drop": 1.0, "drift_psi": 1e9}
    s = s.model_copy(update={"learning": s.learning.model_copy(update=no_drift)})
    series = regimes(seed=1, drift=0.7, n=1_900)

    result, trainer, provider = await walk_forward(s, series)

    checks = [t for job, t in result.job_runs if job == "learning"]
    assert len(checks) == 4  # the one job, every 240 market hours
    assert checks[0] == int(series.ts_ms[START]) + 240 * HOUR_MS
    trained = [
        (d.ts_ms, d.member)
        for d in trainer.decisions
        if d.kind in ("first champion", "passed the gate", "rejected")
    ]
    # nhits every 480 hours: at the first check and two checks later
    expected = [(t, "xgb") for t in checks] + [(checks[0], "nhits"), (checks[2], "nhits")]
    assert sorted(trained) == sorted(expected)
    for member_set in provider.sets:  # the one not trained serves on beside the other
        assert {m.name for m in member_set.members} == {"xgb", "nhits"}


async def test_a_torch_candidate_starts_from_its_champions_weights(settings: Settings) -> None:
    series = regimes(seed=1, drift=0.7, n=1_400)
    for warm_start, epochs in ((True, 1), (False, 2)):
        s = with_models(settings, members=["nhits"], warm_start=warm_start)
        first = await train_in_workers(s, [series.slice(0, 1_000)], ["nhits"], {})
        champion = first.fits["nhits"].fit
        assert KNOWN["nhits"].from_files(champion.files).fit_info["warm_start"] is False
        ref = ChampionRef(files=champion.files, trained_until_ms=first.data.end_ms)

        second = await train_in_workers(s, [series], ["nhits"], {"nhits": ref})

        info = KNOWN["nhits"].from_files(second.fits["nhits"].fit.files).fit_info
        assert (info["warm_start"], info["epochs"]) == (warm_start, epochs)
        assert second.fits["nhits"].champion_p is not None  # scored beside the champion


MEMBERS = ["xgb", "lgbm", "nhits", "patchtst"]


async def test_the_walk_forward_model_at_t_predicts_as_qt_models_train_until_t(
    settings: Settings, tmp_path: Path
) -> None:
    s = with_models(settings, members=MEMBERS)
    series = regimes(seed=1, drift=0.7, n=1_700)
    t_ms = 1_709_251_200_000  # 2024-03-01 00:00 UTC, as `--until 2024-03-01` gives it
    exits = exit_config_from(s.exits)
    # one learning check, at T: the first versions become the champions at once
    s = with_models(s, retrain_hours=(t_ms - int(series.ts_ms[START])) / HOUR_MS)
    result, _, provider = await walk_forward(s, series)
    assert [t for job, t in result.job_runs if job == "learning"] == [t_ms]
    # qt models train --until 2024-03-01 --threads 1: the candles before T, the same config
    trained = await train_and_save(
        [series.between(None, t_ms)],
        MEMBERS,
        repo=MemoryStorage().model_versions,
        data_dir=tmp_path,
        config=train_config(s.models, threads=1),
        exits=exits,
        progress=lambda step, what: None,
    )

    assert not trained.failures
    fm = compute_features(series)
    rows = np.flatnonzero(fm.valid_rows() & (series.ts_ms >= t_ms))  # after T: out of sample
    kw = {"columns": fm.columns, "feature_set_hash": fm.set_hash}
    walked = {m.name: m for m in provider.members}
    for version in trained.versions:
        saved = load_version(tmp_path, version).artifact.member
        ours = walked[version.member]
        assert version.train_end_ms == ours.trained_until_ms == t_ms
        assert version.symbols == (series.symbol,) and version.libraries  # what it came from
        if version.member in ("nhits", "patchtst"):  # windows over the whole series
            a = saved.predict_proba(fm.values, **kw)[rows]
            b = ours.member.predict_proba(fm.values, **kw)[rows]
        else:
            a = saved.predict_proba(fm.values[rows], **kw)
            b = ours.member.predict_proba(fm.values[rows], **kw)
        assert a.std() > 1e-3  # a model that learned something, not a constant
        assert np.allclose(a, b, rtol=0, atol=1e-9), version.member


def test_a_cadence_for_an_unknown_member_is_one_clear_error(settings: Settings) -> None:
    s = with_models(settings, cadence_hours={"gpt": 24.0})
    provider = EnsembleProvider([], walk_forward=True)
    with pytest.raises(QTError, match=r"QT__MODELS__CADENCE_HOURS: unknown member gpt; known"):
        WalkForward(provider, s)


async def test_each_candidate_is_backtested_beside_its_champion_on_the_holdout(
    settings: Settings,
) -> None:
    series = regimes(seed=1, drift=0.7, n=1_600)
    s = with_models(settings, members=["xgb"])
    first = await train_in_workers(s, [series.slice(0, 1_000)], ["xgb"], {})
    champion = first.fits["xgb"]
    assert champion.backtest is not None and champion.champion_backtest is None
    ref = ChampionRef(files=champion.fit.files, trained_until_ms=first.data.end_ms)

    second = await train_in_workers(s, [series], ["xgb"], {"xgb": ref})

    fit, start = second.fits["xgb"], second.data.valid_start_ms
    assert ref.trained_until_ms <= start and fit.backtest_note == ""
    # what the worker measured is the Engine's backtest of the member alone on the holdout
    mine = await asyncio.to_thread(holdout_backtest, s, [series], "xgb", fit.fit.files, start)
    theirs = await asyncio.to_thread(holdout_backtest, s, [series], "xgb", ref.files, start)
    assert fit.backtest == mine and fit.champion_backtest == theirs
    assert mine["trades"] > 0 and mine["fees"] > 0
    # a champion trained into the holdout window is not backtested: not comparable
    late = ChampionRef(files=champion.fit.files, trained_until_ms=start + 1)
    third = await train_in_workers(s, [series], ["xgb"], {"xgb": late})
    assert third.fits["xgb"].champion_backtest is None
    assert "not comparable" in third.fits["xgb"].backtest_note
