"""The RL sizer's training run in a process of its own: ``qt evaluate --sizing`` on the
stored candles, its sealed policy handed back for registration, and a run that cannot train
(nothing stored) fails with its log's reason, never touching the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.sizer_training import LOG, train_sizer
from core.clock import SimClock
from core.config import Settings
from core.errors import DataError
from core.ml.rl.policy import load_policy
from storage import open_storage
from tests.integration.test_evaluate import settings as settings  # the fixture
from tests.planted import regimes


async def test_a_run_with_no_stored_candles_fails_with_the_reason(
    settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="training failed") as failed:
        await train_sizer(settings, data_dir=tmp_path / "d", clock=SimClock(1_704_067_200_000))
    assert LOG in str(failed.value)  # the log is kept and named


@pytest.mark.slow
async def test_a_run_trains_a_sealed_policy_on_the_stored_candles(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    series = regimes(seed=1, drift=0.7)
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        await storage.candles.upsert("binance", series)
    finally:
        await storage.stop()
    tiny = settings.sizing.model_copy(
        update={"eval_folds": 3, "eval_min_train": 5, "eval_timesteps": 512}
    )
    settings = settings.model_copy(
        update={"sizing": tiny, "trading": settings.trading.model_copy(
            update={"symbols": [series.symbol]})}
    )  # fmt: skip
    end = int(series.ts_ms[-1])
    trained = await train_sizer(settings, data_dir=tmp_path / "d", clock=SimClock(end))
    policy = load_policy(trained.folder)
    assert policy.gate is not None and policy.trained_until_ms is not None
    assert policy.trained_until_ms <= end
    assert trained.symbols == (series.symbol,) and trained.train_start_ms == int(series.ts_ms[0])
    assert any(line.startswith("gate: ") for line in trained.lines)
    assert not list((tmp_path / "d" / "models" / "rl_sizer").glob(".train-*"))  # cleaned up


def test_the_settings_cross_the_pipe_whole_secrets_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from bot.sizer_training import settings_document
    from core.config import load_settings

    monkeypatch.setenv("QT__EXCHANGE__API_SECRET", "s3cr3t-value")
    monkeypatch.setenv("QT__CHAT__TELEGRAM_TOKEN", "123:tok")
    monkeypatch.setenv("QT__SIZING__METHOD", "rl")
    monkeypatch.setenv("QT__RISK__MAX_OPEN_POSITIONS", "7")
    settings = load_settings()
    doc = json.loads(json.dumps(settings_document(settings)))
    assert Settings.model_validate(doc) == settings
