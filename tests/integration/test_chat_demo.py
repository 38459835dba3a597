"""The chat commands on the live demo process: /status, /halt (persisted at once, no entry
after it), /resume with its confirmation, /mode, /risk, /why, /chart's PNG, an unknown user
refused; every message in the audit trail; fills and the halt pushed to a chat."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.app import TradingProcess
from bot.chat.registry import Caller
from bot.chat.wiring import attach_chat
from bot.modes import build_demo
from core.config import load_settings
from core.domain.enums import Mode, TradingState
from core.domain.events import CommandHandled, Event, OrderFilled, OrderSubmitted
from tests.integration.scripted import AlwaysLong

ADMIN = Caller("telegram", "42", "ann")
STRANGER = Caller("telegram", "666")


class Chat:
    """A push target that keeps what it is sent."""

    name = "telegram"

    def __init__(self) -> None:
        self.sent: list[tuple[str, bool, bytes | None]] = []

    async def push(self, text: str, *, silent: bool = False, photo: bytes | None = None) -> None:
        self.sent.append((text, silent, photo))


async def _until(check, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_commands_drive_the_running_demo_and_pushes_reach_the_chat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        app={"data_dir": str(tmp_path / "ud")},
        demo={"candles_per_second": 20.0, "replay_candles": 400, "history_candles": 60},
        strategy={"provider": "ema_rsi"},
        risk={"max_correlation": 1.0, "symbol_cooldown_s": 0, "max_entries_per_hour": 0},
        brains={"enabled": True, "mc_paths": 20_000},
        chat={"users": {"telegram:42": "admin"}, "push_interval_s": 0.05},
    )
    process: TradingProcess = await build_demo(settings)
    process.engine.signals.provider = AlwaysLong()
    chat = Chat()
    process.push_targets.append(chat)
    dispatcher = attach_chat(process)
    seen: list[Event] = []

    async def keep(event: Event) -> None:
        seen.append(event)

    process.bus.subscribe("*", keep)
    await process.start()
    try:
        # an entry filled (its BUY push follows), not only sent: a halt right after a send
        # could cancel it before the fill, and the push asserted below would never come
        await _until(lambda: any(isinstance(e, OrderFilled) for e in seen))
        status = await dispatcher.handle(ADMIN, "/status")
        assert status is not None and status.ok and "trading state active" in status.text()
        assert await dispatcher.handle(STRANGER, "/halt") is not None  # refused
        assert await process.trading_state.current() is TradingState.ACTIVE
        halted = await dispatcher.handle(ADMIN, "/halt")
        assert halted is not None and halted.title == "HALTED"
        assert await process.storage.state.get(_state_key()) == "halted"  # persisted at once
        # flatten asks first; confirmed, every position closes and, flat while AlwaysLong
        # wants in on every candle, nothing is entered again
        ask = await dispatcher.handle(ADMIN, "/halt flatten")
        assert ask is not None and ask.confirm is not None
        flat = await dispatcher.confirm(ADMIN, ask.confirm)
        assert flat.title.startswith("HALTED") and "closing at market" in flat.text()
        await _until(lambda: not process.engine.trades)
        at = len(seen)
        await asyncio.sleep(1.0)  # 20 candles on
        after = [e for e in seen[at:] if isinstance(e, OrderSubmitted)]
        assert not [e for e in after if e.client_order_id.endswith("-e")]
        # a candle's entry may be being decided (and denied) right now: nothing is held
        assert not [t for t in process.engine.trades.values() if t.amount]
        assert not await process.exchange.fetch_positions()
        ask = await dispatcher.handle(ADMIN, "/resume")
        assert ask is not None and ask.confirm is not None
        assert await process.trading_state.current() is TradingState.HALTED  # not yet
        done = await dispatcher.confirm(ADMIN, ask.confirm)
        assert (
            done.title == "ACTIVE" and await process.trading_state.current() is TradingState.ACTIVE
        )
        ask = await dispatcher.handle(ADMIN, "/mode preservation for 2d calm down")
        assert ask is not None and ask.confirm is not None
        mode = await dispatcher.confirm(ADMIN, ask.confirm)
        assert mode is not None and mode.ok and process.policy.current().mode is Mode.PRESERVATION
        assert "(manual" in mode.title
        for text in ("/risk", "/positions", "/trades 3", "/profit", "/daily 2", "/balance",
                     "/regime", "/models", "/why", "/help", "/health"):  # fmt: skip
            reply = await dispatcher.handle(ADMIN, text)
            assert reply is not None and reply.title, text
        await _until(lambda: len(process.engine.signals.closes("BTC/USDT", 10**15, 5)[0]) > 0)
        chart = await dispatcher.handle(ADMIN, "/chart BTC/USDT")
        assert chart is not None and chart.photo is not None and chart.photo[:4] == b"\x89PNG"
        report = await process._daily_report()
        assert report == "daily report queued for 1 chat(s)"
        await _until(lambda: any("daily report" in text for text, _, _ in chat.sent))
    finally:
        await process.stop("test")
    pushed = "\n".join(text for text, _, _ in chat.sent)
    assert "BUY " in pushed and "TRADING active -> halted by telegram:42 (ann)" in pushed
    audited = [(e.user_id, e.command, e.outcome) for e in seen if isinstance(e, CommandHandled)]
    assert ("666", "halt", "refused") in audited
    assert ("42", "halt", "ok") in audited and ("42", "resume", "confirmed") in audited


def _state_key():  # type: ignore[no-untyped-def]
    from core.ports import StateKey

    return StateKey.TRADING_STATE
