"""Funding rates of perpetual futures, read from files, for backtests of perps.

A file holds one symbol's funding events: ``timestamp,funding_rate`` (ms UTC, rate as a
fraction, e.g. 0.0001 = 0.01 %), or Binance's public-data layout
``calc_time,funding_interval_hours,last_funding_rate``; plain or gzip CSV. The symbol comes
from the file name, as for candles: ``BTC_USDT-funding.csv.gz`` (Freqtrade-style names such
as ``BTC_USDT_USDT-8h-funding_rate.csv`` work too). At each funding time a long position pays
``amount * mark * rate`` to the shorts (negative rates the other way round).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from core.errors import DataError

_NAME_RE = re.compile(
    r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)(?:_[A-Za-z0-9]+)?-.*\.csv(\.gz)?$"
)
_LAYOUTS = (("timestamp", "funding_rate"), ("calc_time", "last_funding_rate"))
_MIN_PLAUSIBLE_MS = 100_000_000_000  # below this a timestamp is in seconds (see importers)
MAX_ABS_RATE = Decimal("0.05")  # venues cap funding far below 5 % per interval: larger is a typo


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingRates:
    """One symbol's funding events, oldest first, at distinct times."""

    symbol: str
    ts_ms: tuple[int, ...]
    rates: tuple[Decimal, ...]

    def between(self, after_ms: int, until_ms: int) -> list[tuple[int, Decimal]]:
        """Return the events with ``after_ms < ts <= until_ms``."""
        lo = bisect_right(self.ts_ms, after_ms)
        hi = bisect_right(self.ts_ms, until_ms)
        return list(zip(self.ts_ms[lo:hi], self.rates[lo:hi], strict=True))

    def next_after(self, ts_ms: int) -> int | None:
        """Return the first funding time at or after ``ts_ms`` (None when there is none)."""
        i = bisect_left(self.ts_ms, ts_ms)
        return self.ts_ms[i] if i < len(self.ts_ms) else None


def funding_symbol(path: Path) -> str | None:
    """Return the symbol a funding file's name gives (``BTC_USDT-...csv`` -> ``BTC/USDT``)."""
    match = _NAME_RE.match(path.name)
    return f"{match['base'].upper()}/{match['quote'].upper()}" if match else None


def read_funding_file(path: str | Path, *, symbol: str | None = None) -> FundingRates:
    """Read and check one funding file; DataError names the file, the row and the rule."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such funding file")
    symbol = symbol or funding_symbol(path)
    if symbol is None:
        raise DataError(
            f"{path}: name it BASE_QUOTE-funding.csv(.gz) (e.g. BTC_USDT-funding.csv.gz) so "
            "the symbol can be read from it"
        )
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
    times: list[int] = []
    rates: list[Decimal] = []
    for line, row in enumerate(rows, start=2):
        try:
            ts = int(row[ts_col])
            rate = Decimal(row[rate_col])
        except (TypeError, ValueError, InvalidOperation) as exc:
            raise DataError(f"{path}:{line}: not a timestamp and a rate: {row}") from exc
        if ts < _MIN_PLAUSIBLE_MS:
            raise DataError(f"{path}:{line}: timestamp {ts} looks like seconds; expected ms UTC")
        if not rate.is_finite() or abs(rate) > MAX_ABS_RATE:
            raise DataError(f"{path}:{line}: funding rate {rate} is not within +-{MAX_ABS_RATE}")
        if times and ts <= times[-1]:
            raise DataError(f"{path}:{line}: timestamp {ts} is not after the previous {times[-1]}")
        times.append(ts)
        rates.append(rate)
    if not times:
        raise DataError(f"{path}: no funding rows")
    return FundingRates(symbol=symbol, ts_ms=tuple(times), rates=tuple(rates))
