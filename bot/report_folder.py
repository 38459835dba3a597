"""Where a backtest report goes, checked before the backtest runs.

A report that cannot be written (an unsafe run name, ``--out`` naming a file, a folder on a
read-only disk) used to fail with a traceback after the whole backtest had run. The check
writes nothing: a refused run leaves no folder behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from core.errors import DataError

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_report_folder(out_dir: Path, run_name: str) -> None:
    """Raise ``DataError`` unless the report of ``run_name`` can be written under ``out_dir``."""
    if not _RUN_NAME.match(run_name):
        raise DataError(
            f"run_name {run_name!r} must be 1-100 characters of letters, digits, '.', '_' or '-'"
        )
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder that the report's folders will be made in
    if not existing.is_dir():
        raise DataError(f"cannot write the report to {out_dir}: {existing} is a file")
    try:
        # A real file, not os.access(): that answers yes to root on any folder and says
        # nothing of filesystems that refuse new files (read-only mounts, sysfs).
        handle, probe = tempfile.mkstemp(prefix=".qt-write-check-", dir=existing)
    except OSError as exc:
        raise DataError(
            f"cannot write the report to {out_dir}: {existing}: {exc.strerror or exc}"
        ) from exc
    os.close(handle)
    os.unlink(probe)
