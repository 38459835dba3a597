"""Files that appear whole or not at all: a full disk leaves no half-written report behind.

Each file of a batch is written under a temporary name in its own folder; only when every file
was written are they synced and renamed over their final names (``os.replace`` is atomic
within a folder). A write that fails removes the temporaries, leaves the final names as they
were (an earlier run's files stay whole), and is one ``OperationalError`` naming the file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import OperationalError


class AtomicFiles:
    """The files of one batch: ask for a temporary name per final file, write to it."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  # (temporary, final)
        self.current: Path | None = None  # the final file being written or renamed

    def temporary(self, final: Path) -> Path:
        """Return the name to write ``final``'s content to (its folder is created)."""
        self.current = final
        final.parent.mkdir(parents=True, exist_ok=True)
        # Named, not created (mkstemp would make it 0600): the writer creates it, umask applies.
        name = f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        temporary = final.with_name(name)
        self._pending.append((temporary, final))
        return temporary

    def _commit(self) -> None:
        for temporary, final in self._pending:
            self.current = final
            # On disk before the rename: a crash then leaves the old file or the new, never
            # an empty one under the final name.
            fd = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for temporary, final in self._pending:  # renames within a folder: do not fail in practice
            self.current = final
            os.replace(temporary, final)
        self._pending.clear()

    def _discard(self) -> None:
        for temporary, _ in self._pending:
            temporary.unlink(missing_ok=True)
        self._pending.clear()


@contextmanager
def atomic_files(kind: str) -> Iterator[AtomicFiles]:
    """Yield a batch of ``kind`` files (say "report"); its files replace their final names
    when the block ends without error."""
    files = AtomicFiles()
    try:
        yield files
        files._commit()
    except OSError as exc:
        files._discard()
        reason = exc.strerror or str(exc)
        raise OperationalError(
            f"cannot write the {kind} file {files.current}: {reason} (no file of the {kind} "
            "was written)"
        ) from exc
    except BaseException:
        files._discard()  # a bug or Ctrl-C: still no half-written file
        raise
