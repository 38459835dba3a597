"""The predictions of every model version (model_predictions), for both Storage implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event

from core.domain.model_versions import Prediction
from core.ports import Storage
from storage.memory import MemoryStorage
from storage.repositories import SqlStorage

H = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


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


def prediction(
    hour: int,
    symbol: str = "BTC/USDT",
    *,
    vid: str = "xgb-1",
    p_up: float = 0.5,
    role: str = "champion",
) -> Prediction:
    return Prediction(
        version_id=vid,
        member=vid.split("-")[0],
        symbol=symbol,
        ts_ms=T0 + hour * H,
        p_up=p_up,
        role=role,
        created_ms=T0 + hour * H + H,  # made when the decision candle closed
    )


async def test_predictions_come_back_exactly_by_candle_then_symbol(storage: Storage) -> None:
    repo = storage.predictions
    stored = [
        prediction(2, "ETH/USDT", p_up=0.0),
        prediction(1, "ETH/USDT", p_up=0.123456789012345),
        prediction(1, "BTC/USDT", p_up=1.0),
        prediction(0, "ETH/USDT", vid="lgbm-1", role="shadow"),
    ]

    assert await repo.add_many(stored) == 4

    assert await repo.list_predictions("xgb-1") == [stored[2], stored[1], stored[0]]
    assert await repo.list_predictions("lgbm-1") == [stored[3]]
    assert await repo.list_predictions("ghost") == []


async def test_a_prediction_stored_already_is_kept_as_first_written(storage: Storage) -> None:
    repo = storage.predictions
    first = prediction(0, p_up=0.6)
    assert await repo.add_many([first, prediction(1)]) == 2

    rewritten = replace(first, p_up=0.9, created_ms=first.created_ms + 5)
    assert await repo.add_many([rewritten, prediction(2), prediction(2, p_up=0.1)]) == 1
    assert await repo.add_many([rewritten]) == 0
    assert await repo.add_many([]) == 0

    assert await repo.list_predictions("xgb-1") == [first, prediction(1), prediction(2)]


@pytest.mark.parametrize("p_up", [-0.01, 1.000001, float("nan"), float("inf"), True])
async def test_a_p_up_that_is_not_a_probability_writes_nothing(
    storage: Storage, p_up: float
) -> None:
    batch = [prediction(0), prediction(1, p_up=p_up), prediction(2)]

    with pytest.raises(ValueError, match=r"xgb-1 for BTC/USDT at \d+: p_up was .*\[0, 1\]"):
        await storage.predictions.add_many(batch)
    assert await storage.predictions.list_predictions("xgb-1") == []


async def test_an_unknown_role_writes_nothing(storage: Storage) -> None:
    with pytest.raises(ValueError, match="role was 'trading', not one of champion, shadow"):
        await storage.predictions.add_many([prediction(0), prediction(1, role="trading")])
    assert await storage.predictions.list_predictions("xgb-1") == []


async def test_numpy_numbers_are_stored_as_plain_ones(storage: Storage) -> None:
    raw = replace(prediction(0), ts_ms=np.int64(T0), p_up=np.float32(0.25))  # type: ignore[arg-type]

    assert await storage.predictions.add_many([raw]) == 1

    (got,) = await storage.predictions.list_predictions("xgb-1")
    assert (type(got.ts_ms), type(got.p_up), got.ts_ms, got.p_up) == (int, float, T0, 0.25)


async def test_the_list_filters_by_symbol_and_a_half_open_time_range(storage: Storage) -> None:
    repo = storage.predictions
    await repo.add_many([prediction(h, s) for h in range(5) for s in ("BTC/USDT", "ETH/USDT")])

    eth = await repo.list_predictions("xgb-1", symbol="ETH/USDT")
    window = await repo.list_predictions("xgb-1", since_ms=T0 + H, until_ms=T0 + 3 * H)
    both = await repo.list_predictions(
        "xgb-1", symbol="BTC/USDT", since_ms=T0 + 3 * H, until_ms=T0 + 99 * H
    )

    assert eth == [prediction(h, "ETH/USDT") for h in range(5)]
    assert [(p.ts_ms, p.symbol) for p in window] == [
        (T0 + H, "BTC/USDT"),
        (T0 + H, "ETH/USDT"),
        (T0 + 2 * H, "BTC/USDT"),
        (T0 + 2 * H, "ETH/USDT"),
    ]
    assert both == [prediction(3), prediction(4)]
    assert await repo.list_predictions("xgb-1", since_ms=T0 + 2 * H, until_ms=T0 + 2 * H) == []
    assert await repo.list_predictions("xgb-1", symbol="SOL/USDT") == []


async def test_delete_version_removes_only_that_versions_predictions(storage: Storage) -> None:
    repo = storage.predictions
    await repo.add_many([prediction(h) for h in range(3)] + [prediction(0, vid="lgbm-1")])

    assert await repo.delete_version("xgb-1") == 3
    assert await repo.delete_version("xgb-1") == 0
    assert await repo.delete_version("ghost") == 0

    assert await repo.list_predictions("xgb-1") == []
    assert await repo.list_predictions("lgbm-1") == [prediction(0, vid="lgbm-1")]
    assert await repo.add_many([prediction(0)]) == 1  # a deleted one may be written again


async def test_predictions_added_in_a_failed_unit_of_work_are_gone(storage: Storage) -> None:
    repo = storage.predictions
    await repo.add_many([prediction(0)])

    with pytest.raises(Boom):
        async with storage.atomic():
            await repo.add_many([prediction(1), prediction(0, vid="new-1")])
            await repo.delete_version("xgb-1")
            raise Boom

    assert await repo.list_predictions("xgb-1") == [prediction(0)]
    assert await repo.list_predictions("new-1") == []
    assert await repo.add_many([prediction(1)]) == 1  # the undone one counts as new


async def test_ten_thousand_predictions_are_one_executemany(tmp_path: Path) -> None:
    # The time itself is bench/predictions_write.py's (a wall-clock bound flakes on a busy
    # machine); what keeps it fast is one statement for the whole batch, not one per row.
    store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3")
    await store.start()
    statements: list[tuple[str, bool]] = []

    def record(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        if "model_predictions" in statement:
            statements.append((statement.split()[0], many))

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        batch = [prediction(h, s) for h in range(2_500) for s in ("A", "B", "C", "D")]
        assert await store.predictions.add_many(batch) == 10_000
        assert await store.predictions.add_many([*batch[:10], prediction(0, "E")]) == 1
        assert len(await store.predictions.list_predictions("xgb-1", symbol="C")) == 2_500
    finally:
        await store.stop()
    assert statements == [("INSERT", True), ("INSERT", True), ("SELECT", False)]


async def test_predictions_survive_a_restart_of_a_file_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3"
    stored = [prediction(h, role="shadow", p_up=h / 10) for h in range(4)]
    store = SqlStorage(url)
    await store.start()
    try:
        await store.predictions.add_many(stored)
    finally:
        await store.stop()

    reopened = SqlStorage(url)
    await reopened.start()
    try:
        assert await reopened.predictions.list_predictions("xgb-1") == stored
        assert await reopened.predictions.add_many(stored) == 0
    finally:
        await reopened.stop()
