"""Funding rates of perpetual futures, read from files, for backtests of perps.

A file holds one symbol's funding events: ``timestamp,funding_rate`` (ms UTC, rate as a
fraction, e.g. 0.0001 = 0.01 %), or Binance's public-data layout
``calc_time,funding_interval_hours,last_funding_rate``, plain or gzip CSV; or Freqtrade's own
``BTC_USDT_USDT-8h-funding_rate.feather`` (``.parquet``, ``.json``): candle columns with the
rate in ``open``. The symbol comes from the file name by the candles' rule
(``core.market.file_names.symbol_of``): ``BTC_USDT-funding.csv.gz`` and Freqtrade's names are
``BTC/USDT``, as its futures candles are. Timestamps in µs or ns are converted to ms (and said
so in ``notes``) by the candles' rule (``core.market.timestamps``). At each funding time a long
position pays ``amount * mark * rate`` to the shorts (negative rates the other way round).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.market.file_names import symbol_of
from core.market.timestamps import MIN_PLAUSIBLE_MS, to_milliseconds

_FREQTRADE_SUFFIXES = (".feather", ".parquet", ".json", ".json.gz")
_LAYOUTS = (("timestamp", "funding_rate"), ("calc_time", "last_funding_rate"))
MAX_ABS_RATE = Decimal("0.05")  # venues cap funding far below 5 % per interval: larger is a typo


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingRates:
    """One symbol's funding events, oldest first, at distinct times."""

    symbol: str
    ts_ms: tuple[int, ...]
    rates: tuple[Decimal, ...]
    notes: tuple[str, ...] = ()  # what reading changed (timestamps converted to ms)

    def between(self, after_ms: int, until_ms: int) -> list[tuple[int, Decimal]]:
        """Return the events with ``after_ms < ts <= until_ms``."""
        lo = bisect_right(self.ts_ms, after_ms)
        hi = bisect_right(self.ts_ms, until_ms)
        return list(zip(self.ts_ms[lo:hi], self.rates[lo:hi], strict=True))

    def rate_at(self, ts_ms: int) -> Decimal | None:
        """Return the rate of the newest funding event at or before ``ts_ms`` (None: none yet)."""
        i = bisect_right(self.ts_ms, ts_ms)
        return self.rates[i - 1] if i else None

    def next_after(self, ts_ms: int) -> int | None:
        """Return the first funding time at or after ``ts_ms`` (None when there is none)."""
        i = bisect_left(self.ts_ms, ts_ms)
        return self.ts_ms[i] if i < len(self.ts_ms) else None


def funding_symbol(path: Path) -> str | None:
    """Return the symbol a funding file's name gives (``BTC_USDT-...csv`` -> ``BTC/USDT``)."""
    return symbol_of(path)


def read_funding_file(path: str | Path, *, symbol: str | None = None) -> FundingRates:
    """Read and check one funding file; DataError names the file, the row and the rule."""
    path = Path(path)
    if path.is_dir():
        raise DataError(
            f"{path} is a folder, not a funding file: name the file in it (e.g. "
            "BTC_USDT-funding.csv.gz)"
        )
    if not path.is_file():
        raise DataError(f"{path}: no such funding file")
    symbol = symbol or funding_symbol(path)
    if symbol is None:
        raise DataError(
            f"{path}: name it BASE_QUOTE-funding.csv(.gz) (e.g. BTC_USDT-funding.csv.gz) so "
            "the symbol can be read from it"
        )
    if path.name.lower().endswith(_FREQTRADE_SUFFIXES):
        rows = _freqtrade_rows(path)
    else:
        rows = _csv_rows(path)
    parsed = [_parse(path, where, raw_ts, raw_rate) for where, raw_ts, raw_rate in rows]
    try:
        raw_ms = np.array([ts for ts, _ in parsed], dtype=np.int64)
    except OverflowError as exc:
        raise DataError(f"{path}: a timestamp is beyond 64-bit integers: {exc}") from exc
    # The candles' unit rule: a file in µs read as ms settled nothing and looked modelled.
    ts_ms, notes = to_milliseconds(raw_ms, str(path), lambda i: _place(rows[i][0]))
    times: list[int] = []
    rates: list[Decimal] = []
    for (where, _, _), ts, (_, rate) in zip(rows, ts_ms.tolist(), parsed, strict=True):
        if not rate.is_finite() or abs(rate) > MAX_ABS_RATE:
            raise DataError(f"{path}:{where}: funding rate {rate} is not within +-{MAX_ABS_RATE}")
        if times and ts <= times[-1]:
            raise DataError(f"{path}:{where}: timestamp {ts} is not after the previous {times[-1]}")
        times.append(ts)
        rates.append(rate)
    if not times:
        raise DataError(f"{path}: no funding rows")
    return FundingRates(symbol=symbol, ts_ms=tuple(times), rates=tuple(rates), notes=tuple(notes))


