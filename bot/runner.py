"""Run a built process until Ctrl-C / SIGTERM or the end of its feed, then shut down cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.markup import escape

from bot.app import TradingProcess
from bot.console import StatusConsole


async def run_process(
    build: Callable[[], Awaitable[TradingProcess]],
    *,
    console: Console,
    stop: asyncio.Event | None = None,
) -> str:
    """Build, start and run the process; stop it in reverse start order whatever happens."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread / not supported
            pass
    process = await build()
    process.front_ends.append(StatusConsole(process, console=console))
    reason = "error"
    try:
        await process.start()
        reason = await process.run_until(stop)
    finally:
        await process.stop(reason)
        for sig in installed:
            loop.remove_signal_handler(sig)
    console.print(f"stopped ({reason}); database: {escape(process.parts.database_url)}")
    return reason
