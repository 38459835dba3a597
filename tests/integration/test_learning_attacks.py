"""An adversarial review of the learning manager (issue 14): restarts, races, rollbacks, time.

Each test drives our own classes (the manager, a real SQLite registry, real xgb artifacts,
the real ensemble where serving matters) with hand-made inputs. A test marked
test under "defects" reproduced one found in review (each was fixed; the test keeps it so);
the others are attacks that held up from the start.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from bot.ensemble_loader import ensemble_member
from core.domain.events import ModelTrained
from core.domain.market import CandleSeries
from core.domain.model_versions import ModelStatus, ModelVersion
from core.errors import DataError
from core.ml.artifacts import TrainingInfo
from core.ml.ensemble import EnsembleProvider
from core.ml.members import MEMBERS
from core.ml.training import CandidateRun, ChampionRef, TrainingSet
from core.ml.versions import LoadedVersion, load_version, save_version
from core.ports import Storage
from core.services.learning import LearningManager
from tests.integration.test_cli import Cli
from tests.integration.test_cli import cli as cli  # the fixture
from tests.integration.test_learning_manager import HOUR, T0, Live, Trainer, _rows
from tests.integration.test_learning_manager import _manager as _build
from tests.integration.test_learning_manager import storage as storage  # the fixture
from tests.integration.test_learning_manager import tiny as tiny  # the fixture

Tiny = tuple[TrainingSet, list[dict[str, bytes]]]


class SteppedClock:
    """A wall clock a test sets, backwards too (an NTP step, a resumed VM)."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    async def sleep_until(self, ts_ms: int) -> None:
        self.now = max(self.now, ts_ms)


class HeldTrainer(Trainer):
    """A trainer whose runs wait for ``release`` (a training under way)."""

    def __init__(self, data: TrainingSet) -> None:
        super().__init__(data)
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def __call__(
        self,
        series: Sequence[CandleSeries],
        members: Sequence[str],
        champions: Mapping[str, ChampionRef],
    ) -> CandidateRun:
        self.entered.set()
        await self.release.wait()
        return await super().__call__(series, members, champions)


async def _first_champion(manager: LearningManager, trainer: Trainer, files: dict[str, bytes]):
    trainer.script.append(trainer.fit(files, better=True, champion=False))
    manager.request("test")
    report = await manager.wait()
    assert report is not None and report.trained, report
    return report.trained[0]


async def _saved(
    storage: Storage, data_dir: Path, data: TrainingSet, files: dict[str, bytes], created_ms: int
) -> ModelVersion:
    """Register ``files`` as a CANDIDATE created at ``created_ms`` (as qt models train or the
    demo's first training do)."""
    member = MEMBERS["xgb"].from_files(files)
    info = TrainingInfo(
        train_start_ms=data.train_start_ms,
        train_end_ms=data.end_ms,
        label=data.label,
        metrics={"log_loss": 0.6, "accuracy": 0.6, "healthy": 1.0},
    )
    return await save_version(
        storage.model_versions, data_dir, member, info, created_ms=created_ms, symbols=("BTC/USDT",)
    )


async def _all_runs() -> None:
    """Wait for every training run task of the loop (one the manager lost track of, too)."""
    runs = [t for t in asyncio.all_tasks() if t.get_name() == "learning-run"]
    await asyncio.gather(*runs, return_exceptions=True)


# --- defects ---------------------------------------------------------------------------------


async def test_a_second_rollback_goes_further_back_not_to_the_champion_just_rolled_back(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer)
    a, b, c = [await _saved(storage, tmp_path, data, f, T0 + i * HOUR) for i, f in enumerate(files)]
    for i, v in enumerate((a, b, c)):
        clock.now = T0 + (10 + i) * HOUR
        await manager.promote(v.id, "test")
    clock.now += HOUR
    first = await manager.rollback("xgb", "c is bad", "test")
    assert f"{b.id} serves again" in first  # holds: c -> b
    clock.now += HOUR
    second = await manager.rollback("xgb", "b is bad too", "test")
    champion = await storage.model_versions.newest("xgb", ModelStatus.CHAMPION)
    assert champion is not None and champion.id == a.id, second  # is c, the one rolled back


