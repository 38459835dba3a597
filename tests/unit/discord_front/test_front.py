"""The Discord front end's lifecycle (a background task that logs and retries, never raises
into the process), its command sync, its push alerts and its wiring into ``qt run``/``demo``."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from aiohttp import web

from bot.chat.dispatch import Access, Dispatcher
from bot.chat.notifier import Notifier
from bot.chat.push import PushTarget
from bot.chat.registry import COMMANDS
from bot.discord_front import DiscordFront
from bot.discord_front.front import QuantumClient
from bot.runner import _add_discord
from core.clock import SimClock
from core.config import load_settings
from core.domain.events import TradingStateChanged
from core.errors import TemporaryError
from core.services.bus import EventBus
from core.services.commands import Reply
from tests.unit.discord_front.fake_discord import http_error

PNG = b"\x89PNG\r\n\x1a\n"


def dispatcher() -> Dispatcher:
    return Dispatcher(
        object(),  # type: ignore[arg-type]
        Access({}),
        bus=EventBus(),
        clock=SimClock(0),
    )


class FakeChannel(discord.abc.Messageable):
    """An alert channel: records what is posted, or fails as told."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.posted: list[dict[str, Any]] = []
        self.fail = fail

    async def send(self, content: str, **kwargs: Any) -> None:  # type: ignore[override]
        if self.fail is not None:
            raise self.fail
        self.posted.append({"content": content, **kwargs})


class FakeClient:
    """A client whose ``start`` fails as scripted, then waits until closed."""

    def __init__(self, outcome: BaseException | None, channel: FakeChannel | None = None) -> None:
        self.outcome = outcome
        self.channel = channel
        self.was_ready = False
        self.closed = asyncio.Event()
        self.tokens: list[str] = []

    async def start(self, token: str) -> None:
        self.tokens.append(token)
        if self.outcome is not None:
            raise self.outcome
        self.was_ready = True
        await self.closed.wait()

    async def close(self) -> None:
        self.closed.set()

    def is_ready(self) -> bool:
        return self.was_ready and not self.closed.is_set()

    def get_channel(self, channel_id: int) -> FakeChannel | None:
        return self.channel


async def test_login_failures_are_logged_and_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connected = FakeClient(None)
    refused = FakeClient(discord.LoginFailure("Improper token"))
    clients = iter([refused, FakeClient(OSError("no network")), connected])
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    front = DiscordFront(
        dispatcher(),
        token="t0k",
        client_factory=lambda: next(clients),  # type: ignore[arg-type, return-value]
        sleep=sleep,
        rng=random.Random(1),
    )
    await front.start()  # returns at once: the client runs in the background
    for _ in range(200):
        if connected.tokens:
            break
        await asyncio.sleep(0)
    assert connected.tokens == ["t0k"]
    assert len(waits) == 2 and 2.5 <= waits[0] <= 5.0 and 5.0 <= waits[1] <= 10.0
    assert "the token was refused" in caplog.text and "OSError: no network" in caplog.text
    await front.stop()
    assert connected.closed.is_set()


async def test_push_posts_to_the_channel_and_raises_when_it_cannot() -> None:
    channel = FakeChannel()
    client = FakeClient(None, channel)
    front = DiscordFront(
        dispatcher(),
        token="t",
        channel_id=42,
        client_factory=lambda: client,  # type: ignore[arg-type, return-value]
    )
    target: PushTarget = front  # the notifier's interface
    assert target.name == "discord"
    with pytest.raises(TemporaryError, match="not connected"):
        await front.push("before the login")
    await front.start()
    await asyncio.sleep(0)
    await front.push("filled BTC_USDT", silent=True, photo=PNG)
    [posted] = channel.posted
    assert posted["content"] == "filled BTC\\_USDT" and posted["silent"] is True
    assert isinstance(posted["file"], discord.File)
    channel.fail = http_error(429)
    with pytest.raises(discord.HTTPException):  # the notifier backs off
        await front.push("more")
    await front.stop()
    nowhere = DiscordFront(dispatcher(), token="t")
    assert not nowhere.pushes
    with pytest.raises(TemporaryError, match="no alert channel"):
        await nowhere.push("x")


class RecordingTree:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.synced: list[Any] = []
        self.copied: list[Any] = []

    def copy_global_to(self, *, guild: discord.abc.Snowflake) -> None:
        self.copied.append(guild.id)

    async def sync(self, *, guild: discord.abc.Snowflake | None = None) -> list[object]:
        if self.fail is not None:
            raise self.fail
        self.synced.append(None if guild is None else guild.id)
        return [object()] * len(COMMANDS)


