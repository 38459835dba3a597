"""Candle validation: reject (or drop, when repairing) rows that break a rule; report gaps.

Rules, checked vectorised over the whole series:

* ``nan``: a price or the volume is NaN;
* ``infinite``: a price or the volume is +-inf (CSV ``inf``, JSON ``Infinity``);
* ``non_positive_price``: open, high, low or close is <= 0;
* ``high_below_open_close``: high < max(open, close);
* ``low_above_open_close``: low > min(open, close);
* ``negative_volume``: volume < 0;
* ``off_grid``: the open time is not on the timeframe's grid (a whole number of timeframes
  after ``grid_origin_ms``: the epoch, or for weeks Monday 1970-01-05, as the venues do);
* ``future``: the candle closes after ``now_ms`` (a mistyped date, or a candle still forming);
  checked when the caller says what time it is (the core reads no clock);
* ``duplicate``: the open time equals that of a row kept before it;
* ``not_increasing``: the row is out of time order; the fewest such rows are flagged (see
  ``core.market.ordering``), so one mistyped date costs one row, not the rest of the file.

The per-row rules are checked first; the ordering rules then look only at rows that passed them,
so repairing never keeps a bad duplicate in place of a good one. Missing candles on the grid
(gaps) are reported as segments, never filled. Row numbers in messages are the file's: a caller
that sorted the rows first passes each row's place before sorting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from core.domain.market import CandleSeries, grid_origin_ms, timeframe_to_ms
from core.errors import CandleValidationError, DataError
from core.market.ordering import order_masks

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


class Rule(StrEnum):
    """A candle validation rule; the value is the name used in messages and reports."""

    NAN = "nan"
    INFINITE = "infinite"
    NON_POSITIVE_PRICE = "non_positive_price"
    HIGH_BELOW_OPEN_CLOSE = "high_below_open_close"
    LOW_ABOVE_OPEN_CLOSE = "low_above_open_close"
    NEGATIVE_VOLUME = "negative_volume"
    OFF_GRID = "off_grid"
    FUTURE = "future"
    DUPLICATE = "duplicate"
    NOT_INCREASING = "not_increasing"


_RULE_TEXT = {
    Rule.NAN: "a price or the volume is NaN",
    Rule.INFINITE: "a price or the volume is infinite",
    Rule.NON_POSITIVE_PRICE: "a price is <= 0",
    Rule.HIGH_BELOW_OPEN_CLOSE: "high is below max(open, close)",
    Rule.LOW_ABOVE_OPEN_CLOSE: "low is above min(open, close)",
    Rule.NEGATIVE_VOLUME: "volume is negative",
    Rule.OFF_GRID: (
        "timestamp is not on the timeframe grid (a whole number of timeframes since the epoch; "
        "weeks open on Monday 00:00 UTC)"
    ),
    Rule.FUTURE: "the candle closes after now (a date in the future, or a candle still forming)",
    Rule.DUPLICATE: "timestamp repeats an earlier row's",
    Rule.NOT_INCREASING: (
        "timestamp is out of time order (the fewest rows whose removal leaves the rest "
        "strictly increasing)"
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap:
    """Missing candles between two present ones.

    ``from_ms`` is the open time of the last candle before the gap, ``to_ms`` the open time of
    the first candle after it, ``missing`` how many grid candles lie strictly between them.
    """

    from_ms: int
    to_ms: int
    missing: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    """What validation found in one source. ``dropped`` maps rule name to rows breaking it."""

    source: str
    symbol: str
    timeframe: str
    rows: int  # rows kept
    first_ts_ms: int | None
    last_ts_ms: int | None
    gaps: tuple[Gap, ...]
    dropped: tuple[tuple[str, int], ...] = ()  # (rule, count); a row may break several rules
    dropped_rows: int = 0  # distinct rows dropped
    notes: tuple[str, ...] = ()  # what loading changed besides dropping rows (sorted, converted)

    @property
    def missing(self) -> int:
        """Return the number of missing candles over all gaps."""
        return sum(g.missing for g in self.gaps)

    @property
    def largest_gap(self) -> Gap | None:
        """Return the gap with the most missing candles, or None."""
        return max(self.gaps, key=lambda g: g.missing, default=None)

    def summary_lines(self) -> list[str]:
        """Return human-readable lines for the CLI."""
        span = "empty"
        if self.first_ts_ms is not None and self.last_ts_ms is not None:
            span = f"{iso_ms(self.first_ts_ms)} -> {iso_ms(self.last_ts_ms)}"
        lines = [
            f"{self.source}: {self.symbol} {self.timeframe}, {self.rows} rows, {span}",
            f"gaps: {len(self.gaps)} segments, {self.missing} missing candles",
        ]
        largest = self.largest_gap
        if largest is not None:
            lines.append(
                f"largest gap: {largest.missing} missing "
                f"({iso_ms(largest.from_ms)} -> {iso_ms(largest.to_ms)})"
            )
        if self.dropped_rows:
            detail = ", ".join(f"{rule}={n}" for rule, n in self.dropped)
            lines.append(f"dropped: {self.dropped_rows} invalid rows ({detail})")
        lines.extend(self.notes)
        return lines


def iso_ms(ts_ms: int) -> str:
    """Format epoch ms as an ISO-8601 UTC timestamp (``2024-01-01T00:00:00Z``)."""
    try:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "out of the datetime range"


def validate_candles(
    series: CandleSeries,
    *,
    source: str,
    now_ms: int | None = None,
    file_rows: IntArray | None = None,
    remedy: str | None = None,
) -> ValidationReport:
    """Check every rule; raise CandleValidationError naming source, row and rule on bad rows.

    ``now_ms`` enables the ``future`` rule; ``file_rows`` gives each row's 0-based place in the
    file when the rows were reordered (``core.market.ordering.sort_by_time``); ``remedy``
    replaces the closing line of the error, which tells how to fix a file.
    """
    tf_ms = _timeframe_ms(series, source)
    bad = _rule_masks(series, tf_ms, now_ms)
    if any(mask.any() for mask in bad.values()):
        raise CandleValidationError(_describe(series, source, bad, file_rows, remedy))
    return _report(series, source, tf_ms, bad)


def repair_candles(
    series: CandleSeries,
    *,
    source: str,
    now_ms: int | None = None,
) -> tuple[CandleSeries, ValidationReport]:
    """Drop rows that break a rule; return the kept rows and a report counting drops per rule.

    ``now_ms`` enables the ``future`` rule.
    """
    tf_ms = _timeframe_ms(series, source)
    bad = _rule_masks(series, tf_ms, now_ms)
    any_bad = np.zeros(len(series), dtype=bool)
    for mask in bad.values():
        any_bad |= mask
    kept = series.mask(~any_bad) if any_bad.any() else series
    return kept, _report(kept, source, tf_ms, bad, dropped_rows=int(any_bad.sum()))


def find_gaps(ts_ms: npt.NDArray[np.int64], tf_ms: int) -> tuple[Gap, ...]:
    """Return gap segments of sorted, on-grid open times."""
    if len(ts_ms) < 2:
        return ()
    step = np.diff(ts_ms)
    where = np.nonzero(step > tf_ms)[0]
    return tuple(
        Gap(
            from_ms=int(ts_ms[i]),
            to_ms=int(ts_ms[i + 1]),
            missing=int(step[i] // tf_ms) - 1,
        )
        for i in where
    )


def _timeframe_ms(series: CandleSeries, source: str) -> int:
    try:
        return timeframe_to_ms(series.timeframe)
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from exc


def _rule_masks(series: CandleSeries, tf_ms: int, now_ms: int | None) -> dict[Rule, BoolArray]:
    o, h, lo, c, v = series.open, series.high, series.low, series.close, series.volume
    nan = np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(c) | np.isnan(v)
    inf = np.isinf(o) | np.isinf(h) | np.isinf(lo) | np.isinf(c) | np.isinf(v)
    # A row with a NaN or an infinity is reported under that rule only: inf is "above" every
    # high and NaN compares False, so the price rules would say nothing true about it.
    finite = ~(nan | inf)
    with np.errstate(invalid="ignore"):
        masks = {
            Rule.NAN: nan,
            Rule.INFINITE: inf & ~nan,
            Rule.NON_POSITIVE_PRICE: finite & ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)),
            Rule.HIGH_BELOW_OPEN_CLOSE: finite & (h < np.maximum(o, c)),
            Rule.LOW_ABOVE_OPEN_CLOSE: finite & (lo > np.minimum(o, c)),
            Rule.NEGATIVE_VOLUME: finite & (v < 0),
            Rule.OFF_GRID: (series.ts_ms - grid_origin_ms(series.timeframe)) % tf_ms != 0,
        }
    if now_ms is not None:
        # Compared with the open time (not open + timeframe): no overflow near the int64 limit.
        masks[Rule.FUTURE] = series.ts_ms > now_ms - tf_ms
    row_bad = np.zeros(len(series), dtype=bool)
    for mask in masks.values():
        row_bad |= mask
    masks[Rule.DUPLICATE], masks[Rule.NOT_INCREASING] = order_masks(series.ts_ms, row_bad)
    return masks


def _report(
    kept: CandleSeries,
    source: str,
    tf_ms: int,
    bad: dict[Rule, BoolArray],
    *,
    dropped_rows: int = 0,
) -> ValidationReport:
    n = len(kept)
    return ValidationReport(
        source=source,
        symbol=kept.symbol,
        timeframe=kept.timeframe,
        rows=n,
        first_ts_ms=int(kept.ts_ms[0]) if n else None,
        last_ts_ms=int(kept.ts_ms[-1]) if n else None,
        gaps=find_gaps(kept.ts_ms, tf_ms),
        dropped=tuple((str(rule), int(m.sum())) for rule, m in bad.items() if m.any()),
        dropped_rows=dropped_rows,
    )


def _describe(
    series: CandleSeries,
    source: str,
    bad: dict[Rule, BoolArray],
    file_rows: IntArray | None,
    remedy: str | None,
) -> str:
    broken = {rule: mask for rule, mask in bad.items() if mask.any()}
    any_bad = np.zeros(len(series), dtype=bool)
    for mask in broken.values():
        any_bad |= mask
    rows = np.arange(len(series), dtype=np.int64) if file_rows is None else file_rows
    lines = [
        f"{source}: {int(any_bad.sum())} of {len(series)} candle rows are invalid "
        f"(row numbers are 1-based data rows, the header line not counted)."
    ]
    for rule, mask in broken.items():
        flagged = np.nonzero(mask)[0]
        first = int(flagged[np.argmin(rows[flagged])])  # the first in the file
        lines.append(
            f"  {rule} ({_RULE_TEXT[rule]}): {int(mask.sum())} rows; first at row "
            f"{int(rows[first]) + 1}, {_row_text(series, first)}"
        )
    unsorted = Rule.NOT_INCREASING in broken
    lines.append(
        remedy
        or "Fix the file, or load it with repair to drop the invalid rows and count them"
        + (" (or sorted, if its rows are only out of order)." if unsorted else ".")
    )
    return "\n".join(lines)


def _row_text(series: CandleSeries, i: int) -> str:
    ts = int(series.ts_ms[i])
    return (
        f"timestamp {ts} ({iso_ms(ts)}): open={float(series.open[i])!r} "
        f"high={float(series.high[i])!r} low={float(series.low[i])!r} "
        f"close={float(series.close[i])!r} volume={float(series.volume[i])!r}"
    )
