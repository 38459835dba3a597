"""A binary copy of a candle file's parsed columns, so that the next load skips the parse.

Parsing a gzipped CSV (gunzip, Arrow's reader, ~40 ms and Arrow's import for BTC/USDT 1h) is
most of a load; reading back its columns is a few ms. Only the parse is kept: every load still
validates the candles, so a cache never lets a rule through (``core.market.importers``).

An entry is used only when the source has the size, modification time and sha256 it had when
the entry was written, and the entry's own bytes hash to what its header says; anything else
(the file changed, a truncated or corrupt entry, another format version) is ignored and
rewritten after the parse. The entries live in a folder of the caller's choosing (`qt
backtest`: ``<data_dir>/cache/candles``, beside the database), never in the data folder, which
may be read-only or shared; a folder that cannot be written only means no cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.market.candle_columns import PRICE_COLUMNS

_MAGIC = b"QT-CANDLES\n"
_VERSION = 1
_LENGTH = struct.Struct("<Q")  # the header's length, before the header


@dataclass(frozen=True, slots=True)
class ParsedCandles:
    """A file's columns as parsed: open times (ms), the price columns and the parse's notes."""

    ts: np.ndarray
    cols: dict[str, np.ndarray]
    notes: list[str]


@dataclass(frozen=True, slots=True)
class SourceStamp:
    """What identifies a source file's content: its size and modification time (ns)."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> SourceStamp:
        """Return the stamp of ``path`` now."""
        st = path.stat()
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns)


class CandleCache:
    """Parsed candle files kept in ``folder``, one entry per source path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def entry(self, source: Path) -> Path:
        """Return where the entry of ``source`` is kept (named by its absolute path)."""
        key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:32]
        return self.folder / f"{key}.candles"

    def load(self, source: Path) -> ParsedCandles | None:
        """Return the cached parse of ``source``, or None when there is none it can trust."""
        try:
            blob = self.entry(source).read_bytes()
            stamp = SourceStamp.of(source)
        except OSError:
            return None
        header, payload = _split(blob)
        if header is None or not _matches(header, source, stamp):
            return None
        if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
            return None
        return _columns(header, payload)

    def store(self, source: Path, stamp: SourceStamp, parsed: ParsedCandles) -> None:
        """Keep ``parsed`` as the parse of ``source`` as it was at ``stamp`` (taken before the
        parse: a file changed meanwhile is not cached). Never raises: no cache is no harm."""
        try:
            if SourceStamp.of(source) != stamp:
                return
            payload = b"".join(
                np.ascontiguousarray(a).tobytes()
                for a in (
                    parsed.ts.astype("<i8"),
                    *(parsed.cols[c].astype("<f8") for c in PRICE_COLUMNS),
                )
            )
            header = json.dumps(
                {
                    "version": _VERSION,
                    "source": str(source.resolve()),
                    "size": stamp.size,
                    "mtime_ns": stamp.mtime_ns,
                    "source_sha256": _file_sha256(source),
                    "rows": len(parsed.ts),
                    "notes": parsed.notes,
                    "payload_sha256": hashlib.sha256(payload).hexdigest(),
                }
            ).encode()
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(
                self.entry(source), _MAGIC + _LENGTH.pack(len(header)) + header + payload
            )
        except OSError:
            return  # a read-only or full folder: loads parse the file, as without a cache


def _file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _split(blob: bytes) -> tuple[dict[str, object] | None, bytes]:
    """Return an entry's header (None: not one of ours, or damaged) and its payload."""
    start = len(_MAGIC) + _LENGTH.size
    if not blob.startswith(_MAGIC) or len(blob) < start:
        return None, b""
    (length,) = _LENGTH.unpack_from(blob, len(_MAGIC))
    try:
        header = json.loads(blob[start : start + length])
    except (UnicodeDecodeError, ValueError):
        return None, b""
    if not isinstance(header, dict) or header.get("version") != _VERSION:
        return None, b""
    return header, blob[start + length :]


def _matches(header: dict[str, object], source: Path, stamp: SourceStamp) -> bool:
    """Return whether the entry was made from ``source`` with the content it has now."""
    if (header.get("size"), header.get("mtime_ns")) != (stamp.size, stamp.mtime_ns):
        return False
    if header.get("source") != str(source.resolve()):
        return False
    try:  # the same size and time can hide another content (cp -p, rsync -t)
        return header.get("source_sha256") == _file_sha256(source)
    except OSError:
        return False


def _columns(header: dict[str, object], payload: bytes) -> ParsedCandles | None:
    rows, notes = header.get("rows"), header.get("notes")
    if not isinstance(rows, int) or not isinstance(notes, list) or rows < 0:
        return None
    if len(payload) != rows * 8 * (1 + len(PRICE_COLUMNS)):
        return None
    buffer = bytearray(payload)  # writeable arrays, as a parse gives
    ts = np.frombuffer(buffer, dtype="<i8", count=rows).astype(np.int64, copy=False)
    cols = {
        c: np.frombuffer(buffer, dtype="<f8", count=rows, offset=8 * rows * (i + 1)).astype(
            np.float64, copy=False
        )
        for i, c in enumerate(PRICE_COLUMNS)
    }
    return ParsedCandles(ts=ts, cols=cols, notes=[str(n) for n in notes])


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (two writers: the last one wins)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
