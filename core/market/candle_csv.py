"""Read our candle CSV (``timestamp,open,high,low,close,volume``, plain or gzip) with Arrow.

Problems are named by data row (1-based, the header not counted), which Arrow's own messages do
not do. A last line with too few fields is what an interrupted write leaves behind; with
``repair`` it is dropped and said so. A malformed line anywhere else means the file is damaged in
a way no rule describes, so it is refused even when repairing.

A stop signal arriving while Arrow reads on the main thread cancels the read (``ArrowCancelled``,
after Arrow has handed the signal to the process's own handler); that is never a bad file, so it
is re-raised as it is for the caller's stop handling.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from core.errors import DataError
from core.market.candle_columns import CSV_COLUMNS, PRICE_COLUMNS

_ROW_NOTE = "(1-based, header not counted)"


def read_candle_csv(
    path: Path, *, repair: bool
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """Return the timestamps, the price/volume columns and notes on what was dropped."""
    types = {"timestamp": pa.int64(), **dict.fromkeys(PRICE_COLUMNS, pa.float64())}
    malformed: list[pa_csv.InvalidRow] = []
    try:
        table = _read(path, types, malformed)
    except pa.ArrowCancelled:
        raise
    except pa.ArrowInvalid as exc:
        # Arrow's conversion errors name the column but not the row: find it ourselves.
        raise DataError(_locate_csv_problem(path, exc)) from exc
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}") from exc
    require_columns(path, table.column_names, CSV_COLUMNS)
    notes = _malformed_rows(path, malformed, table.num_rows, repair=repair)
    ts_col = table.column("timestamp")
    if ts_col.null_count:
        row = int(np.argmax(ts_col.is_null().to_numpy(zero_copy_only=False))) + 1
        raise DataError(f"{path}: empty timestamp at data row {row} {_ROW_NOTE}")
    return ts_col.to_numpy(), {c: float_column(table.column(c)) for c in PRICE_COLUMNS}, notes


def _read(
    path: Path, types: dict[str, pa.DataType], malformed: list[pa_csv.InvalidRow]
) -> pa.Table:
    """Read the whole file, setting aside rows with the wrong number of fields."""

    def set_aside(row: pa_csv.InvalidRow) -> str:
        malformed.append(row)
        return "skip"

    return pa_csv.read_csv(
        path,
        parse_options=pa_csv.ParseOptions(invalid_row_handler=set_aside),
        convert_options=pa_csv.ConvertOptions(column_types=types),
    )


def _malformed_rows(
    path: Path, malformed: list[pa_csv.InvalidRow], rows_read: int, *, repair: bool
) -> list[str]:
    """Refuse the rows with the wrong number of fields, or drop a truncated last one."""
    if not malformed:
        return []
    first = malformed[0]
    text, fields, expected = first.text, first.actual_columns, first.expected_columns
    if len(malformed) == 1 and text == _last_line(path):
        row = rows_read + 1  # every other data row was read
        if repair:
            return [
                f"dropped the truncated last line, data row {row} ({fields} of {expected} "
                "fields): an interrupted write?"
            ]
        raise DataError(
            f"{path}: data row {row} {_ROW_NOTE} has {fields} fields, expected {expected}: "
            f"{text!r}; the last line looks cut off (an interrupted write?); repair drops a "
            "truncated last line"
        )
    raise DataError(
        f"{path}: data row {_data_row_of(path, text)} {_ROW_NOTE} has {fields} fields, "
        f"expected {expected}: {text!r}"
    )


def _lines(path: Path) -> Iterator[str]:
    """Yield the file's non-empty lines after the header, as Arrow counts data rows."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        next(fh, None)
        for line in fh:
            stripped = line.rstrip("\r\n")
            if stripped:
                yield stripped


def _last_line(path: Path) -> str | None:
    last = None
    for last in _lines(path):  # noqa: B007 - only the last one is wanted
        pass
    return last


def _data_row_of(path: Path, text: str) -> int | str:
    for row, line in enumerate(_lines(path), start=1):
        if line == text:
            return row
    return "?"


def _locate_csv_problem(path: Path, exc: Exception) -> str:
    try:
        table = _read(path, dict.fromkeys(CSV_COLUMNS, pa.string()), [])
    except pa.ArrowCancelled:
        raise
    except (pa.ArrowException, OSError, EOFError) as again:
        return f"{path}: cannot read as CSV: {again}"
    missing = [c for c in CSV_COLUMNS if c not in table.column_names]
    if missing:
        return missing_columns_text(path, table.column_names, missing)
    first: tuple[int, str, str] | None = None
    for name in CSV_COLUMNS:
        parse = int if name == "timestamp" else float
        for row, value in enumerate(table.column(name).to_pylist(), start=1):
            if first is not None and row >= first[0]:
                break
            if value in (None, ""):
                continue
            try:
                parse(value)
            except ValueError:
                first = (row, name, value)
                break
    if first is None:
        return f"{path}: cannot read as CSV: {exc}"
    row, name, value = first
    kind = "integer ms" if name == "timestamp" else "numeric"
    return f"{path}: non-{kind} value {value!r} in column {name!r} at data row {row} {_ROW_NOTE}"


def float_column(column: pa.ChunkedArray) -> np.ndarray:
    """Return a float64 numpy copy; nulls become NaN so validation reports their rows."""
    if column.type != pa.float64():  # a CSV's are read as float64: no cast, no Arrow compute
        import pyarrow.compute as pc  # (its import alone costs about 50 ms)

        column = pc.cast(column, pa.float64())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def require_columns(path: Path, found: list[str], needed: tuple[str, ...]) -> None:
    """Raise DataError naming the columns of ``needed`` missing from ``found``."""
    missing = [c for c in needed if c not in found]
    if missing:
        raise DataError(missing_columns_text(path, found, missing))


def missing_columns_text(path: Path, found: list[str], missing: list[str]) -> str:
    """Return the message for missing columns, listing the ones found."""
    return f"{path}: missing column(s) {', '.join(missing)}; found columns: {', '.join(found)}"
