"""Train members in worker processes and save each as a registered version.

The rows are prepared and every member is fitted in a process pool (spawned: a fresh
interpreter, no forked event loop or SQLite connection), so the event loop only waits; the
fitted member comes back as its files' bytes, is rebuilt in a thread and saved through
``core.ml.versions.save_version`` (files first, then the row). A member that fails is
reported and leaves no version; the others are still saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.orphan_guard import end_with_parent
from core.brains.exit_config import ExitConfig
from core.clock import LiveClock
from core.config import ModelsSettings
from core.domain.market import CandleSeries
from core.domain.model_versions import ModelVersion
from core.errors import DataError, QTError
from core.ml.artifacts import TrainingInfo
from core.ml.members import MEMBERS
from core.ml.training import (
    FitResult,
    TrainConfig,
    TrainingSet,
    check_series,
    combine,
    fit_member,
    prepare_symbol,
)
from core.ml.versions import save_version
from core.ports import ModelVersionRepo

Progress = Callable[[str, str], None]  # (step, what happened): "prepare" or a member name


@dataclass(frozen=True, slots=True)
class Trained:
    """What a training run produced: the rows' shape, saved versions and failures."""

    data: TrainingSet
    versions: tuple[ModelVersion, ...]
    failures: tuple[tuple[str, str], ...]  # (member, reason)


def workers_for(members: int) -> int:
    """Return how many processes to fit ``members`` members in (at most one per core)."""
    return max(1, min(members, os.cpu_count() or 1))


async def prepare_in(
    pool: Executor, series: Sequence[CandleSeries], config: TrainConfig, exits: ExitConfig
) -> TrainingSet:
    """Return ``prepare``'s rows, each symbol prepared in a worker of ``pool`` at once (the
    leak guard is most of the work), then pooled and split in a thread: the same rows."""
    check_series(series)
    loop = asyncio.get_running_loop()
    parts = await asyncio.gather(
        *(loop.run_in_executor(pool, prepare_symbol, s, config, exits) for s in series)
    )
    return await asyncio.to_thread(combine, parts, config)


async def prepare_leaving_out(
    pool: Executor, series: Sequence[CandleSeries], config: TrainConfig, exits: ExitConfig
) -> tuple[TrainingSet, dict[str, str]]:
    """Return ``prepare_in``'s rows of the symbols that give any, and why each other was
    left out (too few rows, the leak guard): a symbol listed weeks ago must not stop the
    training on those with years of candles. None left: a ``DataError`` with every reason."""
    check_series(series)
    loop = asyncio.get_running_loop()
    parts = await asyncio.gather(
        *(loop.run_in_executor(pool, prepare_symbol, s, config, exits) for s in series),
        return_exceptions=True,
    )
    kept, left_out = [], {}
    for s, part in zip(series, parts, strict=True):
        if isinstance(part, DataError):
            left_out[s.symbol] = str(part)
        elif isinstance(part, BaseException):
            raise part
        else:
            kept.append(part)
    if not kept:
        raise DataError("; ".join(left_out.values()))  # every symbol's reason
    return await asyncio.to_thread(combine, kept, config), left_out


def needs_segments(members: Sequence[str]) -> bool:
    """Return whether any of ``members`` trains on per-symbol consecutive candles."""
    return any(getattr(MEMBERS[m], "needs_consecutive_rows", False) for m in members)


def train_config(
    models: ModelsSettings,
    *,
    threads: int,
    trees: int | None = None,
    epochs: int | None = None,
    horizon: int = 24,
) -> TrainConfig:
    """Return how ``qt models train`` and the walk-forward make rows and fit members: one
    function, so that both train the same model on the same candles (``trees``/``epochs``
    override the settings' ``QT__MODELS__TREES``/``EPOCHS``; 0 keeps each member's own)."""
    params: dict[str, object] = {"n_jobs": threads, "n_threads": threads}
    n_trees = models.trees if trees is None else trees
    n_epochs = models.epochs if epochs is None else epochs
    if n_trees:
        params["n_estimators"] = n_trees
    if n_epochs:
        params["epochs"] = n_epochs
    if models.warm_epochs:
        params["warm_epochs"] = models.warm_epochs
    return TrainConfig(horizon=horizon, embargo=models.embargo, params=params)


