"""A process with a Telegram token but no reachable Telegram trades on, and shuts down clean."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from rich.console import Console

from bot.app import TradingProcess
from bot.modes import build_demo
from bot.runner import run_process
from bot.telegram.front import TelegramFront
from core.config import load_settings


async def test_an_unreachable_telegram_never_stops_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as s:  # a port just free: connecting is refused at once
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    settings = load_settings(
        app={"data_dir": str(tmp_path / "ud")},
        demo={"candles_per_second": 2000.0, "replay_candles": 48, "history_candles": 60},
        strategy={"provider": "ema_rsi"},
        chat={
            "telegram_token": "123:abc",
            "users": {"telegram:7": "admin"},
            "telegram_api_url": f"http://127.0.0.1:{closed_port}/bot",  # nobody listens
        },
    )
    before = asyncio.all_tasks()
    built: list[TradingProcess] = []

    async def build() -> TradingProcess:
        built.append(await build_demo(settings))
        return built[0]

    # Telegram cannot be reached: the connect fails, is retried in the background, and the
    # shutdown cancels it.
    reason = await run_process(build, console=Console(record=True, width=200))
    assert reason == "feed ended"
    process = built[0]
    assert process.market.stats.candles == 2 * 48
    (telegram,) = process.push_targets
    assert isinstance(telegram, TelegramFront) and telegram.chat_ids == (7,)
    assert any(front is telegram for front in process.front_ends)
    assert not telegram.connected.is_set()
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before
