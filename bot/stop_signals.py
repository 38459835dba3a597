"""Ctrl-C and SIGTERM as a request to stop, for a command that must finish a step first.

Left to Python, Ctrl-C raises wherever the program is (asyncio cancels the task at its next
await) and SIGTERM ends the process on the spot: an import stopped that way left part of a file
stored, and said nothing. Inside ``stop_requests()`` the signals only record themselves; the
command looks at its ``StopRequest`` between its steps and winds down, and further signals
while it does so change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(slots=True)
class StopRequest:
    """The first stop signal received, or None."""

    received: signal.Signals | None = None

    def __bool__(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        """Return the signal's name (``SIGINT``), or an empty string."""
        return "" if self.received is None else self.received.name

    @property
    def exit_code(self) -> int:
        """Return the shell's status for a program ended by the signal (130 for Ctrl-C)."""
        return 128 + int(self.received or 0)

    def _receive(self, sig: signal.Signals) -> None:
        if self.received is None:
            self.received = sig


@contextlib.contextmanager
def stop_requests(loop: asyncio.AbstractEventLoop) -> Iterator[StopRequest]:
    """Record SIGINT and SIGTERM in the yielded request for the block, on ``loop`` (not the
    main thread, or no loop signal handlers: the signals keep their usual effect)."""
    request = StopRequest()
    installed = []
    for sig in SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, request._receive, sig)
            installed.append(sig)
    try:
        yield request
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
