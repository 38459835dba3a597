"""The CLI's stdout: a stream that never raises, so a failing console cannot stop trading.

Piped into ``head -2`` or redirected to a full disk, stdout fails on every write. rich then
raises SystemExit (a closed pipe) or the OSError itself, from wherever something was printed
or logged to the console: inside a bus handler, mid-candle, or while the process stops. The
process must trade on and shut down in order; only its console output is lost (the log file
keeps everything).

Started with stdout closed (``qt run >&-``, as a supervisor or cron may), Python sets
``sys.stdout`` to None: there is nothing to write to, and nothing has failed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import IO

log = logging.getLogger(__name__)
# The warning is for the log file of a process (demo, run). A one-shot command configures no
# log: it reports the lost output itself, in one line and its exit status (``bot.cli``), and
# Python's last-resort handler must not print this warning to stderr first.
log.addHandler(logging.NullHandler())


class FailSafeStream:
    """Write to ``target()``; after a stream's first failure, drop what is written to it.

    ``target`` is looked up at every write (``lambda: sys.stdout``), so a stream swapped in
    later (a test runner's) is written to, and only the stream that failed is given up.
    """

    def __init__(self, target: Callable[[], IO[str] | None]) -> None:
        self._target = target
        self._failed: IO[str] | None = None
        self._error: Exception | None = None

    def write(self, text: str) -> int:
        """Write ``text``, or drop it if the stream has failed; always report it written."""
        stream = self._target()
        if stream is not None and stream is not self._failed:
            try:
                stream.write(text)
            except (OSError, ValueError) as exc:  # ValueError: the stream was closed
                self._give_up(stream, exc)
        return len(text)

    def flush(self) -> None:
        """Flush the stream unless it has failed."""
        stream = self._target()
        if stream is not None and stream is not self._failed:
            try:
                stream.flush()
            except (OSError, ValueError) as exc:
                self._give_up(stream, exc)

    def isatty(self) -> bool:
        """Return whether the stream is a terminal (rich then redraws one line in place)."""
        stream = self._target()
        try:
            return stream is not None and stream.isatty()
        except (OSError, ValueError):
            return False

    @property
    def encoding(self) -> str:
        """Return the stream's encoding."""
        return getattr(self._target(), "encoding", None) or "utf-8"

    @property
    def failure(self) -> Exception | None:
        """Return why the current stream failed, or None if it has not (or there is none)."""
        stream = self._target()
        return self._error if stream is not None and stream is self._failed else None

    def _give_up(self, stream: IO[str], error: Exception) -> None:
        self._failed, self._error = stream, error  # first: the warning below is printed here too
        _point_at_devnull(stream)
        log.warning("console output stopped (%s); the program goes on without it", error)


def _point_at_devnull(stream: IO[str]) -> None:
    """Send the stream's file descriptor to /dev/null, as Python's documentation advises for
    a closed pipe: the interpreter flushes stdout at exit and would fail there (status 120)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return  # not a file (a test's stream): nothing flushes it at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
