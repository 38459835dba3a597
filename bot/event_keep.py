"""The events the audit trail refused, kept in a file beside the database (``EventKeep``).

While the database cannot be written, the bus keeps the events it could not store in memory,
and here: one JSON line each, appended and synced before the event is delivered. A process
killed during the outage leaves them to the next, whose bus writes them first; the file goes
once they are in the database. A last line cut short (killed mid-write) is an event that was
never delivered: it is skipped. Any other line this program did not write sets the file
aside, whole, for an operator (nothing is lost, nothing is guessed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import OperationalError
from core.ports import StoredEvent
from storage.db import database_file

log = logging.getLogger(__name__)

SUFFIX = ".unsaved-events"


class FileEventKeep:
    """The kept events as JSON lines, appended and synced."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, events: Sequence[StoredEvent]) -> None:
        """Append ``events``; an ``OSError`` (a full disk) is the caller's to say."""
        text = "".join(json.dumps(_row(e), separators=(",", ":")) + "\n" for e in events)
        data = text.encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            try:
                # A full disk takes part of a write, then refuses the rest: all or nothing,
                # or the next events would be appended to this one's first bytes.
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)

    def left(self) -> list[StoredEvent]:
        """Return the kept events, oldest first (no file: none; one that cannot be read:
        ``OperationalError``)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:  # events it may hold would be missing from the trail: no start
            raise OperationalError(
                f"the events kept beside the database in {self.path} cannot be read "
                f"({e.strerror or e}); make it readable (or move it aside) and start again"
            ) from e
        lines = data.split(b"\n")
        torn = lines.pop()  # after the last newline: b"" unless a write was cut short
        events: list[StoredEvent] = []
        for number, line in enumerate(lines, 1):
            event = _parsed(line)
            if event is None:
                self._set_aside(f"line {number} is not an event this program kept")
                return events
            events.append(event)
        if torn:
            log.warning("%s: an event cut short by a crash is skipped (never delivered)", self.path)
            # Cut off: the next event kept would be appended to it, one line no reader parses.
            os.truncate(self.path, len(data) - len(torn))
        return events

    def clear(self) -> None:
        """Remove the file (gone already: fine)."""
        self.path.unlink(missing_ok=True)

    def _set_aside(self, why: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.unreadable")
        os.replace(self.path, aside)
        log.error(
            "%s: %s; the file is kept as %s for an operator, the events before it are "
            "written to the audit trail",
            self.path,
            why,
            aside,
        )


def _row(event: StoredEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "topic": event.topic,
        "ts_ms": event.ts_ms,
        "payload": event.payload,
    }


def _parsed(line: bytes) -> StoredEvent | None:
    try:
        row = json.loads(line.decode("utf-8"))  # not text: a ValueError too
    except ValueError:
        return None
    if not isinstance(row, dict):
        return None
    event_id, topic, ts_ms, payload = (
        row.get(k) for k in ("event_id", "topic", "ts_ms", "payload")
    )
    if not (
        isinstance(event_id, str)
        and isinstance(topic, str)
        and type(ts_ms) is int
        and isinstance(payload, dict)
    ):
        return None
    return StoredEvent(event_id=event_id, topic=topic, ts_ms=ts_ms, payload=payload)


def event_keep_for(database_url: str) -> FileEventKeep | None:
    """Return the keep beside the database file of ``database_url`` (None in memory: the
    events die with the process and its database alike)."""
    database = database_file(database_url)
    return None if database is None else FileEventKeep(database.with_name(database.name + SUFFIX))
