"""The whole process, offline: demo wiring, clean shutdown, restart recovery."""

from __future__ import annotations

import asyncio
import errno
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
from core.domain.events import Event
from core.errors import OperationalError
from storage import open_storage


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **demo: object) -> Settings:
    monkeypatch.chdir(tmp_path)
    demo_cfg = {"candles_per_second": 2000.0, "replay_candles": 48, "history_candles": 60} | demo
    # The baseline: these test the process; tests/integration/test_demo_ensemble.py its ensemble.
    return load_settings(
        app={"data_dir": str(tmp_path / "ud")}, demo=demo_cfg, strategy={"provider": "ema_rsi"}
    )


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
    # The audit trail listens to everything: no publisher skips an event in the live process
    # (a backtest's bus, without it, builds only the events someone subscribed to).
    assert all(process.bus.wants(topic) for topic in _every_event_topic())
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


class GoneConsole:
    """A front end whose output is gone: rich's SystemExit on every event (a closed pipe) and
    an OSError when it stops (stdout on a full disk)."""

    def __init__(self, process: TradingProcess) -> None:
        process.bus.subscribe("*", self._on_event, name="gone-console")

    async def _on_event(self, _event: object) -> None:
        raise SystemExit(1)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


async def _stopped_topics(process: TradingProcess) -> list[str]:
    storage = open_storage(process.parts.database_url)
    await storage.start()
    try:
        return [e.topic for e in await storage.events.list_events("process.")]
    finally:
        await storage.stop()


async def test_a_failing_front_end_neither_stops_trading_nor_skips_a_shutdown_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, monkeypatch)
    process = await build_demo(settings)
    process.front_ends.append(GoneConsole(process))
    await process.start()
    assert await process.run_until(asyncio.Event()) == "feed ended"
    await process.stop("feed ended")  # the console's failure is logged, not raised
    assert process.market.stats.candles == 2 * 48  # traded to the end
    assert await _stopped_topics(process) == ["process.started", "process.stopped"]
    await (await build_demo(settings)).stop("test")  # its database lock was released too


class UnstartableConsole(GoneConsole):
    """A front end that cannot even start (rich's SystemExit on a closed stdout)."""

    async def start(self) -> None:
        raise SystemExit(1)


async def test_a_front_end_that_cannot_start_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = await build_demo(_settings(tmp_path, monkeypatch))
    process.front_ends.append(UnstartableConsole(process))
    await process.start()
    assert await process.run_until(asyncio.Event()) == "feed ended"
    await process.stop("feed ended")
    assert process.market.stats.candles == 2 * 48
    assert await _stopped_topics(process) == ["process.started", "process.stopped"]


class FailingCloser:
    """A component that cannot stop cleanly."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        raise RuntimeError("close failed")


async def test_every_component_stops_even_after_another_one_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, monkeypatch, replay_candles=5000)
    process = await build_demo(settings)
    process.parts.extra.append(FailingCloser())  # stopped first of the extras
    await process.start()
    with pytest.raises(RuntimeError, match="close failed"):  # reported once all have run
        await process.stop("test")
    assert await _stopped_topics(process) == ["process.started", "process.stopped"]
    await (await build_demo(settings)).stop("test")  # the lock, stopped after it, is free


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


def _every_event_topic() -> list[str]:
    import core.domain.events as events

    kinds = [c for c in vars(events).values() if isinstance(c, type) and issubclass(c, Event)]
    assert len(kinds) > 30
    return [kind.topic for kind in kinds]
