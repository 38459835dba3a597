"""Candle validation: each rule rejected with a clear message; repair drops and counts; gaps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.market import CandleSeries
from core.errors import CandleValidationError, DataError
from core.market.ordering import order_masks, sort_by_time
from core.market.validation import Gap, repair_candles, validate_candles

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def make(n: int = 6, **overrides: object) -> CandleSeries:
    """Return ``n`` valid hourly candles, with column overrides given as {row: value} maps."""
    cols = {
        "ts_ms": T0 + np.arange(n, dtype=np.int64) * H,
        "open": np.full(n, 100.0),
        "high": np.full(n, 110.0),
        "low": np.full(n, 90.0),
        "close": np.full(n, 105.0),
        "volume": np.full(n, 5.0),
    }
    for name, changes in overrides.items():
        for row, value in changes.items():  # type: ignore[attr-defined]
            cols[name][row] = value
    return CandleSeries.from_columns("BTC/USDT", "1h", *cols.values())


def test_valid_series_reports_rows_span_and_no_gaps() -> None:
    report = validate_candles(make(), source="ok.csv")
    assert report.rows == 6
    assert report.first_ts_ms == T0
    assert report.last_ts_ms == T0 + 5 * H
    assert report.gaps == ()
    assert report.dropped == ()
    assert report.summary_lines()[0] == (
        "ok.csv: BTC/USDT 1h, 6 rows, 2024-01-01T00:00:00Z -> 2024-01-01T05:00:00Z"
    )


@pytest.mark.parametrize(
    ("overrides", "rule", "row"),
    [
        ({"close": {2: np.nan}}, "nan", 3),
        ({"volume": {4: np.nan}}, "nan", 5),
        ({"close": {2: np.inf}}, "infinite", 3),
        ({"high": {1: np.inf}}, "infinite", 2),
        ({"volume": {4: -np.inf}}, "infinite", 5),
        ({"low": {1: 0.0}}, "non_positive_price", 2),
        ({"open": {3: -1.0}, "low": {3: -2.0}}, "non_positive_price", 4),
        ({"high": {2: 104.0}}, "high_below_open_close", 3),
        ({"low": {5: 101.0}}, "low_above_open_close", 6),
        ({"volume": {0: -0.5}}, "negative_volume", 1),
        ({"ts_ms": {3: T0 + 3 * H + 1}}, "off_grid", 4),
        ({"ts_ms": {3: T0 + 2 * H}}, "duplicate", 4),
        ({"ts_ms": {3: T0}}, "duplicate", 4),  # repeats row 1's, not only the previous row's
        ({"ts_ms": {3: T0 - H}}, "not_increasing", 4),
    ],
)
def test_each_rule_is_rejected_naming_source_row_timestamp_and_rule(
    overrides: dict[str, dict[int, float]], rule: str, row: int
) -> None:
    series = make(**overrides)
    with pytest.raises(CandleValidationError) as info:
        validate_candles(series, source="data/BTC_USDT-1h.csv")
    msg = str(info.value)
    assert msg.startswith("data/BTC_USDT-1h.csv: 1 of 6 candle rows are invalid")
    assert "1-based data rows, the header line not counted" in msg
    ts = int(series.ts_ms[row - 1])
    assert f"{rule} (" in msg
    assert f"1 rows; first at row {row}, timestamp {ts} (" in msg


def test_message_counts_rows_per_rule() -> None:
    series = make(10, high={1: 1.0, 7: 1.0}, volume={4: -1.0})
    with pytest.raises(CandleValidationError) as info:
        validate_candles(series, source="f.csv")
    msg = str(info.value)
    assert "3 of 10 candle rows are invalid" in msg
    assert "high_below_open_close (high is below max(open, close)): 2 rows; first at row 2" in msg
    assert "negative_volume (volume is negative): 1 rows; first at row 5" in msg


def test_repair_drops_bad_rows_and_counts_per_rule() -> None:
    series = make(10, close={1: np.nan}, high={3: 1.0}, ts_ms={6: T0 + 5 * H})
    kept, report = repair_candles(series, source="f.csv")
    assert len(kept) == 7
    assert report.rows == 7
    assert report.dropped_rows == 3
    assert dict(report.dropped) == {"nan": 1, "high_below_open_close": 1, "duplicate": 1}
    # The duplicate row 7 is dropped; the first copy (row 6) stays.
    assert kept.ts_ms.tolist() == [T0 + i * H for i in (0, 2, 4, 5, 7, 8, 9)]
    assert "dropped: 3 invalid rows" in "\n".join(report.summary_lines())
    validate_candles(kept, source="f.csv")  # the repaired series is valid


def test_repair_keeps_a_good_row_behind_a_bad_row_of_the_same_timestamp() -> None:
    # Row 2 is NaN; row 3 repeats its timestamp with good values: the good one is kept.
    series = make(4, close={1: np.nan}, ts_ms={2: T0 + H, 3: T0 + 2 * H})
    kept, report = repair_candles(series, source="f.csv")
    assert kept.ts_ms.tolist() == [T0, T0 + H, T0 + 2 * H]
    assert dict(report.dropped) == {"nan": 1}


def test_repair_drops_infinite_rows_counting_them_once() -> None:
    # inf > every high and breaks the price rules too; it is counted under its own rule only.
    series = make(6, open={1: np.inf}, volume={3: np.inf}, low={4: -np.inf})
    kept, report = repair_candles(series, source="f.csv")
    assert kept.ts_ms.tolist() == [T0 + i * H for i in (0, 2, 5)]
    assert dict(report.dropped) == {"infinite": 3}


def test_gaps_are_reported_as_segments_never_filled() -> None:
    hours = [0, 1, 2, 5, 6, 10]
    ts = T0 + np.array(hours, dtype=np.int64) * H
    n = len(hours)
    series = CandleSeries.from_columns(
        "BTC/USDT", "1h", ts, [100.0] * n, [101.0] * n, [99.0] * n, [100.0] * n, [1.0] * n
    )
    report = validate_candles(series, source="g.csv")
    assert report.rows == n  # nothing added
    assert report.gaps == (
        Gap(from_ms=T0 + 2 * H, to_ms=T0 + 5 * H, missing=2),
        Gap(from_ms=T0 + 6 * H, to_ms=T0 + 10 * H, missing=3),
    )
    assert report.missing == 5
    assert report.largest_gap == report.gaps[1]
    lines = report.summary_lines()
    assert "gaps: 2 segments, 5 missing candles" in lines
    assert "largest gap: 3 missing (2024-01-01T06:00:00Z -> 2024-01-01T10:00:00Z)" in lines


def test_empty_series_is_valid() -> None:
    report = validate_candles(CandleSeries.empty("X/Y", "5m"), source="e.csv")
    assert (report.rows, report.first_ts_ms, report.gaps) == (0, None, ())
    assert "empty" in report.summary_lines()[0]


def test_unknown_timeframe_is_a_data_error_naming_the_source() -> None:
    series = CandleSeries.from_columns("X/Y", "7x", [T0], [1.0], [1.0], [1.0], [1.0], [1.0])
    with pytest.raises(DataError, match=r"^e\.csv: unknown timeframe '7x'"):
        validate_candles(series, source="e.csv")


W = 7 * 24 * H


def weekly(first_ms: int, n: int = 5) -> CandleSeries:
    """Return ``n`` valid weekly candles opening ``first_ms`` + k weeks."""
    ts = first_ms + np.arange(n, dtype=np.int64) * W
    ones = np.full(n, 100.0)
    return CandleSeries.from_columns("BTC/USDT", "1w", ts, ones, ones * 1.1, ones * 0.9, ones, ones)


def test_weekly_candles_open_on_monday_like_the_venues() -> None:
    # Binance's 1w klines open on Monday 00:00 UTC; the epoch was a Thursday, so weeks counted
    # from the epoch would put every real weekly file off the grid.
    monday = T0  # 2024-01-01 was a Monday
    report = validate_candles(weekly(monday).mask(np.array([1, 1, 0, 1, 1], bool)), source="w")
    assert report.rows == 4
    assert [(g.from_ms, g.to_ms, g.missing) for g in report.gaps] == [(T0 + W, T0 + 3 * W, 1)]
    thursday = T0 + 3 * 24 * H  # a multiple of 7 days since the epoch, but not a venue week
    assert thursday % W == 0
    with pytest.raises(CandleValidationError, match=r"off_grid .*Monday"):
        validate_candles(weekly(thursday), source="w")


def test_monthly_candles_are_refused_saying_they_are_not_supported() -> None:
    ones = np.ones(2)
    months = CandleSeries.from_columns(
        "BTC/USDT", "1M", np.array([T0, T0 + 31 * 24 * H]), ones, ones, ones, ones, ones
    )
    with pytest.raises(DataError, match=r"m\.csv: monthly candles \(1M\) are not supported"):
        validate_candles(months, source="m.csv")


# --- time order: the fewest rows dropped, candles in the future, sorting ---------------------


def with_ts(series: CandleSeries, ts: list[int] | np.ndarray) -> CandleSeries:
    return CandleSeries.from_columns(
        series.symbol,
        series.timeframe,
        ts,
        series.open,
        series.high,
        series.low,
        series.close,
        series.volume,
    )


def test_one_row_dated_too_late_costs_that_row_not_the_rest_of_the_file() -> None:
    series = make(1000)
    ts = series.ts_ms.copy()
    ts[1] = T0 + 5000 * H  # row 2 mistyped, later than every other row (not in the future)
    kept, report = repair_candles(with_ts(series, ts), source="f.csv")
    assert len(kept) == 999
    assert dict(report.dropped) == {"not_increasing": 1}
    assert int(T0 + 5000 * H) not in kept.ts_ms.tolist()
    with pytest.raises(CandleValidationError, match=r"not_increasing .*: 1 rows; first at row 2,"):
        validate_candles(with_ts(series, ts), source="f.csv")


def test_a_block_pasted_in_the_wrong_place_costs_that_block() -> None:
    ts = [T0 + h * H for h in (0, 1, 2, 10, 11, 12, 3, 4, 5, 6, 7)]
    kept, report = repair_candles(with_ts(make(11), ts), source="f.csv")
    assert kept.ts_ms.tolist() == [T0 + h * H for h in (0, 1, 2, 3, 4, 5, 6, 7)]
    assert dict(report.dropped) == {"not_increasing": 3}


def test_candles_that_close_after_now_are_refused_and_dropped_by_repair() -> None:
    series = make(1000)
    now = T0 + 2000 * H
    ts = series.ts_ms.copy()
    ts[1] = 1_802_944_800_000  # 2027-02-17, mistyped
    dated = with_ts(series, ts)
    with pytest.raises(CandleValidationError, match=r"future \(.*\): 1 rows; first at row 2,"):
        validate_candles(dated, source="f.csv", now_ms=now)
    kept, report = repair_candles(dated, source="f.csv", now_ms=now)
    assert len(kept) == 999
    assert dict(report.dropped) == {"future": 1}
    assert report.last_ts_ms == T0 + 999 * H
    # A candle still forming (open before now, close after it) is not stored either.
    forming = repair_candles(series, source="f.csv", now_ms=T0 + 999 * H + H // 2)[1]
    assert dict(forming.dropped) == {"future": 1}
    assert validate_candles(series, source="f.csv", now_ms=T0 + 1000 * H).rows == 1000


def test_a_descending_file_is_sorted_when_asked_with_rows_named_as_in_the_file() -> None:
    series = make(1000)
    newest_first = with_ts(series, series.ts_ms[::-1].copy())
    kept, _ = repair_candles(newest_first, source="f.csv")
    assert len(kept) == 1  # repairing is not sorting
    with pytest.raises(CandleValidationError, match=r"or sorted, if its rows are only out"):
        validate_candles(newest_first, source="f.csv")
    ordered, file_rows = sort_by_time(newest_first)
    assert validate_candles(ordered, source="f.csv", file_rows=file_rows).rows == 1000
    bad = make(5, high={0: 1.0})  # file row 1 ...
    bad_desc = CandleSeries.from_columns(
        "BTC/USDT", "1h", *(getattr(bad, c)[::-1] for c in COLUMNS)
    )  # ... is the last row once reversed, and file row 5 after sorting
    ordered, file_rows = sort_by_time(bad_desc)
    with pytest.raises(CandleValidationError, match=r"first at row 5, timestamp 1704067200000"):
        validate_candles(ordered, source="f.csv", file_rows=file_rows)


COLUMNS = ("ts_ms", "open", "high", "low", "close", "volume")


def _lis_length(values: list[int]) -> int:
    best = [1] * len(values)
    for i in range(len(values)):
        for j in range(i):
            if values[j] < values[i]:
                best[i] = max(best[i], best[j] + 1)
    return max(best, default=0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=2, max_size=25))
def test_repair_keeps_a_longest_strictly_increasing_run(hours: list[int]) -> None:
    n = len(hours)
    series = with_ts(make(n), [T0 + h * H for h in hours])
    dup, older = order_masks(series.ts_ms, np.zeros(n, dtype=bool))
    kept = np.asarray(hours)[~(dup | older)]
    assert bool(np.all(np.diff(kept) > 0))
    assert len(kept) == _lis_length(hours)
    # A row is a duplicate exactly when a kept row has its timestamp.
    assert set(np.asarray(hours)[dup].tolist()) <= set(kept.tolist())
    assert not set(np.asarray(hours)[older].tolist()) & set(kept.tolist())
