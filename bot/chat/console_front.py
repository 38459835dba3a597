"""The console front end: the chat commands typed on the process's own terminal.

Lines are read on a daemon thread (a blocking read of stdin, which an asyncio reader cannot do
for every kind of stdin, must never hold up the shutdown) and handed to the loop; each goes
through the same dispatcher as Telegram and Discord, as the local admin. A confirmation is
asked as ``[y/N]``: the next line answers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import TextIO

from rich.console import Console
from rich.markup import escape

from bot.chat.dispatch import Dispatcher
from bot.chat.registry import Caller
from core.services.commands import Reply

log = logging.getLogger(__name__)

CONSOLE = Caller(platform="console", user_id="local", name="console")


def _may_read(stdin: TextIO) -> bool:
    """Return whether reading ``stdin`` is safe: not a terminal, or one we are in front of."""
    try:
        if not stdin.isatty():
            return True
        return os.tcgetpgrp(stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


class ConsoleCommands:
    """Serve the commands on stdin/stdout while the process runs."""

    def __init__(
        self, dispatcher: Dispatcher, *, console: Console, stdin: TextIO | None = None
    ) -> None:
        self._dispatcher = dispatcher
        self._console = console
        self._stdin = stdin if stdin is not None else sys.stdin
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._waiting: str | None = None  # a confirmation token the next line answers

    async def start(self) -> None:
        """Begin reading commands (not from a terminal the process is in the background of:
        reading it would stop the whole process, SIGTTIN)."""
        if not _may_read(self._stdin):
            log.info("console commands off: stdin is a terminal this process is not in front of")
            return
        with contextlib.suppress(ValueError, OSError, AttributeError):  # not the main thread
            # Sent to the background later (Ctrl-Z, bg): a read fails instead of stopping us.
            signal.signal(signal.SIGTTIN, signal.SIG_IGN)
        loop = asyncio.get_running_loop()
        reader = threading.Thread(target=self._read, args=(loop,), name="console-commands")
        reader.daemon = True
        reader.start()
        self._task = asyncio.create_task(self._serve(), name="console-commands")

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(Exception):  # a closed stdin or loop: stop reading
            for line in self._stdin:
                loop.call_soon_threadsafe(self._lines.put_nowait, line)
        with contextlib.suppress(RuntimeError):  # the loop closed first
            loop.call_soon_threadsafe(self._lines.put_nowait, None)

    async def _serve(self) -> None:
        while (line := await self._lines.get()) is not None:
            text = line.strip()
            if not text:
                continue
            await self.handle(text)

    async def handle(self, text: str) -> Reply | None:
        """Answer one typed line (a command, or y/N to a confirmation asked)."""
        reply: Reply | None
        if self._waiting is not None and text.startswith("/"):
            # A command typed at the prompt (a /halt!) is not an answer: it drops the prompt.
            token, self._waiting = self._waiting, None
            dropped = await self._dispatcher.confirm(CONSOLE, token, False)
            if dropped is not None:
                self._show(dropped)
        if self._waiting is not None:
            token, self._waiting = self._waiting, None
            reply = await self._dispatcher.confirm(CONSOLE, token, text.lower() in ("y", "yes"))
        elif not text.startswith("/"):
            reply = Reply("commands start with /, e.g. /status; /help lists them", ok=False)
        else:
            reply = await self._dispatcher.handle(CONSOLE, text)
        if reply is not None:
            self._show(reply)
            if reply.confirm is not None:
                self._waiting = reply.confirm
        return reply

    def _show(self, reply: Reply) -> None:
        style = "bold" if reply.ok else "bold yellow"
        self._console.print(f"[{style}]{escape(reply.title)}[/{style}]")
        for line in reply.lines:
            self._console.print(f"  {escape(line)}")
        if reply.photo is not None:
            self._console.print(
                f"  (a chart of {len(reply.photo):,} bytes: sent as a photo in chat)"
            )
        if reply.confirm is not None:
            self._console.print("  [bold]confirm? \\[y/N][/bold]")

    async def stop(self) -> None:
        """Stop serving (the reader thread ends with the process)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
