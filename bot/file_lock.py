"""An exclusive lock on a file, held by one process at a time (POSIX ``flock``).

The operating system releases it when the process ends, however it ends, so a crashed holder
never leaves a stale lock behind. The file also records the holder's pid, for the message a
refused process prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from core.errors import OperationalError


class LockHeld(Exception):
    """Another process holds the lock."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is locked by {holder}")
        self.path = path
        self.holder = holder


class FileLock:
    """Hold ``path`` locked from ``acquire()`` until ``release()`` (or the process's end)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock without waiting; raise ``LockHeld`` if another process has it, and
        ``OperationalError`` if its file cannot be created."""
        if self._file is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # "a+": never truncate before holding the lock, or the holder's pid would be lost.
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            # mkdir says "File exists" of a file where a folder should be: say what it means.
            in_the_way = isinstance(exc, FileExistsError | NotADirectoryError)
            reason = "a file stands where a folder should be" if in_the_way else exc.strerror
            raise OperationalError(
                f"cannot create the lock file {self.path}: {reason or exc} "
                "(QT__APP__DATA_DIR and QT__DATABASE__URL must name folders that can be written)"
            ) from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip()
            handle.close()
            raise LockHeld(self.path, f"pid {pid}" if pid else "another process") from None
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Give the lock up (a no-op when not held)."""
        if self._file is None:
            return
        self._file.truncate(0)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    async def start(self) -> None:
        """Do nothing: the lock is taken when the process is built, before it touches a file."""

    async def stop(self) -> None:
        """Release the lock: the process has stopped using what it guards."""
        self.release()
