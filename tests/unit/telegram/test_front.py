"""The real python-telegram-bot Application against a fake Bot API server on 127.0.0.1: commands
round trip through the one dispatcher, confirmations by button (the asker's only), photos,
strangers refused once, flood limits and failures survived, push alerts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from telegram.error import RetryAfter
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler

from bot.chat.dispatch import REFUSAL, Access, Dispatcher
from bot.chat.registry import COMMANDS
from bot.telegram.front import TelegramFront, TelegramNotConnected
from core.clock import SimClock
from core.domain.enums import TradingState
from core.ports import StateKey
from core.services.bus import EventBus
from core.services.commands import CommandCore, CommandServices, Reply
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.fakes_telegram import TOKEN, FakeBotApi, button, failure, flood, message

ADMIN, OPERATOR, STRANGER = 1, 2, 666
PNG = b"\x89PNG\r\n\x1a\nfake-chart"


class Core:
    """The real /halt on a real trading state; the other commands answer their own name."""

    def __init__(self, trading_state: TradingStateService, storage: MemoryStorage) -> None:
        services: Any = dict.fromkeys(("engine", "exchange", "policy", "portfolio"))
        self.real = CommandCore(
            CommandServices(
                clock=SimClock(1_000),
                bus=EventBus(),
                storage=storage,
                trading_state=trading_state,
                quote="USDT",
                mode_label="demo",
                **services,
            )
        )
        self.resumed: list[str] = []

    async def halt(self, actor: str, flatten: bool = False) -> Reply:
        return await self.real.halt(actor, flatten)

    async def resume(self, actor: str) -> Reply:
        self.resumed.append(actor)
        return Reply("ACTIVE")

    async def status(self) -> Reply:
        return Reply("status", ("all is well",))

    async def balance(self) -> Reply:  # as /chart will: a PNG
        return Reply("equity chart", ("last 7 days",), photo=PNG)


@dataclass
class Rig:
    api: FakeBotApi
    front: TelegramFront
    core: Core
    storage: MemoryStorage


@asynccontextmanager
async def rig(**front_kwargs: Any) -> AsyncIterator[Rig]:
    storage = MemoryStorage()
    clock = SimClock(1_000)
    bus = EventBus()
    core = Core(TradingStateService(storage.state, bus, clock), storage)
    dispatcher = Dispatcher(
        core,  # type: ignore[arg-type]
        Access({f"telegram:{ADMIN}": "admin", f"telegram:{OPERATOR}": "operator"}),
        bus=bus,
        clock=clock,
    )
    async with FakeBotApi() as api:
        kwargs: dict[str, Any] = {"chat_ids": [ADMIN, OPERATOR], "poll_timeout_s": 1.0}
        kwargs.update(front_kwargs)
        front = TelegramFront(dispatcher, TOKEN, base_url=api.base_url, **kwargs)
        await front.start()
        try:
            yield Rig(api, front, core, storage)
        finally:
            await front.stop()


async def connected(r: Rig) -> None:
    import asyncio

    await asyncio.wait_for(r.front.connected.wait(), 5)


def test_the_telegram_handlers_cover_exactly_the_registry() -> None:
    front = TelegramFront(None, TOKEN, chat_ids=[])  # type: ignore[arg-type]
    handlers = front.handlers
    commands = [h for h in handlers if isinstance(h, CommandHandler)]
    assert sorted(n for h in commands for n in h.commands) == sorted(c.name for c in COMMANDS)
    rest = [type(h) for h in handlers if not isinstance(h, CommandHandler)]
    assert rest == [MessageHandler, CallbackQueryHandler]  # strangers' text; the buttons


async def test_status_round_trip_and_the_menu_from_the_registry() -> None:
    async with rig() as r:
        await connected(r)
        (menu,) = r.api.of("setMyCommands")
        assert [c["command"] for c in menu.params["commands"]] == [c.name for c in COMMANDS]
        await r.api.send(message(ADMIN, "/status", username="ann"))
        (sent,) = await r.api.wait_for("sendMessage")
        assert sent.params["chat_id"] == ADMIN
        assert sent.params["text"] == "status\nall is well"
        assert sent.params["reply_parameters"]["message_id"] == 1


async def test_halt_persists_halted_through_the_dispatcher() -> None:
    async with rig() as r:
        await connected(r)
        await r.api.send(message(OPERATOR, "/halt"))
        (sent,) = await r.api.wait_for("sendMessage")
        assert sent.params["text"].startswith("HALTED")
        assert await r.storage.state.get(StateKey.TRADING_STATE) == TradingState.HALTED.value


async def test_a_confirmation_runs_only_on_the_askers_press() -> None:
    async with rig() as r:
        await connected(r)
        await r.api.send(message(ADMIN, "/resume"))
        (prompt,) = await r.api.wait_for("sendMessage")
        yes, no = prompt.params["reply_markup"]["inline_keyboard"][0]
        assert yes["callback_data"].startswith("qt:y:") and no["callback_data"].startswith("qt:n:")
        # Another allowed user's press (a group chat): refused to them alone, nothing runs.
        await r.api.send(button(OPERATOR, yes["callback_data"], asker=ADMIN, chat_id=-5))
        (refused,) = await r.api.wait_for("answerCallbackQuery")
        assert refused.params["show_alert"] is True and r.core.resumed == []
        await r.api.send(button(ADMIN, yes["callback_data"], asker=ADMIN, chat_id=-5))
        await r.api.wait_for("sendMessage", 2)
        assert r.core.resumed == [f"telegram:{ADMIN}"]
        assert r.api.of("sendMessage")[1].params["text"] == "ACTIVE"
        assert r.api.of("sendMessage")[1].params["chat_id"] == -5
        assert len(r.api.of("editMessageReplyMarkup")) == 1  # the buttons are spent


async def test_a_photo_reply_is_sent_as_a_photo() -> None:
    async with rig() as r:
        await connected(r)
        await r.api.send(message(ADMIN, "/balance"))
        (photo,) = await r.api.wait_for("sendPhoto")
        assert photo.params["photo"] == PNG
        assert photo.params["caption"] == "equity chart\nlast 7 days"
        assert r.api.of("sendMessage") == []


async def test_an_unknown_user_is_refused_once_and_nothing_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.telegram.front")
    async with rig() as r:
        await connected(r)
        await r.api.send(message(STRANGER, "/halt"))
        await r.api.send(message(STRANGER, "hello?"))
        await r.api.send(message(ADMIN, "/status"))  # served after both: they were handled
        await r.api.wait_for("sendMessage", 2)
        assert r.api.texts() == [REFUSAL, "status\nall is well"]
        assert await r.storage.state.get(StateKey.TRADING_STATE) is None
        assert caplog.text.count(f"refused user {STRANGER}") == 1  # how an owner finds an id


async def test_a_flood_limit_on_a_reply_is_waited_out_and_the_next_goes() -> None:
    async with rig() as r:
        await connected(r)
        r.api.errors["sendMessage"] = [flood(retry_after_s=1)]  # 0: PTB reads no limit
        await r.api.send(message(ADMIN, "/status"))
        await r.api.send(message(ADMIN, "/whoami"))
        await r.api.wait_for("sendMessage", 3, timeout_s=8)  # the refused one, its retry, the next
        assert r.api.texts()[1:] == ["status\nall is well", f"telegram:{ADMIN}: admin"]


async def test_polling_errors_are_retried_by_ptb(caplog: pytest.LogCaptureFixture) -> None:
    async with rig() as r:
        r.api.errors["getUpdates"] = [failure(500, "Internal Server Error")]
        await connected(r)
        await r.api.send(message(ADMIN, "/status"))
        await r.api.wait_for("sendMessage", timeout_s=8)  # after PTB's 1 s back-off
        assert "polling failed" in caplog.text


async def test_a_refused_token_at_start_is_said_once_and_retried_until_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        async with FakeBotApi() as api:
            api.errors["getMe"] = [failure(401, "Unauthorized")] * 3
            front = TelegramFront(
                None,  # type: ignore[arg-type]
                TOKEN,
                chat_ids=[ADMIN],
                base_url=api.base_url,
                connect_retry_s=(0.01, 0.02),
            )
            await front.start()  # returns at once: trading never waits for Telegram
            await api.wait_for("getMe", 2)
            assert not front.connected.is_set()
            with pytest.raises(TelegramNotConnected):
                await front.push("hello")
            await asyncio.wait_for(front.connected.wait(), 5)  # BotFather's token works again
            assert len(api.of("getMe")) == 4
            await front.stop()
    refused = [r for r in caplog.records if "refused the bot token" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.ERROR
    assert "QT__CHAT__TELEGRAM_TOKEN" in refused[0].getMessage()
    assert "accepted again" in caplog.text


async def test_a_token_revoked_while_serving_is_said_once_and_serving_resumes_when_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        async with rig(connect_retry_s=(0.01, 0.02)) as r:
            await connected(r)
            # Revoked: the next long poll answers 401 (PTB ends its polling), and so do the
            # reconnects' getMe, until the token is accepted again.
            r.api.errors["getMe"] = [failure(401, "Unauthorized")] * 3
            r.api.errors["getUpdates"] = [failure(401, "Unauthorized")]
            await r.api.wait_for("getMe", 3, timeout_s=8)
            assert not r.front.connected.is_set()
            await asyncio.wait_for(r.front.connected.wait(), 8)
            await r.api.send(message(ADMIN, "/status"))
            [answer] = await r.api.wait_for("sendMessage", timeout_s=8)  # polling again
            assert "all is well" in answer.params["text"]
            assert len(r.api.of("getMe")) == 5  # the first, three refused, the accepted one
    refused = [r for r in caplog.records if "refused the bot token" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.ERROR
    assert "QT__CHAT__TELEGRAM_TOKEN" in refused[0].getMessage()
    assert "stopping failed" not in caplog.text  # the ended polling is no shutdown error


async def test_a_network_failure_at_start_is_retried_until_connected() -> None:
    async with rig(connect_retry_s=(0.01, 0.02)) as r:
        r.api.errors["getMe"] = [failure(502, "Bad Gateway"), failure(500, "down")]
        await connected(r)
        assert len(r.api.of("getMe")) == 3


async def test_a_stop_while_connecting_returns_at_once() -> None:
    async with rig() as r:
        r.api.delays_s["getMe"] = 30.0  # a Bot API that hangs
        await r.api.wait_for("getMe")
        started = time.monotonic()
        await r.front.stop()
        assert time.monotonic() - started < 2 and not r.front.connected.is_set()


async def test_push_goes_to_every_chat_silently_and_a_flood_limit_raises() -> None:
    async with rig() as r:
        await connected(r)
        await r.front.push("filled BTC/USDT", silent=True)
        sent = r.api.of("sendMessage")
        assert [(c.params["chat_id"], c.params["disable_notification"]) for c in sent] == [
            (ADMIN, True),
            (OPERATOR, True),
        ]
        await r.front.push("daily report", photo=PNG)
        assert [c.params["chat_id"] for c in r.api.of("sendPhoto")] == [ADMIN, OPERATOR]
        r.api.errors["sendMessage"] = [flood(retry_after_s=7)]
        with pytest.raises(RetryAfter):
            await r.front.push("again")
        assert r.api.texts()[-1] == "again"  # the other chat still got it
