"""The walk-forward with the torch members: per-member cadences, carried-over members, warm
starts, and the same model as ``qt models train`` on the same candles (the parity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.model_training import train_and_save, train_config
from bot.trading import ensemble_config_from, exit_config_from
from bot.walk_forward import WalkForward
from core.config import Settings
from core.errors import QTError
from core.ml.ensemble import EnsembleProvider
from core.ml.features import compute_features
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


async def test_each_member_retrains_on_its_own_cadence_and_warm_starts(
    settings: Settings,
) -> None:
    s = with_models(settings, members=["xgb", "nhits"], cadence_hours={"nhits": 480.0})
    series = regimes(seed=1, drift=0.7, n=1_900)

    result, trainer, provider = await walk_forward(s, series)

    runs = [t for job, t in result.job_runs if job == "model_retrain"]
    assert len(runs) == 4  # the one job, every 240 market hours
    fitted = [set(t.members) for t in trainer.trained]
    assert fitted == [{"xgb", "nhits"}, {"xgb"}] * 2  # nhits every 480 hours
    assert [t.carried for t in trainer.trained] == [(), ("nhits",)] * 2
    for k, member_set in enumerate(provider.sets):
        by_name = {m.name: m for m in member_set.members}
        assert set(by_name) == {"xgb", "nhits"}  # not due: the previous one serves on
        nhits_fit = trainer.trained[k - k % 2]  # the retrain that last fitted it
        assert by_name["nhits"].trained_until_ms == nhits_fit.train_end_ms
        assert by_name["xgb"].trained_until_ms == trainer.trained[k].train_end_ms
    nhits = [next(m for m in provider.sets[k].members if m.name == "nhits") for k in (0, 2)]
    infos = [m.member.fit_info for m in nhits]  # type: ignore[attr-defined]
    assert [(i["warm_start"], i["epochs"]) for i in infos] == [(False, 2), (True, 1)]
    assert runs[0] == int(series.ts_ms[START]) + 240 * HOUR_MS


async def test_without_warm_start_every_refit_starts_cold(settings: Settings) -> None:
    s = with_models(
        settings, members=["patchtst"], cadence_hours={}, warm_start=False, retrain_hours=480
    )
    _, trainer, provider = await walk_forward(s, regimes(seed=1, drift=0.7, n=1_900))

    assert [t.members for t in trainer.trained] == [("patchtst",), ("patchtst",)]
    infos = [st.members[0].member.fit_info for st in provider.sets]  # type: ignore[attr-defined]
    assert [(i["warm_start"], i["epochs"]) for i in infos] == [(False, 2), (False, 2)]


MEMBERS = ["xgb", "lgbm", "nhits", "patchtst"]


async def test_the_walk_forward_model_at_t_predicts_as_qt_models_train_until_t(
    settings: Settings, tmp_path: Path
) -> None:
    s = with_models(settings, members=MEMBERS)
    series = regimes(seed=1, drift=0.7, n=1_700)
    t_ms = 1_709_251_200_000  # 2024-03-01 00:00 UTC, as `--until 2024-03-01` gives it
    exits = exit_config_from(s.exits)
    provider = EnsembleProvider(
        [], ensemble_config_from(s), exits=exits, timeframe="1h", walk_forward=True
    )
    trainer = WalkForward(provider, s.models, exits=exits, timeframe="1h")
    await trainer.start()
    try:
        await trainer.retrain({series.symbol: series}, t_ms)
    finally:
        await trainer.stop()
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
        WalkForward(provider, s.models, exits=exit_config_from(s.exits), timeframe="1h")