async def test_a_retrain_request_during_a_check_starts_one_run_not_two(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    slow = asyncio.Event()

    async def trades_since(_since: int) -> tuple[int, int, int]:
        await slow.wait()  # the engine's trades: a slow read, the check waits here
        return 0, 0, 0

    manager, _ = await _build(storage, tmp_path, clock, live, trainer, trades_since=trades_since)
    slow.set()
    await _first_champion(manager, trainer, files[0])
    slow.clear()
    clock.now = T0 + 200 * HOUR  # the schedule is due, 500 new candles
    for f in files[1:]:
        trainer.script.append(trainer.fit(f, better=False, champion=True))
    check = asyncio.create_task(manager.check())
    await asyncio.sleep(0.05)  # the check is in its due check
    assert "training" in manager.request("telegram:1 (ann)")  # /retrain
    slow.set()
    said = await check
    await _all_runs()
    assert len(trainer.calls) == 2, said  # 3: the check started a second run beside /retrain


async def test_a_first_champion_registered_by_another_process_is_served_at_the_next_check(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    running = Live(serving={})  # qt run trades ema_rsi (HandOverProvider): nothing serves
    process, _ = await _build(storage, tmp_path, clock, running, Trainer(data))
    # qt models retrain in another shell: its own manager, never started, on the same registry
    cli_trainer = Trainer(data)
    offline, _ = await _build(storage, tmp_path, clock, Live(serving={}), cli_trainer, start=False)
    cli_trainer.script.append(cli_trainer.fit(files[0], better=True, champion=False))
    report = await offline.run("requested by qt models retrain", ["xgb"])
    champion = report.trained[0]
    assert (await storage.model_versions.get(champion.id)).status is ModelStatus.CHAMPION  # type: ignore[union-attr]
    clock.now += HOUR
    await process.check()
    assert running.handed == [[champion.id]]  # never handed: the baseline trades on


async def test_drift_is_judged_on_the_newest_rows_of_every_symbol(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer, drift_window_rows=200)
    champion = (await _first_champion(manager, trainer, files[0])).id
    rng = np.random.default_rng(5)
    for i in range(300):  # BTC: confidently wrong on every candle; ETH: right on every one
        ts = T0 + (1 + i) * HOUR
        for symbol, wrong in (("BTC/USDT", True), ("ETH/USDT", False)):
            y = int(rng.integers(0, 2))
            p = (0.9 if y == 0 else 0.1) if wrong else (0.7 if y == 1 else 0.3)
            live.served_rows.append((champion, "xgb", symbol, ts, p))
            live.labels[(symbol, ts)] = y
    clock.now = T0 + 400 * HOUR
    # the newest 200 rows: 100 of each, mean log-loss ~1.33 against the promised 0.6
    said = await manager.check()
    assert f"{champion} drifted" in said, said  # ETH's last 200 rows only: no drift


async def test_no_training_run_starts_after_stop(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer)
    await _first_champion(manager, trainer, files[0])
    clock.now = T0 + 200 * HOUR
    trainer.script.append(trainer.fit(files[1], better=False, champion=True))
    await manager.stop()  # TradingProcess.stop: the learning manager goes first
    said = await manager.check()  # the learning job, still scheduled
    started = manager.training
    await _all_runs()
    assert not started, said


async def test_qt_models_retrain_beside_a_shadow_leaves_one_shadow(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    process, _ = await _build(storage, tmp_path, clock, live, trainer)
    await _first_champion(process, trainer, files[0])
    clock.now += 200 * HOUR
    trainer.script.append(trainer.fit(files[1], better=True, champion=True))
    process.request("test")
    shadow = (await process.wait()).trained[0]  # type: ignore[union-attr]
    assert (await storage.model_versions.get(shadow.id)).status is ModelStatus.SHADOW  # type: ignore[union-attr]
    cli_trainer = Trainer(data)
    offline, _ = await _build(storage, tmp_path, clock, Live(), cli_trainer, start=False)
    clock.now += HOUR
    cli_trainer.script.append(cli_trainer.fit(files[2], better=True, champion=True))
    await offline.run("requested by qt models retrain", ["xgb"])
    shadows = [
        v.id
        for v in await storage.model_versions.list_versions("xgb")
        if v.status is ModelStatus.SHADOW
    ]
    assert len(shadows) == 1, shadows


async def test_the_demos_first_models_stamped_in_wall_time_fall_due_on_schedule(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)  # the demo's market time: the replay's 2024
    wall_ms = T0 + 2 * 365 * 24 * HOUR  # bot/model_training.py stamps time.time()
    await _saved(storage, tmp_path, data, files[0], wall_ms)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer)  # adopts it
    assert "training started" not in await manager.check()  # trained just now: right
    clock.now = T0 + 170 * HOUR  # a week of market time, 500 new candles
    trainer.script.append(trainer.fit(files[1], better=False, champion=True))
    due = await manager._due_now()
    said = await manager.check()
    await _all_runs()
    assert "training started" in said, due.reason  # "schedule: next in 168.0 h", every week


async def test_a_candidate_scored_against_a_champion_rolled_back_meanwhile_is_not_gated(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), HeldTrainer(data)
    trainer.release.set()
    manager, events = await _build(storage, tmp_path, clock, live, trainer)
    a = await _first_champion(manager, trainer, files[0])
    clock.now += HOUR
    b = await _saved(storage, tmp_path, data, files[1], clock.now)
    await manager.promote(b.id, "test")
    trainer.release.clear()
    trainer.entered.clear()
    clock.now += 200 * HOUR
    trainer.script.append(trainer.fit(files[2], better=True, champion=True))
    manager.request("test")  # fits against b, the champion now
    await trainer.entered.wait()
    assert a.id in await manager.rollback("xgb", "b drifts", "test")  # meanwhile: a again
    trainer.release.set()
    report = await manager.wait()
    # scored against b, which no longer serves: not gated (the next run gates against a)
    assert report is not None and report.trained
    candidate = await storage.model_versions.get(report.trained[-1].id)
    assert candidate is not None and candidate.status is ModelStatus.RETIRED
    assert "the champion changed during the run" in candidate.reason
    assert not [e for e in events if isinstance(e, ModelTrained) and e.status == "SHADOW"]


async def test_a_rollback_right_after_a_promotion_serves_the_restored_champion(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    a = await _saved(storage, tmp_path, data, files[0], T0)
    await storage.model_versions.promote(a.id, reason="test", ts_ms=T0)
    b = await _saved(storage, tmp_path, data, files[1], T0 + 1)
    ensemble = EnsembleProvider([ensemble_member(load_version(tmp_path, a))], walk_forward=False)

    async def serve(loaded: Sequence[LoadedVersion]) -> bool:
        return ensemble.serve_members([ensemble_member(v) for v in loaded], clock.now_ms())

    live = Live(serving={"xgb": a.id})
    manager, _ = await _build(storage, tmp_path, clock, live, Trainer(data), serve=serve)
    assert (await storage.model_versions.get(a.id)).status is ModelStatus.CHAMPION  # type: ignore[union-attr]
    clock.now = T0 + 10 * HOUR  # a candle's close; the demo holds market time there
    await manager.promote(b.id, "qt models promote")
    try:
        said = await manager.rollback("xgb", "by hand", "telegram:1")
    except ValueError as exc:  # from add_set: the registry has a back, the ensemble b
        said = f"raised {exc}"
    champion = await storage.model_versions.newest("xgb", ModelStatus.CHAMPION)
    assert champion is not None and champion.id == a.id
    assert ensemble.serving_versions() == {"xgb": a.id}, said


async def test_a_gate_on_fewer_rows_than_the_label_horizon_rejects_the_candidate(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer, gate_min_rows=10)
    await _first_champion(manager, trainer, files[0])
    clock.now += 200 * HOUR
    trainer.script.append(trainer.fit(files[1], better=True, champion=True, n=20))
    manager.request("test")
    report = await manager.wait()
    assert report is not None and report.trained
    candidate = await storage.model_versions.get(report.trained[0].id)
    assert candidate is not None
    assert candidate.status is ModelStatus.RETIRED, (candidate.status, report.lines)


async def test_pruning_a_row_that_points_at_the_member_folder_keeps_the_champions_files(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer, keep_candidates=0)
    champion = await _first_champion(manager, trainer, files[0])
    edited = dataclasses.replace(
        champion,
        id="xgb-hand-edited",
        status=ModelStatus.RETIRED,
        artifact_path="models/xgb",  # a hand-edited row (the threat load_version guards)
        promoted_ms=None,
        created_ms=T0 - HOUR,
    )
    await storage.model_versions.add(edited)
    assert [v.id for v in await manager.prune()] == ["xgb-hand-edited"]
    assert (tmp_path / champion.artifact_path).exists()  # rmtree(models/xgb): all gone
    load_version(tmp_path, champion)


def test_qt_models_rollback_of_an_unknown_member_is_a_one_line_error(cli: Cli) -> None:
    result = cli("models", "rollback", "nope")
    assert result.exit_code == 2, result.output
    assert "unknown member" in result.output


async def test_a_clock_stepped_back_does_not_fail_the_learning_check(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0 + 10 * HOUR)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer)
    await _first_champion(manager, trainer, files[0])
    clock.now -= 60_000  # an NTP step back of a minute
    said = await manager.check()  # ValueError: last training ... is after now
    assert "training started" not in said


# --- attacks that held up ----------------------------------------------------------------


async def test_a_restart_between_saving_the_first_version_and_promoting_it_adopts_it(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    saved = await _saved(storage, tmp_path, data, files[0], T0)  # the process died here
    live = Live(serving={})
    await _build(storage, tmp_path, clock, live, Trainer(data))  # the restart
    champion = await storage.model_versions.newest("xgb", ModelStatus.CHAMPION)
    assert champion is not None and champion.id == saved.id
    assert live.handed == [[saved.id]]


async def test_a_restart_between_promote_and_serve_serves_the_new_champion(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer)
    a = await _first_champion(manager, trainer, files[0])
    b = await _saved(storage, tmp_path, data, files[1], T0 + HOUR)
    await storage.model_versions.promote(b.id, reason="test", ts_ms=T0 + HOUR)  # died here
    restarted = Live(serving={"xgb": a.id})  # the ensemble loaded what served before
    process, _ = await _build(storage, tmp_path, clock, restarted, Trainer(data))
    clock.now += HOUR
    await process.check()
    assert restarted.serving == {"xgb": b.id}


async def test_predictions_recorded_before_a_restart_are_stored_once(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer)
    champion = (await _first_champion(manager, trainer, files[0])).id
    for i in range(40):
        live.served_rows.append((champion, "xgb", "BTC/USDT", T0 + (1 + i) * HOUR, 0.55))
    clock.now = T0 + 50 * HOUR
    assert "40 prediction(s) recorded" in await manager.check()
    again, _ = await _build(storage, tmp_path, clock, live, trainer)  # watermark forgotten
    assert "recorded" not in await again.check()
    assert len(await storage.predictions.list_predictions(champion)) == 40


async def test_a_candidate_equal_to_the_champion_or_compared_only_in_sample_is_rejected(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer)
    await _first_champion(manager, trainer, files[0])
    same = trainer.fit(files[1], better=True, champion=True)
    fit = same.fits["xgb"]
    same.fits["xgb"] = dataclasses.replace(fit, champion_p=fit.p.copy())  # all-equal losses
    seen = trainer.fit(files[2], better=True, champion=True)
    nan = np.full(len(seen.fits["xgb"].p), np.nan)  # every row before the champion's end
    seen.fits["xgb"] = dataclasses.replace(seen.fits["xgb"], champion_p=nan)
    for run, why in ((same, "do not vary"), (seen, "too few rows: 0")):
        clock.now += 200 * HOUR
        trainer.script.append(run)
        manager.request("test")
        report = await manager.wait()
        assert report is not None and report.trained, report
        version = await storage.model_versions.get(report.trained[0].id)
        assert version is not None and version.status is ModelStatus.RETIRED
        assert why in version.reason


async def test_a_hung_training_is_cancelled_by_stop_and_registers_nothing(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), HeldTrainer(data)
    trainer.release.set()
    manager, _ = await _build(storage, tmp_path, clock, live, trainer)
    champion = await _first_champion(manager, trainer, files[0])
    trainer.release.clear()
    trainer.entered.clear()
    trainer.script.append(trainer.fit(files[1], better=True, champion=True))
    manager.request("test")
    await trainer.entered.wait()
    await manager.stop()
    assert not manager.training
    assert [v.id for v in await storage.model_versions.list_versions()] == [champion.id]


async def test_bad_requests_are_clear_errors(storage: Storage, tmp_path: Path, tiny: Tiny) -> None:
    data, _files = tiny
    manager, _ = await _build(storage, tmp_path, SteppedClock(T0), Live(), Trainer(data))
    with pytest.raises(DataError, match="no model version 'nope'"):
        await manager.promote("nope", "test")
    with pytest.raises(DataError, match="unknown member 'lgbm'"):  # not one of the ensemble's
        manager.request("test", ["lgbm"])


def test_qt_models_promote_and_show_of_an_unknown_id_are_one_line_errors(cli: Cli) -> None:
    for command in ("promote", "show"):
        result = cli("models", command, "xgb-20240101T000000Z-00000000")
        assert result.exit_code == 2, result.output
        assert "no model version" in result.output and "Traceback" not in result.output


async def test_a_row_pointing_outside_the_models_folder_is_never_loaded_nor_deleted(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer, keep_candidates=0)
    champion = await _first_champion(manager, trainer, files[0])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    edited = dataclasses.replace(
        champion,
        id="xgb-outside",
        status=ModelStatus.RETIRED,
        artifact_path="models/../elsewhere",
        promoted_ms=None,
        created_ms=T0 - HOUR,
    )
    await storage.model_versions.add(edited)
    from core.errors import ArtifactError

    with pytest.raises(ArtifactError, match="outside"):
        load_version(tmp_path, edited)
    await manager.prune()
    assert (outside / "keep.txt").read_text() == "mine"
    assert (tmp_path / champion.artifact_path).exists()


async def test_prune_while_a_shadow_is_judged_keeps_it_and_its_record(
    storage: Storage, tmp_path: Path, tiny: Tiny
) -> None:
    data, files = tiny
    clock = SteppedClock(T0)
    live, trainer = Live(), Trainer(data)
    manager, _ = await _build(storage, tmp_path, clock, live, trainer, keep_candidates=0)
    first = (await _first_champion(manager, trainer, files[0])).id
    clock.now += 200 * HOUR
    trainer.script.append(trainer.fit(files[1], better=True, champion=True))
    manager.request("test")
    shadow = (await manager.wait()).trained[0].id  # type: ignore[union-attr]
    y, p, q = _rows(40, 3, better=True)
    for i in range(40):
        ts = clock.now + (1 + i) * HOUR
        live.shadow_rows.append((shadow, "xgb", "BTC/USDT", ts, float(p[i])))
        live.served_rows.append((first, "xgb", "BTC/USDT", ts, float(q[i])))
        live.labels[("BTC/USDT", ts)] = int(y[i])
    clock.now += 50 * HOUR
    await manager.record()
    assert await manager.prune() == []
    assert len(await storage.predictions.list_predictions(shadow)) == 40
    assert f"{shadow} promoted" in await manager.check()