def _parse(path: Path, where: str, raw_ts: str, raw_rate: str) -> tuple[int, Decimal]:
    try:
        ts, rate = int(raw_ts), Decimal(raw_rate)
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise DataError(
            f"{path}:{where}: not a timestamp and a rate: {raw_ts!r}, {raw_rate!r}"
        ) from exc
    if ts < MIN_PLAUSIBLE_MS:  # in any unit finer than seconds it would be above
        raise DataError(f"{path}:{where}: timestamp {ts} looks like seconds; expected ms UTC")
    return ts, rate


def _place(where: str) -> str:
    """Return ``line 2`` for a CSV's line number, Freqtrade's ``row 1`` as it is."""
    return f"line {where}" if where.isdigit() else where


# (where, timestamp, rate) per row: "line 2" of a CSV, "row 1" of a Freqtrade file.
_Row = tuple[str, str, str]


def _csv_rows(path: Path) -> list[_Row]:
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        text = data.decode("utf-8-sig")  # a spreadsheet export starts with a BOM
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable: {exc}") from exc
    rows = csv.DictReader(io.StringIO(text))
    header = set(rows.fieldnames or ())
    layout = next((cols for cols in _LAYOUTS if set(cols) <= header), None)
    if layout is None:
        raise DataError(
            f"{path}: expected columns timestamp,funding_rate (or Binance's calc_time,"
            f"last_funding_rate), found {','.join(rows.fieldnames or ()) or 'none'}"
        )
    ts_col, rate_col = layout
    return [(str(line), row[ts_col], row[rate_col]) for line, row in enumerate(rows, start=2)]


def _freqtrade_rows(path: Path) -> list[_Row]:
    """Return the rows of a Freqtrade ``funding_rate`` file (the rate is in ``open``)."""
    # Here, not at the top: a backtest without Freqtrade funding files never pays for them.
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.feather as pa_feather
    import pyarrow.parquet as pa_parquet

    try:
        if path.name.lower().endswith((".json", ".json.gz")):
            opener = gzip.open if path.name.lower().endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, list) or not all(
                isinstance(r, list) and len(r) >= 2 for r in data
            ):
                raise DataError(f"{path}: expected a JSON list of [ts, open, ...] rows")
            pairs = [(r[0], r[1]) for r in data]
        else:
            feather = path.name.lower().endswith(".feather")
            read = pa_feather.read_table if feather else pa_parquet.read_table
            table = read(path, columns=["date", "open"])
            date = table.column("date")
            if pa.types.is_timestamp(date.type):
                date = pc.cast(date, pa.timestamp("ms", tz=date.type.tz)).cast(pa.int64())
            pairs = list(zip(date.to_pylist(), table.column("open").to_pylist(), strict=True))
    except (pa.ArrowException, OSError, EOFError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read as a Freqtrade funding-rate file: {exc}") from exc
    # repr: the shortest text of the float, so 0.0001 stays Decimal("0.0001").
    return [(f"row {i}", str(ts), repr(rate)) for i, (ts, rate) in enumerate(pairs, start=1)]
