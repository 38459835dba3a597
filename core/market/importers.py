"""Read candle files: our CSV (optionally gzipped) and Freqtrade's json / feather / parquet.

* CSV: header ``timestamp,open,high,low,close,volume``; ``timestamp`` is the open time in ms UTC.
* Freqtrade ``.json`` / ``.json.gz``: a list of ``[ts_ms, open, high, low, close, volume]`` rows.
* Freqtrade ``.feather`` / ``.parquet``: columns ``date`` (datetime, UTC), open ... volume.

Symbol, timeframe and market kind come from the arguments or, failing that, from Freqtrade-style
file names (``BTC_USDT-1h.csv.gz`` is spot, ``BTC_USDT_USDT-1h-futures.feather`` perp and
``-mark`` mark-price candles, all of ``BTC/USDT``; see ``core.market.file_names``). Every load
is validated; with ``repair=True`` invalid rows are dropped and counted instead of rejected, and
with ``sort=True`` rows are put in time order first (messages still name the file's rows).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.domain.enums import CandleMarket
from core.domain.market import CandleSeries, timeframe_to_ms
from core.errors import DataError
from core.market.candle_cache import CandleCache, ParsedCandles, SourceStamp
from core.market.candle_columns import CSV_COLUMNS, PRICE_COLUMNS
from core.market.file_names import candle_market, parse_file_name
from core.market.ordering import sort_by_time
from core.market.timestamps import to_milliseconds
from core.market.validation import ValidationReport, repair_candles, validate_candles


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedCandles:
    """A validated series, the market it is of and the report of its validation."""

    series: CandleSeries
    market: CandleMarket
    report: ValidationReport


def traded_market_note(
    path: Path, found: CandleMarket, traded: CandleMarket, user: str
) -> str | None:
    """Refuse mark-price candles for trading on; return a note when a file is of another
    market than the traded one (``user`` says who trades: "the backtest", "the demo").

    A mark price has no trades and no volume: replaying it would trade on a price nobody dealt
    at. Spot candles for a perp (or the reverse) are close enough to be useful, but not the
    same prices, so they are allowed with a word.
    """
    if found is CandleMarket.MARK:
        raise DataError(
            f"{path} holds mark-price candles (no trades, no volume): use the contract's own "
            "candles (-futures) instead"
        )
    if found is not traded:
        return f"{path} holds {found} candles; {user} trades {traded} (QT__EXCHANGE__MARKET_TYPE)"
    return None


def infer_symbol_timeframe(path: Path) -> tuple[str, str] | None:
    """Return (symbol, timeframe) from a Freqtrade-style file name, or None."""
    name = parse_file_name(path)
    return None if name is None else (name.symbol, name.timeframe)


def read_candle_file(
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    market: CandleMarket | None = None,
    repair: bool = False,
    sort: bool = False,
    now_ms: int | None = None,
    cache: CandleCache | None = None,
) -> LoadedCandles:
    """Read, validate and return the candles of one file.

    ``market`` overrides the market kind the name and folder give (``file_names``). ``now_ms``
    (the wall clock, which the core does not read) refuses candles that close after it;
    ``sort`` orders the rows by time before they are checked. ``cache`` keeps the parse of the
    file for the next load (not with ``repair``; the candles are validated either way, see
    ``core.market.candle_cache``). Raise DataError when the file is
    unreadable, malformed or holds no candle, or when symbol/timeframe are neither given nor
    inferable from the name; CandleValidationError when rows break a rule (unless ``repair``).
    """
    path = Path(path)
    _check_is_file(path)
    symbol, timeframe = _resolve_names(path, symbol, timeframe)
    named_market = candle_market(path)  # refuses funding-rate and index files
    market = named_market if market is None else CandleMarket(market)
    parsed = _read_rows(path, repair=repair, cache=None if repair else cache)
    ts, cols, notes = parsed.ts, parsed.cols, list(parsed.notes)
    series = CandleSeries.from_columns(symbol, timeframe, ts, *(cols[c] for c in PRICE_COLUMNS))
    file_rows = None
    if sort:
        series, file_rows = sort_by_time(series)
        moved = int(np.count_nonzero(file_rows != np.arange(len(file_rows))))
        if moved:
            notes.append(f"sorted by time: {moved} rows changed place")
    if not len(series):
        raise DataError(f"{path}: no candles in the file (no rows, at most a header)")
    if repair:
        series, report = repair_candles(series, source=str(path), now_ms=now_ms)
        if not len(series):
            raise DataError(f"{path}: no candles left once --repair dropped the invalid rows")
    else:
        report = validate_candles(series, source=str(path), now_ms=now_ms, file_rows=file_rows)
    return LoadedCandles(series=series, market=market, report=replace(report, notes=tuple(notes)))


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        raise DataError(
            f"{path} is a folder, not a candle file: name the files in it (e.g. BTC_USDT-1h.csv.gz)"
        )
    if not path.is_file():
        raise DataError(f"{path}: no such candle file")


def _read_rows(path: Path, *, repair: bool, cache: CandleCache | None) -> ParsedCandles:
    """Return the file's timestamps (ms), price columns and notes on what was converted:
    from ``cache`` when it holds this content's parse, else parsed (and kept there)."""
    name = path.name.lower()
    if not name.endswith((".csv", ".csv.gz", ".json", ".json.gz", ".feather", ".parquet")):
        raise DataError(
            f"{path}: unknown candle file type; expected .csv, .csv.gz, .json, .json.gz, "
            ".feather or .parquet"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")  # each reader would say it its own way
    cached = None if cache is None else cache.load(path)
    if cached is not None:
        return cached
    stamp = SourceStamp.of(path)
    notes: list[str] = []
    if name.endswith((".csv", ".csv.gz")):
        from core.market.candle_csv import read_candle_csv  # Arrow: only when parsing

        ts, cols, notes = read_candle_csv(path, repair=repair)
    elif name.endswith((".json", ".json.gz")):
        ts, cols = _read_json(path)
    else:
        ts, cols = _read_arrow(path)
    ts, converted = to_milliseconds(
        np.asarray(ts, dtype=np.int64),
        str(path),
        lambda row: f"data row {row + 1} (1-based, header not counted)",
    )
    parsed = ParsedCandles(ts=ts, cols=cols, notes=[*notes, *converted])
    if cache is not None:
        cache.store(path, stamp, parsed)
    return parsed


def _resolve_names(path: Path, symbol: str | None, timeframe: str | None) -> tuple[str, str]:
    inferred = infer_symbol_timeframe(path)
    symbol = symbol or (inferred[0] if inferred else None)
    timeframe = timeframe or (inferred[1] if inferred else None)
    if symbol is not None and "/" not in symbol:
        raise DataError(f"{path}: the symbol must be BASE/QUOTE like BTC/USDT, received {symbol!r}")
    if symbol is None or timeframe is None:
        missing = " and ".join(
            n for n, v in (("symbol", symbol), ("timeframe", timeframe)) if v is None
        )
        raise DataError(
            f"{path}: give the {missing}; the file name does not follow the "
            "BASE_QUOTE-timeframe pattern (e.g. BTC_USDT-1h.csv.gz) they could be read from"
        )
    try:
        timeframe_to_ms(timeframe)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from exc
    return symbol, timeframe


# --- Freqtrade json -----------------------------------------------------------------------------


def _read_json(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                data: Any = json.load(fh)
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read as JSON: {exc}") from exc
    if not isinstance(data, list):
        raise DataError(
            f"{path}: expected a JSON list of [ts, open, high, low, close, volume] rows, "
            f"found {type(data).__name__}"
        )
    for row, item in enumerate(data, start=1):
        if not isinstance(item, list) or len(item) != 6:
            raise DataError(
                f"{path}: row {row} (1-based) should be [ts, open, high, low, close, volume], "
                f"was {item!r}"
            )
        for col, value in zip(CSV_COLUMNS, item, strict=True):
            # bool is an int in Python; a true/false candle value is never meant.
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise DataError(
                    f"{path}: non-numeric value {value!r} in column {col!r} at row {row} (1-based)"
                )
            if value is None and col == "timestamp":
                raise DataError(f"{path}: null timestamp at row {row} (1-based)")
    arr = np.array(data, dtype=np.float64).reshape(-1, 6)  # None becomes NaN
    # Read from the parsed ints, not the float64 array: a float has 53 bits, too few for ns.
    for row, item in enumerate(data, start=1):
        if isinstance(item[0], float) and not item[0].is_integer():
            raise DataError(f"{path}: timestamp {item[0]!r} at row {row} is not integer ms")
    try:
        ts = np.array([int(item[0]) for item in data], dtype=np.int64)
    except OverflowError as exc:
        raise DataError(f"{path}: a timestamp is beyond 64-bit integers: {exc}") from exc
    return ts, {c: arr[:, i + 1] for i, c in enumerate(PRICE_COLUMNS)}


# --- Freqtrade feather / parquet ----------------------------------------------------------------


def _read_arrow(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    # Arrow's file formats are imported by the files that need them (~40 ms a CSV never pays).
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.feather as pa_feather
    import pyarrow.parquet as pa_parquet

    from core.market.candle_csv import float_column, require_columns

    try:
        if path.name.lower().endswith(".feather"):
            table = pa_feather.read_table(path)
        else:
            table = pa_parquet.read_table(path)
    except pa.ArrowCancelled:
        raise  # a stop signal, not a bad file (see core.market.candle_csv)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read as {path.suffix[1:]}: {exc}") from exc
    require_columns(path, table.column_names, ("date", *PRICE_COLUMNS))
    date = table.column("date")
    if date.null_count:
        row = int(np.argmax(date.is_null().to_numpy(zero_copy_only=False))) + 1
        raise DataError(f"{path}: empty date at row {row} (1-based)")
    if pa.types.is_timestamp(date.type):
        # Arrow refuses a lossy cast, so sub-ms dates are reported instead of truncated.
        try:
            ts = pc.cast(date, pa.timestamp("ms", tz=date.type.tz)).cast(pa.int64()).to_numpy()
        except pa.ArrowInvalid as exc:
            raise DataError(f"{path}: date column has sub-millisecond values: {exc}") from exc
    elif pa.types.is_integer(date.type):
        ts = date.to_numpy()
    else:
        raise DataError(f"{path}: column 'date' should hold datetimes, was {date.type}")
    cols = {}
    for name in PRICE_COLUMNS:
        column = table.column(name)
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            raise DataError(f"{path}: column {name!r} should be numeric, was {column.type}")
        cols[name] = float_column(column)
    return np.asarray(ts, dtype=np.int64), cols
