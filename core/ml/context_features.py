"""Features from outside the candle itself: time of day/week, a higher timeframe, a reference.

Causality is the point of this module. A base row ``t`` is known at its candle's close
(``ts_ms[t] + tf``); it may use a higher-timeframe or reference candle only once that candle
has closed by then. Higher-timeframe candles are built from the base candles (a bucket becomes
usable at the base candle that completes it, never while it is still forming) and the
reference's features are computed on its own series before being looked up by close time.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.domain.market import CandleSeries, grid_origin_ms, timeframe_to_ms
from core.ml.candle_features import FloatArray, indicator_block, indicator_columns

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
MONDAY_MS = 4 * DAY_MS  # 1970-01-05, the first Monday after the epoch

TIME_COLUMNS = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")
# The higher-timeframe and reference blocks keep the columns that say most about trend and
# volatility there; the full block on 4h would mostly repeat the 1h one.
HTF_KEEP = (
    "ret_1",
    "ret_4",
    "rsi_14",
    "macd_hist",
    "adx",
    "dist_ema_21",
    "dist_ema_50",
    "natr_14",
    "bb_pctb",
    "rv_24",
)
REF_KEEP = ("ret_1", "ret_4", "ret_24", "rsi_14", "natr_14", "dist_ema_50", "rv_24")
REF_PAIR_COLUMNS = ("ref_corr_72", "ref_beta_72", "ref_rel_ret_24")
PAIR_WINDOW = 72
HTF_LOOKBACK = 50  # the longest window kept (EMA 50), in higher-timeframe candles


def time_columns(ts_ms: npt.NDArray[np.int64]) -> list[FloatArray]:
    """Return hour-of-day and day-of-week as sin/cos pairs (no jump at midnight or Monday)."""
    day = 2 * np.pi * (ts_ms % DAY_MS) / DAY_MS
    week = 2 * np.pi * ((ts_ms - MONDAY_MS) % WEEK_MS) / WEEK_MS
    return [np.sin(day), np.cos(day), np.sin(week), np.cos(week)]


def htf_columns(timeframe: str) -> tuple[str, ...]:
    """Return the higher-timeframe column names, e.g. ``htf4h_rsi_14``."""
    return tuple(f"htf{timeframe}_{name}" for name in HTF_KEEP)


def ref_columns() -> tuple[str, ...]:
    """Return the reference column names."""
    return (*(f"ref_{name}" for name in REF_KEEP), *REF_PAIR_COLUMNS)


def _pick(block: list[FloatArray], keep: tuple[str, ...]) -> list[FloatArray]:
    names = indicator_columns()
    return [block[names.index(name)] for name in keep]


def _lookup(close_ms: npt.NDArray[np.int64], at_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Return, per ``at_ms``, the last row closed at or before it (-1 if none)."""
    return np.searchsorted(close_ms, at_ms, side="right") - 1


def _take(column: FloatArray, rows: npt.NDArray[np.intp]) -> FloatArray:
    out = np.full(len(rows), np.nan)
    ok = rows >= 0
    out[ok] = column[rows[ok]]
    return out


def resample(series: CandleSeries, timeframe: str) -> CandleSeries:
    """Return ``series`` aggregated into ``timeframe`` buckets on the venues' grid.

    A bucket holds the base candles it contains (fewer where the base series has a gap); the
    last one may still be forming, and ``higher_timeframe_block`` never uses it before it closes.
    """
    tf_ms = timeframe_to_ms(timeframe)
    if tf_ms <= timeframe_to_ms(series.timeframe) or tf_ms % timeframe_to_ms(series.timeframe):
        raise ValueError(
            f"higher timeframe {timeframe} must be a multiple of {series.timeframe} above it"
        )
    if not len(series):
        return CandleSeries.empty(series.symbol, timeframe)
    origin = grid_origin_ms(timeframe)
    bucket = series.ts_ms - (series.ts_ms - origin) % tf_ms
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [len(series)])) - 1
    return CandleSeries.from_columns(
        series.symbol,
        timeframe,
        bucket[starts],
        series.open[starts],
        np.maximum.reduceat(series.high, starts),
        np.minimum.reduceat(series.low, starts),
        series.close[ends],
        np.add.reduceat(series.volume, starts),
    )


