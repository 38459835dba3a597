"""Saving a trained member as a registered version and loading the newest one back."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.domain.model_versions import ModelStatus, ModelVersion
from core.errors import ArtifactError, InvariantViolation
from core.ml.artifacts import MANIFEST, TrainingInfo
from core.ml.versions import load_newest, save_version, version_id
from storage.memory import MemoryStorage
from tests.unit.ml.synthetic import COLUMNS, HASH, fitted, planted

INFO = TrainingInfo(
    train_start_ms=1_700_000_000_000,
    train_end_ms=1_710_000_000_000,
    label="direction of the 4-candle forward return",
    metrics={"log_loss": 0.41},
)
CREATED = 1_764_590_000_000  # 2025-12-01T11:53:20Z


async def test_a_saved_version_is_a_row_and_a_folder_under_the_data_dir(tmp_path: Path) -> None:
    storage = MemoryStorage()
    member = fitted("xgb")

    saved = await save_version(storage.model_versions, tmp_path, member, INFO, created_ms=CREATED)

    assert saved.id.startswith("xgb-20251201T115320Z-")
    assert saved.artifact_path == f"models/xgb/{saved.id}"
    assert (saved.status, saved.feature_set_hash, saved.metrics) == (
        ModelStatus.CANDIDATE,
        HASH,
        {"log_loss": 0.41},
    )
    assert (saved.train_start_ms, saved.train_end_ms) == (INFO.train_start_ms, INFO.train_end_ms)
    assert await storage.model_versions.list_versions() == [saved]
    folder = tmp_path / saved.artifact_path
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "member.json",
        "metadata.json",
        "model.json",
    ]
    assert sorted(p.name for p in folder.parent.iterdir()) == [saved.id]  # no staging left


async def test_a_saved_version_records_its_symbols_params_and_libraries(tmp_path: Path) -> None:
    storage = MemoryStorage()
    member = fitted("lgbm")

    saved = await save_version(
        storage.model_versions,
        tmp_path,
        member,
        INFO,
        created_ms=CREATED,
        symbols=["BTC/USDT", "ETH/USDT"],
    )

    assert saved.symbols == ("BTC/USDT", "ETH/USDT")
    assert saved.params == dict(member.params) and saved.params
    assert saved.libraries == member.library_versions() and "lightgbm" in saved.libraries
    assert (saved.reason, saved.promoted_ms, saved.status_ms) == ("", None, None)
    assert await storage.model_versions.get(saved.id) == saved


async def test_a_version_saved_as_champion_was_promoted_when_created(tmp_path: Path) -> None:
    storage = MemoryStorage()

    saved = await save_version(
        storage.model_versions,
        tmp_path,
        fitted("xgb"),
        INFO,
        created_ms=CREATED,
        status=ModelStatus.CHAMPION,
    )

    assert (saved.status, saved.promoted_ms, saved.symbols) == (ModelStatus.CHAMPION, CREATED, ())


async def test_the_newest_version_loads_verified_and_predicts_the_same(tmp_path: Path) -> None:
    storage = MemoryStorage()
    repo = storage.model_versions
    await save_version(repo, tmp_path, fitted("lgbm", seed=1), INFO, created_ms=CREATED)
    member = fitted("lgbm")
    newer = await save_version(repo, tmp_path, member, INFO, created_ms=CREATED + 60_000)

    loaded = await load_newest(repo, tmp_path, "lgbm")

    assert loaded is not None and loaded.version == newer
    x, _ = planted(300, seed=9)
    kw = {"columns": COLUMNS, "feature_set_hash": HASH}
    assert np.array_equal(
        loaded.artifact.member.predict_proba(x, **kw), member.predict_proba(x, **kw)
    )
    assert await load_newest(repo, tmp_path, "xgb") is None
    assert await load_newest(repo, tmp_path, "lgbm", status=ModelStatus.CHAMPION) is None


async def test_a_version_whose_files_changed_after_it_was_registered_is_refused(
    tmp_path: Path,
) -> None:
    storage = MemoryStorage()
    saved = await save_version(
        storage.model_versions, tmp_path, fitted("xgb"), INFO, created_ms=CREATED
    )
    manifest = tmp_path / saved.artifact_path / MANIFEST
    manifest.write_text(manifest.read_text().replace('"format": 1', '"format": 1 '))

    with pytest.raises(
        ArtifactError, match=rf"{re.escape(str(manifest))} has sha256 .*registry recorded"
    ):
        await load_newest(storage.model_versions, tmp_path, "xgb")


async def test_a_row_pointing_outside_the_models_folder_is_refused(tmp_path: Path) -> None:
    storage = MemoryStorage()
    saved = await save_version(
        storage.model_versions, tmp_path, fitted("xgb"), INFO, created_ms=CREATED
    )
    await storage.model_versions.add(
        replace(saved, id="evil", artifact_path="../../etc", created_ms=CREATED + 1)
    )

    with pytest.raises(ArtifactError, match=re.escape("'../../etc' is outside")):
        await load_newest(storage.model_versions, tmp_path, "xgb")


async def test_a_version_the_registry_refuses_leaves_no_files(tmp_path: Path) -> None:
    class FullRepo:
        async def add(self, version: ModelVersion) -> None:
            raise InvariantViolation("refused")

    with pytest.raises(InvariantViolation, match="refused"):
        await save_version(FullRepo(), tmp_path, fitted("xgb"), INFO, created_ms=CREATED)
    assert list((tmp_path / "models" / "xgb").iterdir()) == []


async def test_the_same_model_saved_twice_in_one_second_is_refused(tmp_path: Path) -> None:
    storage = MemoryStorage()
    member = fitted("xgb")
    await save_version(storage.model_versions, tmp_path, member, INFO, created_ms=CREATED)

    with pytest.raises(ArtifactError, match="exists already"):
        await save_version(storage.model_versions, tmp_path, member, INFO, created_ms=CREATED)
    assert len(await storage.model_versions.list_versions()) == 1
    assert len(list((tmp_path / "models" / "xgb").iterdir())) == 1


def test_a_version_id_reads_as_member_time_and_digest() -> None:
    assert version_id("lgbm", 0, "0123456789abcdef") == "lgbm-19700101T000000Z-01234567"
