"""Run a built process until Ctrl-C / SIGTERM or the end of its feed, then shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.markup import escape

from bot.app import TradingProcess
from bot.chat.console_front import ConsoleCommands
from bot.chat.dispatch import Dispatcher
from bot.chat.wiring import attach_chat
from bot.console import StatusConsole
from bot.heap import freeze_when_settled, release
from bot.telegram.front import telegram_front
from core.redaction import masked_url


async def run_process(
    build: Callable[[], Awaitable[TradingProcess]],
    *,
    console: Console,
    stop: asyncio.Event | None = None,
) -> str:
    """Build, start and run the process; stop it in reverse start order whatever happens.

    Ctrl-C and SIGTERM set ``stop``; once the process has stopped they are ignored for the
    rest of the interpreter's life (see ``_ignore_from_now_on``).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not the main thread, or a platform without loop signal handlers: run without them.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    process = await build()
    process.front_ends.append(StatusConsole(process, console=console))
    dispatcher = attach_chat(process)  # one for every front end: one allowlist, one audit
    process.front_ends.append(ConsoleCommands(dispatcher, console=console))
    telegram = telegram_front(process.parts.settings.chat, dispatcher)
    if telegram is not None:
        process.front_ends.append(telegram)
        process.push_targets.append(telegram)  # the notifier pushes to it once connected
    _add_discord(process, dispatcher)
    if process.notifier is not None:  # last: started after its targets, stopped (drained) first
        process.front_ends.remove(process.notifier)
        process.front_ends.append(process.notifier)
    freeze_when_settled(process.bus)  # no full collections walking the settled heap
    reason = "error"
    try:
        await process.start()
        reason = await process.run_until(stop)
    finally:
        try:
            await process.stop(reason)
        finally:
            release()
            _ignore_from_now_on(loop, installed)
    database = masked_url(process.parts.database_url)  # its password, if any, masked
    console.print(f"stopped ({reason}); database: {escape(database)}")
    return reason


def _add_discord(process: TradingProcess, dispatcher: Dispatcher) -> None:
    """Serve Discord too when its token is set (and push alerts to its channel, if set)."""
    chat = process.parts.settings.chat
    if not chat.discord_token.get_secret_value():
        return
    # Imported only when used: discord.py is not loaded by every qt command.
    from bot.discord_front import discord_front

    front = discord_front(chat, dispatcher)
    process.front_ends.append(front)
    if front.pushes:
        process.push_targets.append(front)


def _ignore_from_now_on(loop: asyncio.AbstractEventLoop, signals: list[signal.Signals]) -> None:
    """Hand ``signals`` from the loop to SIG_IGN, for good: the process has stopped.

    The program has not ended yet: ``asyncio.run`` still cancels leftover tasks and closes the
    loop, then the interpreter finalizes its modules (ccxt's alone take a few hundred ms). With
    the handlers merely removed, a second Ctrl-C there raised KeyboardInterrupt or, late in
    finalization, killed the program by SIGINT: status 130 after "stopped". Python resets its
    own handlers during finalization but leaves SIG_IGN alone.
    """
    for sig in signals:
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
