"""Calendar buckets of an equity curve: UTC day ends, daily returns and the monthly table.

A curve sample is taken at a candle's close, so its time is the *next* candle's open: a 1d
candle opened 2023-12-31 is sampled at 2024-01-01 00:00. Bucketing samples by their own time
would put every candle's result in the following day or month (and add a day to every range).
A sample therefore belongs to the period its candle opened in, ``ts - candle_ms``; the curve's
first sample, the opening mark, is the start of the first period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.analytics.inputs import EquityCurve
from core.domain.market import FloatArray, IntArray

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class DailySeries:
    """Equity at each UTC day end, from the curve's first day to its last, with no gaps.

    ``day`` counts days since the epoch; ``change_abs`` and ``returns`` compare each day end with
    the previous one, the first day with the starting balance.
    """

    day: IntArray
    equity: FloatArray
    change_abs: FloatArray
    returns: FloatArray


@dataclass(frozen=True, slots=True, kw_only=True)
class MonthRow:
    """One calendar month (UTC): equity change, change over the month's opening equity, trades."""

    month: str  # "YYYY-MM"
    profit_abs: float
    profit_pct: float | None  # None when the month opened at equity <= 0
    trades: int  # trades closed in the month


def period_ends(
    period_of_sample: IntArray, values: FloatArray, first: int, last: int, before: float
) -> FloatArray:
    """Return the last value in each period ``first..last``, carrying values over empty periods.

    ``period_of_sample`` must be non-decreasing; periods before the first sample get ``before``.
    """
    periods = np.arange(first, last + 1, dtype=np.int64)
    # Index of the last sample whose period is <= each period.
    idx = np.searchsorted(period_of_sample, periods, side="right") - 1
    out = np.full(len(periods), before, dtype=np.float64)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def changes_from(ends: FloatArray, opening: float) -> tuple[FloatArray, FloatArray]:
    """Return absolute and relative changes of period ends, the first against ``opening``.

    A period that opens at equity <= 0 has a relative change of 0: nothing was left to lose.
    """
    prev = np.concatenate(([opening], ends[:-1]))
    change = ends - prev
    rel = np.divide(change, prev, out=np.zeros_like(change), where=prev > 0)
    return change, rel


def candle_opens(curve: EquityCurve, candle_ms: int) -> IntArray:
    """Return when the candle behind each sample opened (samples are taken at candle closes).

    The opening mark maps to before the curve's start, so it only supplies the balance carried
    into the first period.
    """
    return curve.ts_ms - candle_ms


def daily_series(curve: EquityCurve, starting_balance: float, candle_ms: int) -> DailySeries:
    """Resample the curve to UTC day ends (the last candle of each day; empty days carry over)."""
    day_of_sample = candle_opens(curve, candle_ms) // DAY_MS
    first = int(curve.ts_ms[0] // DAY_MS)  # the opening mark starts the first day
    last = max(first, int(day_of_sample[-1]))
    ends = period_ends(day_of_sample, curve.equity, first, last, starting_balance)
    change, rel = changes_from(ends, starting_balance)
    return DailySeries(
        day=np.arange(first, last + 1, dtype=np.int64), equity=ends, change_abs=change, returns=rel
    )


def month_index(ts_ms: IntArray) -> IntArray:
    """Return months since 1970-01 (UTC) for each timestamp."""
    return ts_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)


def monthly_table(
    curve: EquityCurve, starting_balance: float, closed_ms: IntArray, candle_ms: int
) -> tuple[MonthRow, ...]:
    """Return one row per month from the first to the last month of the curve or the trades.

    The abs profits sum to final equity minus the starting balance. A trade counts in the month
    of its closing fill (fills are stamped inside their candle, so that is the candle's month).
    """
    month_of_sample = month_index(candle_opens(curve, candle_ms))
    month_of_trade = month_index(closed_ms)
    opening_month = int(month_index(curve.ts_ms[:1])[0])  # the opening mark starts the first
    first = int(month_of_trade.min(initial=opening_month))
    last = int(month_of_trade.max(initial=max(opening_month, int(month_of_sample[-1]))))
    ends = period_ends(month_of_sample, curve.equity, first, last, starting_balance)
    prev = np.concatenate(([starting_balance], ends[:-1]))
    change = ends - prev
    counts = np.bincount(month_of_trade - first, minlength=last - first + 1)
    labels = np.arange(first, last + 1).astype("datetime64[M]").astype(str)
    return tuple(
        MonthRow(
            month=str(labels[i]),
            profit_abs=float(change[i]),
            profit_pct=float(change[i] / prev[i] * 100.0) if prev[i] > 0 else None,
            trades=int(counts[i]),
        )
        for i in range(len(change))
    )
