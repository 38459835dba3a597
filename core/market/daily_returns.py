"""Daily closes of candle series (UTC days) and the daily returns of a weighted portfolio.

A VaR is backtested on daily returns (Basel's 250-day windows), whatever the timeframe of the
candles at hand: intraday candles are resampled to the close of each UTC day, the close of the
last candle that opened in it. A day is complete when that candle closes at midnight; the last
day of a series is left out when it is not (its close is not a day's close yet). A day in the
middle whose last candles are missing keeps the last close it has, and is counted in the notes.

The portfolio holds constant weights, rebalanced every day: its return on a day is the weighted
sum of its symbols' returns, over the days every symbol has a close (the common days; a return
across missing days spans all of them, and is counted in the notes too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.domain.market import CandleSeries, timeframe_to_ms
from core.errors import DataError

DAY_MS = 86_400_000
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class DailyCloses:
    """One symbol's close of each UTC day (``day_ms``: the day's start, ascending)."""

    symbol: str
    day_ms: IntArray
    close: FloatArray
    resampled_from: str | None  # the intraday timeframe resampled, None: daily candles
    partial_last_day: bool  # an unfinished last day was left out
    short_days: int  # days in the middle whose last candle is missing


def daily_closes(series: CandleSeries) -> DailyCloses:
    """Return the daily closes of ``series`` (resampled to UTC days when intraday)."""
    tf_ms = timeframe_to_ms(series.timeframe)
    if tf_ms > DAY_MS:
        raise DataError(
            f"{series.symbol}: {series.timeframe} candles are longer than a day: daily returns "
            "need 1d or shorter candles"
        )
    if not len(series):
        raise DataError(f"{series.symbol}: no candles")
    bad = ~np.isfinite(series.close) | (series.close <= 0)
    if bad.any():
        at = int(np.argmax(bad))
        raise DataError(
            f"{series.symbol}: {int(bad.sum())} close(s) are NaN, infinite or not positive, "
            f"the first at ts {int(series.ts_ms[at])}"
        )
    day = series.ts_ms // DAY_MS
    last = np.flatnonzero(np.diff(day, append=day[-1] + 1))  # each day's last candle
    ends = series.ts_ms[last] + tf_ms  # when that candle closes
    complete = ends >= (day[last] + 1) * DAY_MS
    partial_last = bool(not complete[-1])
    keep = last[:-1] if partial_last else last
    return DailyCloses(
        symbol=series.symbol,
        day_ms=(day[keep] * DAY_MS).astype(np.int64),
        close=series.close[keep].astype(np.float64),
        resampled_from=None if tf_ms == DAY_MS else series.timeframe,
        partial_last_day=partial_last,
        short_days=int((~complete[:-1]).sum()),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioReturns:
    """A portfolio's daily returns: ``returns[i]`` is the return of day ``day_ms[i]``."""

    day_ms: IntArray
    returns: FloatArray
    weights: dict[str, float]  # scaled to a gross exposure of 1
    spanning_gaps: int  # returns across missing days (each spans more than one day)


def scaled_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Return ``weights`` scaled to a gross exposure of 1 (their absolute values sum to 1; a
    negative weight is a short)."""
    if not weights:
        raise DataError("a portfolio needs at least one symbol")
    values = np.array(list(weights.values()), dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"portfolio weights must be finite numbers: {dict(weights)}")
    gross = float(np.abs(values).sum())
    if gross == 0.0:
        raise DataError("portfolio weights are all zero")
    return {symbol: float(w) / gross for symbol, w in weights.items()}


def portfolio_returns(
    closes: Mapping[str, DailyCloses], weights: Mapping[str, float]
) -> PortfolioReturns:
    """Return the daily returns of the portfolio ``weights`` over ``closes`` (by symbol)."""
    scaled = scaled_weights(weights)
    missing = [s for s in scaled if s not in closes]
    if missing:
        raise DataError(
            f"no candles for {', '.join(missing)} (the portfolio's symbols must be among "
            f"the data: {', '.join(closes) or 'none'})"
        )
    common = closes[next(iter(scaled))].day_ms
    for symbol in scaled:
        common = np.intersect1d(common, closes[symbol].day_ms)
    if len(common) < 2:
        shared = " in common" if len(scaled) > 1 else ""
        raise DataError(
            f"{', '.join(scaled)}: {len(common)} day(s) with a close{shared}: no daily return"
        )
    total = np.zeros(len(common) - 1)
    for symbol, w in scaled.items():
        c = closes[symbol]
        close = c.close[np.searchsorted(c.day_ms, common)]
        total += w * (close[1:] / close[:-1] - 1.0)
    return PortfolioReturns(
        day_ms=common[1:].astype(np.int64),
        returns=total,
        weights=scaled,
        spanning_gaps=int((np.diff(common) > DAY_MS).sum()),
    )
