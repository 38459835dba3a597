"""The model registry (model_versions), for both Storage implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from core.domain.model_versions import ModelStatus, ModelVersion
from core.errors import InvariantViolation
from core.ports import Storage
from storage.memory import MemoryStorage
from storage.repositories import SqlStorage


class Boom(Exception):
    """Raised inside atomic() blocks to force a rollback."""


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store: Storage
    if request.param == "memory":
        store = MemoryStorage()
    else:
        store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3")
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


def version(vid: str, member: str = "xgb", *, at: int = 1, status=ModelStatus.CANDIDATE):
    return ModelVersion(
        id=vid,
        member=member,
        status=status,
        train_start_ms=1_700_000_000_000,
        train_end_ms=1_710_000_000_000 + at,
        feature_set_hash="fs-abc",
        metrics={"log_loss": 0.6812345678901234, "roc_auc": 0.55},
        artifact_path=f"models/{member}/{vid}",
        artifact_sha256="ab" * 32,
        created_ms=at,
    )


async def test_versions_come_back_exactly_oldest_first(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("b", at=20))
    await repo.add(version("a", at=10))
    await repo.add(version("l", "lgbm", at=15))

    assert await repo.list_versions() == [
        version("a", at=10),
        version("l", "lgbm", at=15),
        version("b", at=20),
    ]
    assert await repo.list_versions("xgb") == [version("a", at=10), version("b", at=20)]
    assert await repo.list_versions("nhits") == []


async def test_newest_is_the_last_created_of_the_member_and_status(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("old-champion", at=10, status=ModelStatus.CHAMPION))
    await repo.add(version("new-candidate", at=30))
    await repo.add(version("lgbm-newer", "lgbm", at=40))

    newest = await repo.newest("xgb")
    assert newest is not None and newest.id == "new-candidate"
    champion = await repo.newest("xgb", ModelStatus.CHAMPION)
    assert champion == version("old-champion", at=10, status=ModelStatus.CHAMPION)
    assert await repo.newest("xgb", ModelStatus.SHADOW) is None
    assert await repo.newest("patchtst") is None


async def test_versions_created_in_the_same_ms_are_ordered_by_id(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("v2", at=5))
    await repo.add(version("v1", at=5))

    assert [v.id for v in await repo.list_versions()] == ["v1", "v2"]
    newest = await repo.newest("xgb")
    assert newest is not None and newest.id == "v2"


async def test_an_id_is_recorded_once(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("v1", at=5))

    with pytest.raises(InvariantViolation, match="'v1' is recorded already"):
        await repo.add(replace(version("v1", at=6), member="lgbm"))
    assert await repo.list_versions() == [version("v1", at=5)]


async def test_a_version_added_in_a_failed_unit_of_work_is_gone(storage: Storage) -> None:
    with pytest.raises(Boom):
        async with storage.atomic():
            await storage.model_versions.add(version("v1"))
            raise Boom

    assert await storage.model_versions.list_versions() == []


async def test_non_finite_metrics_are_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="JSON"):
        await storage.model_versions.add(replace(version("v1"), metrics={"auc": float("nan")}))


async def test_a_tampered_row_is_refused_naming_it(tmp_path: Path) -> None:
    store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3")
    await store.start()
    try:
        await store.model_versions.add(version("v1"))
        async with store.uow.connection() as conn:
            await conn.execute(text("UPDATE model_versions SET metrics = '[1, 2'"))
            await conn.commit()
        with pytest.raises(InvariantViolation, match="stored model_versions v1"):
            await store.model_versions.list_versions()
    finally:
        await store.stop()
