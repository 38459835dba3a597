"""What a walk-forward retrain may train on, and what it records.

At simulated time ``now`` only candles that closed by then exist; a rolling window keeps the
newest of them (an expanding one all). ``core.ml.training.prepare`` then labels them, so every
label ends at or before ``now``, and purges the training labels ``embargo`` candles before
the holdout, as ``qt models train`` does.
"""

from __future__ import annotations

import numpy as np

from core.domain.market import CandleSeries, timeframe_to_ms

DAY_MS = 86_400_000


def window_candles(window_days: float, timeframe: str) -> int | None:
    """Return the rolling window in candles of ``timeframe`` (None: expanding, ``0`` days)."""
    if window_days <= 0:
        return None
    return max(1, round(window_days * DAY_MS / timeframe_to_ms(timeframe)))


def closed_by(series: CandleSeries, now_ms: int, window: int | None) -> CandleSeries:
    """Return the candles of ``series`` that closed at or before ``now_ms``, the newest
    ``window`` of them (all with None)."""
    close_ms = series.ts_ms + timeframe_to_ms(series.timeframe)
    end = int(np.searchsorted(close_ms, now_ms, side="right"))
    return series.slice(0 if window is None else max(0, end - window), end)