async def train_and_save(
    series: Sequence[CandleSeries],
    members: Sequence[str],
    *,
    repo: ModelVersionRepo,
    data_dir: Path,
    config: TrainConfig,
    exits: ExitConfig,
    progress: Progress,
    pool: ProcessPoolExecutor | None = None,
    now_ms: Callable[[], int] | None = None,
) -> Trained:
    """Prepare the rows, fit ``members`` concurrently, save each that succeeds (stamped with
    ``now_ms()``: the process's clock, the demo's market time; None: the wall clock).

    ``pool``: the caller's worker processes, which it shuts down (the demo: without waiting
    on a fit when it stops); None: a pool of this call's own.
    """
    stamp = now_ms or LiveClock().now_ms
    if pool is not None:
        return await _train_in(
            pool, series, members, repo, data_dir, config, exits, progress, stamp
        )
    with new_pool(len(members)) as own:
        return await _train_in(own, series, members, repo, data_dir, config, exits, progress, stamp)


def new_pool(members: int, *, background: bool = False) -> ProcessPoolExecutor:
    """Return spawned worker processes for fitting ``members`` members (a fresh interpreter
    each: no forked event loop or SQLite connection); ``background``: at a lower CPU
    priority, so a process that trades meanwhile (qt run, the demo) keeps its cores first."""
    return ProcessPoolExecutor(
        workers_for(members),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(), background),
    )


BACKGROUND_NICENESS = 10


def _start_worker(parent_pid: int, background: bool) -> None:
    """Run in each worker as it starts: end with the process that made the pool (a killed
    parent leaves no orphan fitting on), and in the background yield the cores to the
    trading process."""
    end_with_parent(parent_pid)
    if background:
        with contextlib.suppress(OSError, AttributeError):  # not permitted, or no os.nice here
            os.nice(BACKGROUND_NICENESS)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down without waiting on a fit under way: its workers are terminated
    (a torch fit runs for minutes, which a stop must not wait on), then joined."""
    # No public way to end a running worker before Python 3.14's terminate_workers.
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for worker in workers:
        worker.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
    for worker in workers:
        worker.join()


async def _train_in(
    pool: ProcessPoolExecutor,
    series: Sequence[CandleSeries],
    members: Sequence[str],
    repo: ModelVersionRepo,
    data_dir: Path,
    config: TrainConfig,
    exits: ExitConfig,
    progress: Progress,
    now_ms: Callable[[], int],
) -> Trained:
    loop = asyncio.get_running_loop()
    progress("prepare", "started")
    config = dataclasses.replace(config, with_segments=needs_segments(members))
    data = await prepare_in(pool, series, config, exits)
    progress("prepare", f"{len(data.y_train)} training, {len(data.y_valid)} validation rows")
    params = dict(config.params)

    async def one(name: str) -> tuple[str, ModelVersion | None, str]:
        progress(name, "started")
        try:
            result = await loop.run_in_executor(pool, fit_member, name, data, params)
            return name, await _save(result, data, repo, data_dir, now_ms()), ""
        except QTError as exc:  # ours: the message is the reason
            return name, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a library's error fails that member only
            return name, None, f"{type(exc).__name__}: {exc}"

    versions, failures = [], []
    # the slow torch fits first: the GBDTs fill the other workers meanwhile
    first = sorted(members, key=lambda m: not needs_segments([m]))
    for job in asyncio.as_completed([one(name) for name in first]):
        name, version, reason = await job
        if version is None:
            failures.append((name, reason))
            progress(name, "failed")
        else:
            versions.append(version)
            progress(name, "saved")
    return Trained(data, tuple(versions), tuple(failures))


async def _save(
    result: FitResult, data: TrainingSet, repo: ModelVersionRepo, data_dir: Path, created_ms: int
) -> ModelVersion:
    member = await asyncio.to_thread(MEMBERS[result.member].from_files, result.files)
    info = TrainingInfo(
        train_start_ms=data.train_start_ms,
        train_end_ms=data.end_ms,  # the validation window drove early stopping: it was seen
        label=data.label,
        metrics=result.metrics,
    )
    return await save_version(
        repo, data_dir, member, info, created_ms=created_ms, symbols=data.symbols
    )


def describe_params(params: Mapping[str, Any]) -> str:
    """Return the overrides as ``k=v`` for the console."""
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "member defaults"
