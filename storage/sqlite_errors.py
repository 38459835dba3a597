"""What SQLite's failures mean to the person who has to fix them, in one line naming the file.

SQLAlchemy wraps every driver error in a ~130-line traceback that names neither the database
nor a remedy. The unit of work (``storage.db``) and the migration (``storage.migrate``) turn the
failures of the database *file* (locked, full, damaged, unreadable) into one of ours; anything
else (a bad statement, a broken constraint) is a bug and keeps its traceback.
"""

from __future__ import annotations

import sqlite3

from core.errors import OperationalError, QTError, StorageUnavailable

# SQLite's primary result codes of a file that cannot be used (extended codes such as
# SQLITE_IOERR_WRITE start with these).
_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY")
_PERMANENT = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CANTOPEN")


def error_name(error: BaseException) -> str:
    """Return SQLite's result code name (``SQLITE_BUSY``) of a driver error, wrapped or not."""
    orig = getattr(error, "orig", error)  # SQLAlchemy's DBAPIError keeps the driver's in .orig
    return getattr(orig, "sqlite_errorname", "") if isinstance(orig, sqlite3.Error) else ""


def is_file_failure(error: BaseException) -> bool:
    """Return True when ``error`` is about the database file, not about a statement."""
    return error_name(error).startswith(_TRANSIENT + _PERMANENT)


def explain(error: BaseException, where: str, busy_timeout_s: float) -> str:
    """Return one line saying what is wrong with the database ``where`` and what to do."""
    name = error_name(error)
    orig = getattr(error, "orig", error)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return (
            f"the database {where} is locked by another process (waited {busy_timeout_s:g} s "
            "for it): try again when that process is done"
        )
    if name.startswith("SQLITE_FULL"):
        return f"cannot write the database {where}: the disk is full"
    if name.startswith("SQLITE_IOERR"):
        return (
            f"cannot read or write the database {where}: disk I/O error (is the disk full or "
            "failing?)"
        )
    if name.startswith("SQLITE_READONLY"):
        return f"cannot write the database {where}: {orig}"
    if name.startswith("SQLITE_CORRUPT"):
        return (
            f"the database {where} is damaged ({orig}): restore it from a backup, or set "
            "QT__DATABASE__URL to another file"
        )
    if name == "SQLITE_NOTADB":
        return (
            f"{where} is not an SQLite database; set QT__DATABASE__URL to a database file "
            "(a new name creates one)"
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return (
            f"cannot open the database {where}: check that it is a file (or does not exist "
            "yet) and that its folder can be written"
        )
    return f"the database {where} cannot be used: {orig}"


def unusable(error: BaseException, where: str, busy_timeout_s: float) -> QTError:
    """Return our error for a database file that cannot be used: ``StorageUnavailable`` when
    waiting may help (locked, full), ``OperationalError`` when the file itself needs a human."""
    text = explain(error, where, busy_timeout_s)
    if error_name(error).startswith(_PERMANENT):
        return OperationalError(text)
    return StorageUnavailable(text)
