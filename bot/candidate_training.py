"""Train candidate members in worker processes, each scored beside its champion, in bounded time.

What the learning manager's retrain calls: the rows are prepared and every member fitted
(``core.ml.training.fit_candidate``) in a spawned process pool of the run's own, so the event
loop only waits; each fit comes back with its own and its champion's P(up) of the same
validation rows, for the promotion gate. A member whose fit raises fails alone. The whole run,
the rows' preparation included, is bounded by ``timeout_s``: then the pool's workers are
terminated and every member not finished fails; those finished are kept. The run's own pool is
stopped at the end however the run ends, a cancelled run too, so no fit outlives its run; a
``WorkerPool`` kept across runs (a backtest's hundreds of retrains, where spawning the workers
again each time would cost more than the fits) is stopped only when a run times out or is
cancelled, and the next run gets fresh workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from bot.model_training import needs_segments, new_pool, prepare_leaving_out, stop_pool
from core.brains.exit_config import ExitConfig
from core.domain.market import CandleSeries
from core.errors import DataError, DependencyError
from core.ml.members import MEMBERS
from core.ml.training import (
    CandidateFit,
    CandidateRun,
    ChampionRef,
    TrainConfig,
    TrainingSet,
    fit_candidate,
)


class WorkerPool:
    """Spawned worker processes kept across training runs (see the module docstring)."""

    def __init__(self, workers: int, *, background: bool = False) -> None:
        self._workers = workers
        self._background = background
        self._pool: ProcessPoolExecutor | None = None

    def get(self) -> ProcessPoolExecutor:
        """Return the workers, started at the first call, after ``discard``, or after one
        died while idle (the OOM killer between two runs): a broken pool takes no work."""
        if self._pool is not None and not _alive(self._pool):
            stop_pool(self._pool)
            self._pool = None
        if self._pool is None:
            self._pool = new_pool(self._workers, background=self._background)
        return self._pool

    async def discard(self) -> None:
        """Terminate the workers (a fit under way too); the next ``get`` starts others."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(stop_pool, pool)


def _alive(pool: ProcessPoolExecutor) -> bool:
    # No public way to ask (the executor notices a dead worker only when it next hands work)
    if getattr(pool, "_broken", False):
        return False
    workers = (getattr(pool, "_processes", None) or {}).values()
    return all(w.is_alive() for w in workers)


async def train_candidates(
    series: Sequence[CandleSeries],
    members: Sequence[str],
    *,
    champions: Mapping[str, ChampionRef],
    config: TrainConfig,
    exits: ExitConfig,
    timeout_s: float,
    warm: Mapping[str, dict[str, bytes]] | None = None,
    fit: Callable[..., CandidateFit] = fit_candidate,
    pool: WorkerPool | None = None,
) -> CandidateRun:
    """Prepare the rows of ``series`` and fit ``members`` concurrently as candidates, each
    beside its champion in ``champions`` (a forecaster warm-started from ``warm``'s files).

    Raise ``DataError`` when the candles give too few rows (nothing is trained), and
    ``DependencyError`` when preparing them outlasts ``timeout_s``. ``fit`` is the worker
    function (``fit_candidate``'s signature; module level, to be sent to a spawned process).
    ``pool``: workers kept across runs (None: the run's own, background priority).
    """
    unknown = [m for m in members if m not in MEMBERS]
    if unknown or not members:
        raise DataError(
            f"candidates: unknown member {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(sorted(MEMBERS))}"
        )
    repeated = sorted({m for m in members if members.count(m) > 1})
    if repeated:
        raise DataError(f"candidates: member {', '.join(repeated)} given more than once")
    if not timeout_s > 0:
        raise DataError(f"candidates: timeout_s must be > 0, was {timeout_s}")
    config = dataclasses.replace(config, with_segments=needs_segments(members))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    owned = pool is None
    workers = pool or WorkerPool(len(members), background=True)  # the process trades meanwhile
    clean = False
    try:
        limit = asyncio.timeout_at(deadline)
        try:
            async with limit:
                data, left_out = await prepare_leaving_out(workers.get(), series, config, exits)
        except TimeoutError:
            if not limit.expired():
                raise  # a worker's own, not our deadline
            raise DependencyError(
                f"candidates: preparing the rows timed out after {timeout_s:g} s"
            ) from None
        except DataError:
            clean = True  # too few rows: the workers are idle and fine
            raise
        fits, failures, clean = await _fit_all(
            workers.get(), data, members, config, champions, warm, fit, deadline, timeout_s
        )
        return CandidateRun(data=data, fits=fits, failures=failures, left_out=left_out)
    finally:
        # Also on cancellation or a timeout: a fit under way is terminated, not waited on.
        if owned or not clean:
            await workers.discard()


async def _fit_all(
    pool: ProcessPoolExecutor,
    data: TrainingSet,
    members: Sequence[str],
    config: TrainConfig,
    champions: Mapping[str, ChampionRef],
    warm: Mapping[str, dict[str, bytes]] | None,
    fit: Callable[..., CandidateFit],
    deadline: float,
    timeout_s: float,
) -> tuple[dict[str, CandidateFit], dict[str, str], bool]:
    """Return each member's fit or why it failed (raised, or not finished by ``deadline``),
    and whether every fit finished (none is still running in a worker)."""
    loop = asyncio.get_running_loop()
    params = dict(config.params)
    jobs: dict[asyncio.Future[CandidateFit], str] = {}
    # the slow torch fits first: the GBDTs fill the other workers meanwhile
    for name in sorted(members, key=lambda m: not needs_segments([m])):
        champion = champions.get(name)
        try:
            job = loop.run_in_executor(
                pool,
                fit,
                name,
                data,
                params,
                None if warm is None else warm.get(name),
                None if champion is None else champion.files,
                None if champion is None else champion.trained_until_ms,
            )
        except (BrokenProcessPool, OSError) as refused:
            # A worker died while this one's was being started (the pool spawns on submit):
            # this member failed like the others, and the pool is replaced after the run.
            job = loop.create_future()
            job.set_exception(BrokenProcessPool(f"the pool broke as {name} was sent: {refused}"))
        jobs[job] = name
    try:
        done, pending = await asyncio.wait(jobs, timeout=max(0.0, deadline - loop.time()))
    finally:
        for job in jobs:  # unfinished (timed out, or the run cancelled): nobody will read them
            job.cancel()
    fits: dict[str, CandidateFit] = {}
    failures: dict[str, str] = {}
    broken = False  # a worker died: the pool takes no more work
    for job in done:
        name = jobs[job]
        exc = job.exception()
        if exc is None:
            fits[name] = job.result()
        else:
            broken = broken or isinstance(exc, BrokenProcessPool)
            failures[name] = _one_line(f"{type(exc).__name__}: {exc}")
    for job in pending:
        failures[jobs[job]] = f"timed out after {timeout_s:g} s"
    return fits, failures, not pending and not broken


def _one_line(reason: str) -> str:
    return " ".join(reason.split())
