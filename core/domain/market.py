"""Market data values: timeframes and columnar candle series (numpy float64)."""

from __future__ import annotations

import builtins
import re
from datetime import UTC, datetime
from typing import Self

import numpy as np
import numpy.typing as npt

from core.values import value_class

_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TF_RE = re.compile(r"^(\d+)([mhdw])$")
# Venues (Binance, and ccxt after them) open weekly candles on Monday 00:00 UTC. The Unix epoch
# was a Thursday, so weeks are counted from the first Monday after it, 1970-01-05.
_WEEK_ORIGIN_MS = 4 * _UNIT_MS["d"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def timeframe_to_ms(timeframe: str) -> int:
    """Return the length of a ccxt-style timeframe (``5m``, ``1h``, ``1d``, ``1w``) in ms."""
    match = _TF_RE.match(timeframe)
    if not match or int(match.group(1)) <= 0:
        if re.fullmatch(r"\d+M", timeframe):
            raise ValueError(
                f"monthly candles ({timeframe}) are not supported: a month has no fixed length, "
                "and every candle here has one; use 1w or 1d"
            )
        raise ValueError(
            f"unknown timeframe {timeframe!r}; expected e.g. 1m, 5m, 15m, 1h, 4h, 1d, 1w"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def fmt_ts(ts_ms: int | None) -> str:
    """Format epoch ms as "YYYY-MM-DD HH:MM" UTC ("-" for none)."""
    if ts_ms is None:
        return "-"
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def grid_origin_ms(timeframe: str) -> int:
    """Return the open time a timeframe's grid counts from, as the venues lay candles out.

    Every candle opens a whole number of timeframes after it: Monday 1970-01-05 for weeks,
    the epoch for everything else (so days open at 00:00 UTC, hours on the hour).
    """
    return _WEEK_ORIGIN_MS if timeframe.endswith("w") else 0


def grid_floor_ms(ts_ms: int, timeframe: str) -> int:
    """Return the open time of the grid candle that contains ``ts_ms``."""
    tf_ms = timeframe_to_ms(timeframe)
    return ts_ms - (ts_ms - grid_origin_ms(timeframe)) % tf_ms


def grid_ceil_ms(ts_ms: int, timeframe: str) -> int:
    """Return the first grid open time at or after ``ts_ms``."""
    return grid_floor_ms(ts_ms + timeframe_to_ms(timeframe) - 1, timeframe)


@value_class(frozen=True, slots=True, kw_only=True)
class Candle:
    """One OHLCV candle; ``ts_ms`` is the candle's open time (UTC ms)."""

    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@value_class(frozen=True, slots=True, kw_only=True)
class CandleSeries:
    """Columnar candles of one symbol and timeframe, sorted by open time.

    Columns are numpy arrays of equal length so that features, backtests and validation stay
    vectorised. Treat the arrays as read-only.
    """

    symbol: str
    timeframe: str
    ts_ms: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        n = len(self.ts_ms)
        for name in ("open", "high", "low", "close", "volume"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"column {name} has {len(getattr(self, name))} rows, ts_ms has {n}"
                )

    def __len__(self) -> int:
        return len(self.ts_ms)

    @classmethod
    def from_columns(
        cls,
        symbol: str,
        timeframe: str,
        ts_ms: npt.ArrayLike,
        open: npt.ArrayLike,
        high: npt.ArrayLike,
        low: npt.ArrayLike,
        close: npt.ArrayLike,
        volume: npt.ArrayLike,
    ) -> Self:
        """Build a series from array-likes, converting to int64 / float64."""
        return cls(
            symbol=symbol,
            timeframe=timeframe,
            ts_ms=np.asarray(ts_ms, dtype=np.int64),
            open=np.asarray(open, dtype=np.float64),
            high=np.asarray(high, dtype=np.float64),
            low=np.asarray(low, dtype=np.float64),
            close=np.asarray(close, dtype=np.float64),
            volume=np.asarray(volume, dtype=np.float64),
        )

    @classmethod
    def empty(cls, symbol: str, timeframe: str) -> Self:
        """Return a series with no rows."""
        return cls.from_columns(symbol, timeframe, [], [], [], [], [], [])

    def grew_from(self, old: CandleSeries) -> bool:
        """Return whether this series is ``old`` with candles appended (same first candle on,
        every candle of ``old`` unchanged): what a causal computation of ``old`` still holds."""
        n = len(old)
        if not n or len(self) < n or self.timeframe != old.timeframe:
            return False
        return all(
            np.array_equal(getattr(self, col)[:n], getattr(old, col))
            for col in ("ts_ms", "open", "high", "low", "close", "volume")
        )

    def scaled(self, factor: float) -> CandleSeries:
        """Return the same candles with every price times ``factor`` (volumes as they are)."""
        return CandleSeries.from_columns(
            self.symbol,
            self.timeframe,
            self.ts_ms,
            self.open * factor,
            self.high * factor,
            self.low * factor,
            self.close * factor,
            self.volume,
        )

    def slice(self, start: int, stop: int | None = None) -> CandleSeries:
        """Return rows ``[start:stop]`` as a new series (views, no copy)."""
        return self.take(slice(start, stop))

    def between(self, start_ms: int | None = None, end_ms: int | None = None) -> CandleSeries:
        """Return candles with ``start_ms <= ts_ms < end_ms`` (either bound optional)."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.ts_ms, start_ms, "left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.ts_ms, end_ms, "left"))
        return self.slice(lo, hi)

    def candle(self, i: int) -> Candle:
        """Return row ``i`` as a Candle."""
        return Candle(
            ts_ms=int(self.ts_ms[i]),
            open=float(self.open[i]),
            high=float(self.high[i]),
            low=float(self.low[i]),
            close=float(self.close[i]),
            volume=float(self.volume[i]),
        )

    def mask(self, keep: npt.NDArray[np.bool_]) -> CandleSeries:
        """Return only the rows where ``keep`` is True."""
        return self.take(keep)

    def take(
        self, rows: builtins.slice | npt.NDArray[np.bool_] | npt.NDArray[np.int64]
    ) -> CandleSeries:
        """Return the rows ``rows`` selects (a slice, a boolean mask or row numbers)."""
        return CandleSeries(
            symbol=self.symbol,
            timeframe=self.timeframe,
            ts_ms=self.ts_ms[rows],
            open=self.open[rows],
            high=self.high[rows],
            low=self.low[rows],
            close=self.close[rows],
            volume=self.volume[rows],
        )


def concat_series(parts: list[CandleSeries]) -> CandleSeries:
    """Concatenate series of one symbol/timeframe in the given order."""
    if not parts:
        raise ValueError("concat_series needs at least one series")
    first = parts[0]
    return CandleSeries(
        symbol=first.symbol,
        timeframe=first.timeframe,
        ts_ms=np.concatenate([p.ts_ms for p in parts]),
        open=np.concatenate([p.open for p in parts]),
        high=np.concatenate([p.high for p in parts]),
        low=np.concatenate([p.low for p in parts]),
        close=np.concatenate([p.close for p in parts]),
        volume=np.concatenate([p.volume for p in parts]),
    )
