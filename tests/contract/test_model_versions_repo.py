"""The model registry (model_versions), for both Storage implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

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


@pytest.mark.parametrize(
    "statement, problem",
    [
        ("UPDATE model_versions SET metrics = '[1, 2'", "Expecting"),
        ("UPDATE model_versions SET symbols = '{\"a\": 1}'", "symbols is not a JSON array"),
        ("UPDATE model_versions SET symbols = '[1]'", "symbols holds more than text"),
        ("UPDATE model_versions SET params = '[]'", "params is not a JSON object"),
        ("UPDATE model_versions SET libraries = '{\"x\": 2}'", "libraries holds more than text"),
    ],
)
async def test_a_tampered_row_is_refused_naming_it(
    tmp_path: Path, statement: str, problem: str
) -> None:
    store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3")
    await store.start()
    try:
        await store.model_versions.add(version("v1"))
        async with store.uow.connection() as conn:
            await conn.execute(text(statement))
            await conn.commit()
        with pytest.raises(InvariantViolation, match=f"stored model_versions v1: {problem}"):
            await store.model_versions.list_versions()
    finally:
        await store.stop()


# --- the learning manager's fields and status changes -------------------------------------------


def champion_count(versions: list[ModelVersion], member: str = "xgb") -> int:
    return sum(v.member == member and v.status is ModelStatus.CHAMPION for v in versions)


async def test_the_learning_fields_come_back_exactly(storage: Storage) -> None:
    full = replace(
        version("v1"),
        symbols=("BTC/USDT", "ETH/USDT"),
        params={"max_depth": 4, "eta": 0.05, "layers": [64, 32], "early": None},
        libraries={"xgboost": "2.1.1", "numpy": "1.26.4"},
        reason="gate passed: DM p=0.01",
        promoted_ms=50,
        status_ms=60,
    )
    await storage.model_versions.add(full)

    assert await storage.model_versions.get("v1") == full
    assert await storage.model_versions.get("ghost") is None


async def test_a_version_saved_without_the_new_fields_gets_the_defaults(storage: Storage) -> None:
    await storage.model_versions.add(version("v1"))

    got = await storage.model_versions.get("v1")
    assert got is not None
    assert (got.symbols, got.params, got.libraries, got.reason) == ((), {}, {}, "")
    assert (got.promoted_ms, got.status_ms) == (None, None)


@pytest.mark.parametrize(
    "field, value",
    [("params", {"eta": float("inf")}), ("params", {"fn": object()}), ("libraries", {"x": {1}})],
)
async def test_params_and_libraries_that_are_not_json_are_refused(
    storage: Storage, field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=f"model version v1: {field} is not JSON-safe"):
        await storage.model_versions.add(replace(version("v1"), **{field: value}))
    assert await storage.model_versions.list_versions() == []


async def test_set_status_moves_a_version_and_says_why(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("v1"))

    shadow = await repo.set_status("v1", ModelStatus.SHADOW, reason="gate passed", ts_ms=100)

    assert (shadow.status, shadow.reason, shadow.status_ms) == (
        ModelStatus.SHADOW,
        "gate passed",
        100,
    )
    assert shadow.promoted_ms is None
    assert await repo.get("v1") == shadow
    again = await repo.set_status("v1", ModelStatus.SHADOW, reason="gate passed", ts_ms=200)
    assert again == shadow  # the same status and reason again change nothing
    why = await repo.set_status("v1", ModelStatus.SHADOW, reason="said better", ts_ms=300)
    assert (why.reason, why.status_ms) == ("said better", 100)  # only the reason
    assert await repo.get("v1") == why


async def test_set_status_refuses_champion_and_unknown_ids(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("v1"))

    with pytest.raises(ValueError, match="use promote"):
        await repo.set_status("v1", ModelStatus.CHAMPION, reason="x", ts_ms=1)
    with pytest.raises(InvariantViolation, match="'ghost' is not recorded"):
        await repo.set_status("ghost", ModelStatus.RETIRED, reason="x", ts_ms=1)
    with pytest.raises(ValueError, match="'BOSS' is not a valid ModelStatus"):
        await repo.set_status("v1", "BOSS", reason="x", ts_ms=1)  # type: ignore[arg-type]
    assert await repo.list_versions() == [version("v1")]


async def test_promote_retires_the_current_champion_leaving_exactly_one(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("old", at=10))
    await repo.add(version("new", at=20))
    await repo.add(version("other-member", "lgbm", at=30))
    first, none = await repo.promote("old", reason="first model", ts_ms=100)
    await repo.promote("other-member", reason="first lgbm", ts_ms=110)

    champion, demoted = await repo.promote("new", reason="gate passed: DM p=0.01", ts_ms=200)

    assert none is None and first.promoted_ms == 100
    assert (champion.id, champion.status, champion.reason) == (
        "new",
        ModelStatus.CHAMPION,
        "gate passed: DM p=0.01",
    )
    assert (champion.promoted_ms, champion.status_ms) == (200, 200)
    assert demoted is not None
    assert (demoted.id, demoted.status, demoted.reason) == (
        "old",
        ModelStatus.RETIRED,
        "replaced by new",
    )
    assert (demoted.promoted_ms, demoted.status_ms) == (100, 200)  # promoted_ms is kept
    listed = await repo.list_versions()
    assert champion_count(listed) == 1 and champion_count(listed, "lgbm") == 1
    assert await repo.newest("xgb", ModelStatus.CHAMPION) == champion
    assert await repo.get("old") == demoted


async def test_promoting_the_champion_again_changes_nothing(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("v1"))
    champion, _ = await repo.promote("v1", reason="first", ts_ms=100)

    again, demoted = await repo.promote("v1", reason="twice", ts_ms=200)

    assert (again, demoted) == (champion, None)
    assert await repo.list_versions() == [champion]


async def test_a_rollback_promotes_the_retired_champion_back(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("old", at=10))
    await repo.add(version("new", at=20))
    await repo.promote("old", reason="first", ts_ms=100)
    await repo.promote("new", reason="gate passed", ts_ms=200)

    back, demoted = await repo.promote("old", reason="rolled back: drawdown 12%", ts_ms=300)

    assert (back.status, back.reason, back.status_ms) == (
        ModelStatus.CHAMPION,
        "rolled back: drawdown 12%",
        300,
    )
    assert back.promoted_ms == 100  # when it first became champion
    assert demoted is not None
    assert (demoted.id, demoted.status, demoted.reason, demoted.promoted_ms) == (
        "new",
        ModelStatus.RETIRED,
        "replaced by old",
        200,
    )
    assert champion_count(await repo.list_versions()) == 1


async def test_promoting_an_unknown_id_is_refused_and_keeps_the_champion(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("v1"))
    champion, _ = await repo.promote("v1", reason="first", ts_ms=100)

    with pytest.raises(InvariantViolation, match="'ghost' is not recorded"):
        await repo.promote("ghost", reason="x", ts_ms=200)
    assert await repo.list_versions() == [champion]


async def test_a_second_champion_cannot_be_added(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("v1", status=ModelStatus.CHAMPION))

    with pytest.raises(InvariantViolation, match="'v2' would be a second xgb CHAMPION"):
        await repo.add(version("v2", at=2, status=ModelStatus.CHAMPION))
    await repo.add(version("l1", "lgbm", status=ModelStatus.CHAMPION))  # another member's
    assert [v.id for v in await repo.list_versions()] == ["l1", "v1"]


async def test_a_promotion_in_a_failed_unit_of_work_is_undone_whole(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("old", at=10))
    await repo.add(version("new", at=20))
    first, _ = await repo.promote("old", reason="first", ts_ms=100)

    with pytest.raises(Boom):
        async with storage.atomic():
            await repo.promote("new", reason="gate passed", ts_ms=200)
            raise Boom

    assert await repo.list_versions() == [first, version("new", at=20)]


async def test_delete_removes_a_version_but_never_the_champion(storage: Storage) -> None:
    repo = storage.model_versions
    await repo.add(version("old", at=10))
    await repo.add(version("new", at=20))
    await repo.add(version("rejected", at=30))
    await repo.promote("old", reason="first", ts_ms=100)
    champion, retired = await repo.promote("new", reason="gate passed", ts_ms=200)

    with pytest.raises(InvariantViolation, match="'new' is the xgb CHAMPION"):
        await repo.delete("new")
    await repo.delete("rejected")
    await repo.delete("ghost")  # unknown: nothing to do

    assert await repo.list_versions() == [retired, champion]
    assert await repo.get("rejected") is None


async def test_statuses_survive_a_restart_of_a_file_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3"
    store = SqlStorage(url)
    await store.start()
    try:
        await store.model_versions.add(version("old", at=10))
        await store.model_versions.add(version("new", at=20))
        await store.model_versions.promote("old", reason="first", ts_ms=100)
        champion, retired = await store.model_versions.promote("new", reason="gate", ts_ms=200)
    finally:
        await store.stop()

    reopened = SqlStorage(url)
    await reopened.start()
    try:
        assert await reopened.model_versions.list_versions() == [retired, champion]
        with pytest.raises(IntegrityError, match="UNIQUE constraint failed"):
            async with reopened.uow.connection() as conn:  # the index holds for raw SQL too
                await conn.execute(text("UPDATE model_versions SET status = 'CHAMPION'"))
    finally:
        await reopened.stop()
