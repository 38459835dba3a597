"""The whole process, offline: demo wiring, clean shutdown, restart recovery."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from bot.app import TradingProcess
from bot.modes import build_demo
from bot.runner import run_process
from core.config import Settings, load_settings
from core.errors import OperationalError
from storage import open_storage


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **demo: object) -> Settings:
    monkeypatch.chdir(tmp_path)
    demo_cfg = {"candles_per_second": 2000.0, "replay_candles": 48, "history_candles": 60} | demo
    return load_settings(app={"data_dir": str(tmp_path / "ud")}, demo=demo_cfg)


async def test_demo_runs_to_the_end_and_leaves_no_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, monkeypatch)
    before = asyncio.all_tasks()
    built: list[TradingProcess] = []

    async def build() -> TradingProcess:
        built.append(await build_demo(settings))
        return built[0]

    console = Console(record=True, width=200, force_terminal=False)
    reason = await run_process(build, console=console)
    assert reason == "feed ended"
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before
    process = built[0]
    assert process.market.stats.candles == 2 * 48
    # everything landed in the demo database: candles (history + replay) and the audit trail
    storage = open_storage(f"sqlite+aiosqlite:///{tmp_path / 'ud' / 'demo.sqlite'}")
    await storage.start()
    try:
        stored = await storage.candles.list_series()
        assert {(s.symbol, s.rows) for s in stored} == {("BTC/USDT", 108), ("ETH/USDT", 108)}
        topics = [e.topic for e in await storage.events.list_events(limit=10_000)]
        assert topics[0] == "process.started"
        assert topics[-1] == "process.stopped"
        assert topics.count("market.candle_closed") == 96
        assert "portfolio.equity_recorded" in topics
        equity = await storage.balances.list_equity()
        assert equity[-1] == process.portfolio.last  # the final snapshot is stored
        assert equity[0].equity == Decimal(10_000)  # nothing traded before the first hour
    finally:
        await storage.stop()
    assert "stopped (feed ended)" in console.export_text()


async def test_stop_signal_shuts_down_cleanly_mid_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, monkeypatch, candles_per_second=20.0, replay_candles=5000)
    before = asyncio.all_tasks()
    stop = asyncio.Event()
    built: list[TradingProcess] = []

    async def build() -> TradingProcess:
        built.append(await build_demo(settings))
        return built[0]

    async def press_ctrl_c() -> None:
        while not built or built[0].market.stats.candles < 4:
            await asyncio.sleep(0.01)
        stop.set()

    pressing = asyncio.create_task(press_ctrl_c())
    console = Console(record=True, width=200)
    reason = await asyncio.wait_for(run_process(build, console=console, stop=stop), timeout=30)
    await pressing
    assert reason == "signal"
    assert 4 <= built[0].market.stats.candles < 5000
    leftover = {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}
    assert leftover == set()


async def test_a_second_demo_in_the_same_folder_is_refused_and_the_first_keeps_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each demo starts on a fresh demo.sqlite; a second one used to delete the file of the demo
    # still running there, whose audit trail then went to a deleted file.
    settings = _settings(tmp_path, monkeypatch)
    first = await build_demo(settings)
    await first.start()
    try:
        with pytest.raises(OperationalError, match=r"another `qt demo` .*demo\.sqlite"):
            await build_demo(settings)
        storage = open_storage(first.parts.database_url)
        await storage.start()
        try:
            topics = [e.topic for e in await storage.events.list_events(limit=10)]
        finally:
            await storage.stop()
        assert topics[0] == "process.started"  # the running demo's file, untouched
    finally:
        await first.stop("test")
    again = await build_demo(settings)  # once it stopped, the folder is free again
    await again.stop("test")


class CtrlCOnStopped(io.StringIO):
    """A console stream that presses Ctrl-C the moment the runner prints "stopped"."""

    def write(self, text: str) -> int:
        if text.startswith("stopped ("):
            os.kill(os.getpid(), signal.SIGINT)
        return super().write(text)


def test_ctrl_c_after_stopped_and_during_the_loop_teardown_is_not_an_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `qt demo` runs the process under asyncio.run, whose own teardown (cancelling leftover
    # tasks, closing the loop) comes after run_process returns, and the interpreter's exit
    # after that. A second Ctrl-C there used to meet Python's default handler:
    # KeyboardInterrupt, or SIGINT itself late in finalization; exit 130 after "stopped".
    settings = _settings(tmp_path, monkeypatch)
    stream = CtrlCOnStopped()

    async def ctrl_c_when_cancelled() -> None:
        try:
            await asyncio.Event().wait()
        finally:  # asyncio.run cancels the tasks still running after the main coroutine
            os.kill(os.getpid(), signal.SIGINT)

    leftover: list[asyncio.Task[None]] = []  # referenced, so only asyncio.run cancels it

    async def main() -> str:
        leftover.append(asyncio.create_task(ctrl_c_when_cancelled()))
        stop = asyncio.Event()
        stop.set()  # the first Ctrl-C, already pressed
        return await run_process(
            lambda: build_demo(settings), console=Console(file=stream, width=200), stop=stop
        )

    try:
        reason = asyncio.run(main())
    except KeyboardInterrupt:
        pytest.fail("a Ctrl-C during shutdown escaped as KeyboardInterrupt (exit 130)")
    assert reason == "signal"
    assert "stopped (signal)" in stream.getvalue()
    assert leftover[0].cancelled()  # the teardown's Ctrl-C really happened
    # Only SIG_IGN outlasts the loop and survives the interpreter's finalization.
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
