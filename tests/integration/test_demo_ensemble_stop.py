"""The demo's training in worker processes: stopped mid-fit it neither waits on the fit nor
leaves a worker behind; a failure of any kind is one line and the baseline trades on; once
trained, its workers are gone."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import bot.demo_models
from bot.model_training import Trained
from core.config import Settings
from core.services.bus import EventBus
from storage.memory import MemoryStorage
from tests.integration.test_demo_ensemble import _demo_ensemble
from tests.integration.test_demo_ensemble import settings as settings  # the fixture


async def test_a_stop_during_a_fit_does_not_wait_on_it_nor_leave_a_worker(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitting = asyncio.Event()

    async def long_fit(*_: Any, pool: ProcessPoolExecutor, **__: Any) -> Trained:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(pool, os.getpid)  # a worker is up
        fit = loop.run_in_executor(pool, time.sleep, 120)  # a torch fit takes minutes
        fitting.set()
        await fit
        raise AssertionError("the fit was waited for")

    monkeypatch.setattr(bot.demo_models, "train_and_save", long_fit)
    demo, signals, _ = _demo_ensemble(settings, MemoryStorage(), EventBus())
    await demo.start()
    await asyncio.wait_for(fitting.wait(), timeout=60)
    await asyncio.sleep(0.2)  # the sleep is in the worker

    started = time.monotonic()
    await asyncio.wait_for(demo.stop(), timeout=30)

    assert time.monotonic() - started < 10
    assert multiprocessing.active_children() == []
    assert signals.name == "ema_rsi"


async def test_a_training_that_breaks_is_one_line_and_the_baseline_trades_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: Any, **__: Any) -> Trained:
        # not ours: a worker killed by the OS, a library's bug
        raise RuntimeError("a process in the process pool was terminated abruptly")

    monkeypatch.setattr(bot.demo_models, "train_and_save", broken)
    demo, signals, _ = _demo_ensemble(settings, MemoryStorage(), EventBus())
    with caplog.at_level(logging.WARNING, logger="bot.demo_models"):
        await demo.start()
        assert demo._task is not None
        await asyncio.wait_for(demo._task, timeout=60)  # ended, not raised
    lines = [r.getMessage() for r in caplog.records if "did not train" in r.getMessage()]
    assert lines == [
        "the demo's ensemble did not train (RuntimeError: a process in the process pool "
        "was terminated abruptly); ema_rsi trades on"
    ]
    assert signals.name == "ema_rsi" and not demo.ready.is_set()
    assert demo._pool is None and multiprocessing.active_children() == []  # workers gone
    await demo.stop()


async def test_the_walk_forward_stopped_mid_fit_does_not_wait_on_it(settings: Settings) -> None:
    from bot.walk_forward import walk_forward_ensemble

    _, trainer = walk_forward_ensemble(settings)
    pool = trainer._pool.get()  # the workers the backtest's training runs share
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(pool, os.getpid)  # a worker is up
    fit = loop.run_in_executor(pool, time.sleep, 120)  # a retrain under way
    await asyncio.sleep(0.2)

    started = time.monotonic()
    await asyncio.wait_for(trainer.stop(), timeout=30)

    assert time.monotonic() - started < 10 and multiprocessing.active_children() == []
    with pytest.raises(Exception):  # noqa: B017 - broken or canceled: not waited for
        await fit