def higher_timeframe_block(series: CandleSeries, timeframe: str) -> list[FloatArray]:
    """Return the ``htf_columns`` per base row, from completed higher-timeframe candles only."""
    htf = resample(series, timeframe)
    block = _pick(indicator_block(htf.open, htf.high, htf.low, htf.close, htf.volume), HTF_KEEP)
    base_close = series.ts_ms + timeframe_to_ms(series.timeframe)
    rows = _lookup(htf.ts_ms + timeframe_to_ms(timeframe), base_close)
    return [_take(col, rows) for col in block]


def reference_block(
    series: CandleSeries, reference: CandleSeries, base_ret_24: FloatArray
) -> list[FloatArray]:
    """Return the ``ref_columns`` per base row from the reference candles closed by then.

    A reference candle is used from the base candle at whose close it has closed, and not once
    its successor should have closed too (a gap in the reference gives NaN, not stale values).
    """
    if not len(reference):  # nothing to align: every reference column is unknown
        return [np.full(len(series), np.nan) for _ in ref_columns()]
    ref_tf = timeframe_to_ms(reference.timeframe)
    block = _pick(
        indicator_block(
            reference.open, reference.high, reference.low, reference.close, reference.volume
        ),
        REF_KEEP,
    )
    ref_close_ms = reference.ts_ms + ref_tf
    base_close = series.ts_ms + timeframe_to_ms(series.timeframe)
    rows = _lookup(ref_close_ms, base_close)
    stale = (rows < 0) | (base_close - ref_close_ms[np.maximum(rows, 0)] >= ref_tf)
    rows = np.where(stale, -1, rows)
    out = [_take(col, rows) for col in block]
    ref_close = _take(reference.close, rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        base_r = np.log(series.close[1:] / series.close[:-1])
        ref_r = np.log(ref_close[1:] / ref_close[:-1])
    corr, beta = np.full(len(series), np.nan), np.full(len(series), np.nan)
    corr[1:], beta[1:] = _pair_stats(base_r, ref_r, PAIR_WINDOW)
    ref_ret_24 = out[REF_KEEP.index("ret_24")]
    return [*out, corr, beta, base_ret_24 - ref_ret_24]


def _rolling_sum(x: FloatArray, window: int) -> FloatArray:
    total = np.concatenate(([0.0], np.cumsum(x)))
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        out[window - 1 :] = total[window:] - total[:-window]
    return out


def _pair_stats(a: FloatArray, b: FloatArray, window: int) -> tuple[FloatArray, FloatArray]:
    """Return the rolling correlation of ``a`` and ``b`` and the slope (beta) of ``a`` on ``b``.

    By prefix sums rather than TA-Lib's CORREL/BETA: their running sums turn a single NaN (a
    gap in the reference) into NaN for the rest of the series; here it spoils one window only.
    """
    ok = np.isfinite(a) & np.isfinite(b)
    a0, b0 = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    n = _rolling_sum(ok.astype(np.float64), window)
    full = n == window
    sa, sb = _rolling_sum(a0, window), _rolling_sum(b0, window)
    cov = _rolling_sum(a0 * b0, window) - sa * sb / window
    var_a = _rolling_sum(a0 * a0, window) - sa * sa / window
    var_b = _rolling_sum(b0 * b0, window) - sb * sb / window
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(full, cov / np.sqrt(var_a * var_b), np.nan)
        beta = np.where(full, cov / var_b, np.nan)
    return np.asarray(corr, dtype=np.float64), np.asarray(beta, dtype=np.float64)
