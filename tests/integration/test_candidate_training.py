"""Candidates trained in a spawned pool of the run's own: a member that raises fails alone, one
that hangs is terminated at the run's timeout (the others kept), a cancelled run kills its
workers, and the pool never outlives the run."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bot.candidate_training import _fit_all, train_candidates
from core.brains.exit_config import ExitConfig
from core.domain.market import CandleSeries
from core.errors import DataError, DependencyError
from core.market.synthetic import generate_candles
from core.ml.training import ChampionRef, TrainConfig, fit_member, prepare
from tests.integration.candidate_fits import crash_lgbm, hang_all, hang_lgbm

SMALL = {"n_estimators": 10, "n_jobs": 1}
EXITS = ExitConfig()
GENEROUS_S = 120.0  # a bound no healthy run of these sizes nears, even on a busy machine


def candles(n: int = 1200) -> list[CandleSeries]:
    return [generate_candles("BTC/USDT", "1h", n, seed=2)]


def config(tmp_path: Path) -> TrainConfig:
    return TrainConfig(params={**SMALL, "pid_dir": str(tmp_path)})


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def pids(folder: Path) -> list[int]:
    return [int(p.stem) for p in folder.glob("*.pid")]


async def test_a_member_that_raises_fails_alone_and_the_other_is_scored_beside_its_champion(
    tmp_path: Path,
) -> None:
    series = candles()
    before = prepare([s.slice(0, 1100) for s in series], TrainConfig())
    champion = fit_member("xgb", before, SMALL)

    run = await train_candidates(
        series,
        ["lgbm", "xgb"],
        champions={"xgb": ChampionRef(champion.files, before.end_ms)},
        config=config(tmp_path),
        exits=EXITS,
        timeout_s=GENEROUS_S,
        fit=crash_lgbm,
    )

    assert run.failures == {"lgbm": "DataError: planted: lgbm cannot fit on these rows"}
    assert set(run.fits) == {"xgb"}
    xgb = run.fits["xgb"]
    assert len(xgb.p) == len(run.data.y_valid) and xgb.champion_p is not None
    in_sample = np.isnan(xgb.champion_p)
    assert np.array_equal(in_sample, xgb.ts_ms < before.end_ms)
    assert in_sample.any() and not in_sample.all()
    assert not multiprocessing.active_children()  # the run's pool is gone


async def test_a_hanging_member_is_terminated_at_the_timeout_and_the_finished_one_is_kept(
    tmp_path: Path,
) -> None:
    timeout_s = 5.0
    started = time.monotonic()

    run = await train_candidates(
        candles(),
        ["xgb", "lgbm"],
        champions={},
        config=config(tmp_path),
        exits=EXITS,
        timeout_s=timeout_s,
        fit=hang_lgbm,
    )

    took = time.monotonic() - started
    assert run.failures == {"lgbm": "timed out after 5 s"}
    assert set(run.fits) == {"xgb"} and run.fits["xgb"].note == "constant"
    assert timeout_s <= took < timeout_s + 10  # not the hang's 600 s
    (hung,) = pids(tmp_path)
    assert gone(hung)
    assert not multiprocessing.active_children()


async def test_a_cancelled_run_kills_its_workers(tmp_path: Path) -> None:
    run = asyncio.create_task(
        train_candidates(
            candles(),
            ["xgb", "lgbm"],
            champions={},
            config=config(tmp_path),
            exits=EXITS,
            timeout_s=GENEROUS_S,
            fit=hang_all,
        )
    )
    for _ in range(600):  # both fits under way (each worker wrote its pid): at most 60 s
        if len(pids(tmp_path)) == 2 or run.done():
            break
        await asyncio.sleep(0.1)
    assert len(pids(tmp_path)) == 2, "the fits never started"

    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    assert all(gone(pid) for pid in pids(tmp_path))
    assert not multiprocessing.active_children()


async def test_too_few_rows_raise_and_stop_the_pool(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"BTC/USDT: \d+ usable rows"):
        await train_candidates(
            candles(n=300),
            ["xgb"],
            champions={},
            config=config(tmp_path),
            exits=EXITS,
            timeout_s=GENEROUS_S,
        )
    assert not multiprocessing.active_children()


async def test_a_timeout_while_preparing_the_rows_is_one_clear_error(tmp_path: Path) -> None:
    # no spawned worker is even up after 50 ms
    with pytest.raises(DependencyError, match=r"preparing the rows timed out after 0.05 s"):
        await train_candidates(
            candles(),
            ["xgb"],
            champions={},
            config=config(tmp_path),
            exits=EXITS,
            timeout_s=0.05,
        )
    assert not multiprocessing.active_children()


@pytest.mark.parametrize(
    ("members", "timeout_s", "message"),
    [
        (["xgb", "gpt"], 10.0, r"unknown member gpt; known: lgbm, nhits"),
        ([], 10.0, r"unknown member \(none given\)"),
        (["xgb", "lgbm", "xgb"], 10.0, r"member xgb given more than once"),
        (["xgb"], 0.0, r"timeout_s must be > 0, was 0"),
        (["xgb"], float("nan"), r"timeout_s must be > 0, was nan"),
    ],
)
async def test_bad_arguments_are_refused_before_any_worker_starts(
    tmp_path: Path, members: list[str], timeout_s: float, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        await train_candidates(
            candles(),
            members,
            champions={},
            config=config(tmp_path),
            exits=EXITS,
            timeout_s=timeout_s,
        )
    assert not multiprocessing.active_children()


class _BreaksOnSecondSubmit(ThreadPoolExecutor):
    """A pool whose second submission finds it broken, as a process pool that spawns on
    submit does when the first worker died meanwhile ("handle is closed")."""

    def __init__(self) -> None:
        super().__init__(1)
        self.submits = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        self.submits += 1
        if self.submits == 2:
            raise OSError("handle is closed")
        return super().submit(fn, *args, **kwargs)


async def test_a_pool_that_breaks_while_a_member_is_sent_fails_that_member_and_the_pool() -> None:
    """Seen once in the suite: a crashed worker broke the pool while the next member's
    worker was being spawned; the OSError escaped the whole run."""

    def fit(name: str, *_: object) -> str:
        return f"fitted {name}"

    with _BreaksOnSecondSubmit() as pool:
        fits, failures, clean = await _fit_all(
            pool,  # type: ignore[arg-type]
            data=None,  # type: ignore[arg-type]
            members=["xgb", "lgbm"],
            config=TrainConfig(),
            champions={},
            warm=None,
            fit=fit,  # type: ignore[arg-type]
            deadline=asyncio.get_running_loop().time() + 30,
            timeout_s=30,
        )
    assert fits == {"xgb": "fitted xgb"}
    assert failures["lgbm"].startswith("BrokenProcessPool: the pool broke as lgbm was sent")
    assert clean is False  # the run replaces the pool
