"""A fake Telegram Bot API server on 127.0.0.1, for the real python-telegram-bot to talk to.

It answers the methods the front end uses (getMe, deleteWebhook, getUpdates with long polling,
sendMessage, sendPhoto, answerCallbackQuery, editMessageReplyMarkup, setMyCommands), records
every call, serves each queued update once, and can answer a method with scripted errors
first (a 429 flood limit, a 500, a 401 refused token). PTB posts form-encoded, multipart
(files) or JSON bodies: all are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token"
BOT_USER = {"id": 4242, "is_bot": True, "first_name": "Quantum", "username": "qt_test_bot"}


@dataclass
class Call:
    """One request received: the method, its parameters, and when (``perf_counter``)."""

    method: str
    params: dict[str, Any]
    at_s: float = field(default_factory=time.perf_counter)


def flood(retry_after_s: int = 0) -> tuple[int, dict[str, Any]]:
    """Return a 429 answer (Telegram's flood limit)."""
    return 429, {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {retry_after_s}",
        "parameters": {"retry_after": retry_after_s},
    }


def failure(status: int, description: str) -> tuple[int, dict[str, Any]]:
    """Return an error answer with ``status``."""
    return status, {"ok": False, "error_code": status, "description": description}


class FakeBotApi:
    """The server; ``async with FakeBotApi() as api`` starts it on a free port."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.errors: dict[str, list[tuple[int, dict[str, Any]]]] = {}  # method -> answers first
        self.delays_s: dict[str, float] = {}  # method -> how long it takes to answer
        self.served_at: dict[int, float] = {}  # update id -> when getUpdates returned it
        self._queued: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._closing = False
        self._closed = asyncio.Event()

    @property
    def base_url(self) -> str:
        """Return the ``base_url`` to hand PTB (it appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    async def __aenter__(self) -> FakeBotApi:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        async with self._arrived:  # a long poll still waiting answers now, not at its timeout
            self._closing = True
            self._arrived.notify_all()
        self._closed.set()
        await self._runner.cleanup()

    # --- scripting ------------------------------------------------------------------------

    async def send(self, update: dict[str, Any]) -> int:
        """Queue an update (``message`` or ``callback_query`` body); return its id."""
        update_id = next(self._ids)
        async with self._arrived:
            self._queued.append({"update_id": update_id, **update})
            self._arrived.notify_all()
        return update_id

    def of(self, method: str) -> list[Call]:
        """Return the calls of ``method`` so far."""
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout_s: float = 5.0) -> list[Call]:
        """Wait until ``method`` was called ``count`` times; return those calls."""
        deadline = time.monotonic() + timeout_s
        while len(self.of(method)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} called {len(self.of(method))} times, not {count}")
            await asyncio.sleep(0.005)
        return self.of(method)

    def texts(self) -> list[str]:
        """Return every text sent (messages, and photo captions)."""
        out = []
        for c in self.calls:
            if c.method == "sendMessage":
                out.append(str(c.params["text"]))
            elif c.method == "sendPhoto":
                out.append(str(c.params.get("caption", "")))
        return out

    # --- the API --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        self.calls.append(Call(method, params))
        if method in self.delays_s:  # cut short when the server closes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self.delays_s[method])
        scripted = self.errors.get(method)
        if scripted:
            status, body = scripted.pop(0)
            return web.json_response(body, status=status)
        if method == "getUpdates":
            result: Any = await self._updates(params)
        elif method == "getMe":
            result = BOT_USER
        elif method in ("sendMessage", "sendPhoto", "editMessageReplyMarkup"):
            result = self._message(method, params)
        else:  # deleteWebhook, setMyCommands, answerCallbackQuery, ...
            result = True
        return web.json_response({"ok": True, "result": result})

    async def _updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        timeout_s = float(params.get("timeout", 0) or 0)
        async with self._arrived:
            if not self._queued and timeout_s > 0 and not self._closing:
                # Long polling: answer as soon as an update comes, or empty at the timeout.
                with_timeout = asyncio.wait_for(self._arrived.wait(), timeout_s)
                try:
                    await with_timeout
                except TimeoutError:
                    pass
            served, self._queued = self._queued, []
        now = time.perf_counter()
        for u in served:
            self.served_at[u["update_id"]] = now
        return served

    def _message(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": int(params.get("message_id") or next(self._message_ids)),
            "date": 0,
            "chat": {"id": int(params.get("chat_id", 0)), "type": "private"},
            "from": BOT_USER,
        }
        if method == "sendPhoto":
            message["photo"] = [
                {"file_id": "photo1", "file_unique_id": "p1", "width": 10, "height": 10}
            ]
            message["caption"] = params.get("caption", "")
        else:
            message["text"] = params.get("text", "")
        return message


async def _params(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        return dict(await request.json())
    out: dict[str, Any] = {}
    for key, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            out[key] = value.file.read()
            continue
        try:
            out[key] = json.loads(value)  # PTB encodes non-strings as JSON
        except (TypeError, ValueError):
            out[key] = value
    out.update(request.query)
    return out


def user(user_id: int, username: str = "") -> dict[str, Any]:
    """Return a Telegram user."""
    return {"id": user_id, "is_bot": False, "first_name": username or "x", "username": username}


def message(user_id: int, text: str, *, username: str = "", message_id: int = 1) -> dict[str, Any]:
    """Return an update body: ``text`` sent by ``user_id`` in their private chat."""
    body: dict[str, Any] = {
        "message_id": message_id,
        "date": 0,
        "chat": {"id": user_id, "type": "private"},
        "from": user(user_id, username),
        "text": text,
    }
    if text.startswith("/"):
        body["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"message": body}


def button(
    presser: int, data: str, *, asker: int, chat_id: int, prompt_id: int = 2000
) -> dict[str, Any]:
    """Return an update body: ``presser`` pressed a button (``data``) under the bot's prompt,
    which answered ``asker``'s command in ``chat_id``."""
    prompt = {
        "message_id": prompt_id,
        "date": 0,
        "chat": {"id": chat_id, "type": "group"},
        "from": BOT_USER,
        "text": "confirm?",
        "reply_to_message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": chat_id, "type": "group"},
            "from": user(asker),
            "text": "/resume",
        },
    }
    return {
        "callback_query": {
            "id": f"cb{presser}{prompt_id}",
            "from": user(presser),
            "chat_instance": "ci",
            "message": prompt,
            "data": data,
        }
    }