async def test_commands_sync_to_the_guild_else_globally_and_a_failed_sync_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.discord_front")
    guild = QuantumClient(dispatcher(), guild_id=42)
    assert sorted(c.name for c in guild.tree.get_commands()) == sorted(c.name for c in COMMANDS)
    guild.tree = RecordingTree()  # type: ignore[assignment]
    await guild.setup_hook()
    assert (guild.tree.copied, guild.tree.synced) == ([42], [42])  # type: ignore[attr-defined]
    everywhere = QuantumClient(dispatcher(), guild_id=None)
    everywhere.tree = RecordingTree()  # type: ignore[assignment]
    await everywhere.setup_hook()
    assert everywhere.tree.synced == [None]  # type: ignore[attr-defined]
    assert f"{len(COMMANDS)} slash commands synced" in caplog.text
    failing = QuantumClient(dispatcher(), guild_id=None)
    failing.tree = RecordingTree(http_error(403, "Forbidden"))  # type: ignore[assignment]
    await failing.setup_hook()  # logged; the client goes on
    assert "were not synced" in caplog.text


class SlowDispatcher:
    confirm_ttl_s = 60.0

    async def handle(self, _caller: object, _text: str) -> Reply:
        await asyncio.sleep(0.05)
        return Reply("slow")


async def test_a_slow_command_is_deferred_then_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.discord_front import tree as tree_module
    from tests.unit.discord_front.fake_discord import FakeInteraction

    monkeypatch.setattr(tree_module, "DEFER_AFTER_S", 0.001)
    i = FakeInteraction(1)
    await tree_module.answer(i, SlowDispatcher(), "/status")  # type: ignore[arg-type]
    assert i.response.deferred
    assert [(s.via, s.content) for s in i.sent] == [("followup", "**slow**")]


def _process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **chat: object) -> Any:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    settings = load_settings(chat=chat)
    return SimpleNamespace(parts=SimpleNamespace(settings=settings), front_ends=[], push_targets=[])


def test_discord_starts_only_with_a_token_and_pushes_only_with_a_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = _process(tmp_path, monkeypatch)
    _add_discord(off, dispatcher())
    assert off.front_ends == [] and off.push_targets == []
    commands_only = _process(tmp_path, monkeypatch, discord_token="x")
    _add_discord(commands_only, dispatcher())
    assert [f.name for f in commands_only.front_ends] == ["discord"]
    assert commands_only.push_targets == []
    full = _process(
        tmp_path, monkeypatch, discord_token="x", discord_channel_id=7, discord_guild_id=9
    )
    _add_discord(full, dispatcher())
    assert full.push_targets == full.front_ends and full.push_targets[0].pushes


async def test_a_refused_token_on_the_real_client_is_logged_and_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The real discord.py login against a fake Discord API on 127.0.0.1 that refuses the
    token (401): logged, retried after a backoff, and nothing raised into the process."""
    seen: list[str] = []

    async def me(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)

    app = web.Application()
    app.router.add_get("/api/v10/users/@me", me)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    retried = asyncio.Event()

    async def sleep(_s: float) -> None:
        retried.set()
        await asyncio.Event().wait()  # one attempt is enough here

    front = DiscordFront(dispatcher(), token="revoked", sleep=sleep)
    try:
        await front.start()
        await asyncio.wait_for(retried.wait(), timeout=10)
    finally:
        await front.stop()
        await runner.cleanup()
    assert seen == ["Bot revoked"]
    assert "the token was refused" in caplog.text


async def test_the_notifier_pushes_through_discord_and_outlasts_a_429() -> None:
    """The real notifier with the Discord front end as its target: a 429 from Discord is
    retried after a backoff (no real waiting) and the alert arrives."""
    channel = FakeChannel(fail=http_error(429))
    client = FakeClient(None, channel)
    front = DiscordFront(
        dispatcher(),
        token="t",
        channel_id=7,
        client_factory=lambda: client,  # type: ignore[arg-type, return-value]
    )
    bus, slept = EventBus(), list[float]()

    async def sleep(s: float) -> None:
        slept.append(s)
        channel.fail = None  # Discord's limit has passed
        await asyncio.sleep(0)

    notifier = Notifier(bus, [front], sleep=sleep, wall=lambda: 0.0)
    await front.start()
    await notifier.start()
    await bus.publish(
        TradingStateChanged(ts_ms=2, previous="active", current="halted", reason="/halt", actor="x")
    )
    for _ in range(200):
        if channel.posted:
            break
        await asyncio.sleep(0)
    await notifier.stop()
    await front.stop()
    [posted] = channel.posted
    assert "halted" in posted["content"].lower() and slept
