"""The storage halt kept in a file beside the database (``core.ports.HaltNote``).

While the database cannot be written, trading is halted in memory and the halt waits to be
written there; this file keeps it meanwhile, so a process killed during the outage leaves the
halt to the next one (``core.services.trading_state``). It is removed once the halt is in
the database, or an operator resumed. A file that cannot be read counts as a halt: when in
doubt, trade nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.ports import KeptHalt
from storage.db import database_file

SUFFIX = ".storage-halt"
NEVER_MS = 2**62  # a kept halt whose time is unknown: later than any resume


class FileHaltNote:
    """The halt as a small JSON file, written whole or not at all."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, halt: KeptHalt) -> None:
        """Keep the halt; an ``OSError`` (a full disk) is the caller's to say."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with temporary.open("w", encoding="utf-8") as f:
                json.dump(halt._asdict(), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)

    def read(self) -> KeptHalt | None:
        """Return the kept halt, None when there is no file. One that cannot be read counts
        since the file was last written (its own time unknown: a resume from before the
        file, one that answered an older halt, must not lift it)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            why = f"the kept storage halt {self.path} cannot be read ({e.strerror or e})"
            return KeptHalt(self._written_ms(), why, "")
        try:
            kept = json.loads(data.decode("utf-8"))  # not text: a ValueError too
            return KeptHalt(int(kept["since_ms"]), str(kept["reason"]), str(kept["resume_seen"]))
        except (ValueError, KeyError, TypeError):
            why = f"the kept storage halt {self.path} is not one this program wrote"
            return KeptHalt(self._written_ms(), why, "")

    def _written_ms(self) -> int:
        """Return when the file was last written (no time to be had: never, so no resume
        mark answers it and it holds until the halt is in the database)."""
        try:
            return self.path.stat().st_mtime_ns // 1_000_000
        except OSError:
            return NEVER_MS

    def clear(self) -> None:
        """Remove the file (gone already: fine)."""
        self.path.unlink(missing_ok=True)


def halt_note_for(database_url: str) -> FileHaltNote | None:
    """Return the note beside the database file of ``database_url`` (None in memory: the
    halt dies with the process and its database alike)."""
    database = database_file(database_url)
    return None if database is None else FileHaltNote(database.with_name(database.name + SUFFIX))
