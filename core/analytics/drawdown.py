"""Drawdowns of an equity curve: the worst fall from a peak and the longest time under water."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.analytics.inputs import EquityCurve
from core.domain.market import FloatArray


@dataclass(frozen=True, slots=True, kw_only=True)
class DrawdownStats:
    """The worst drawdown (by percent of its peak) and the longest underwater period.

    ``max_drawdown_abs`` is peak minus trough of that same worst-percent drawdown. ``start_ms`` is
    the last sample at the peak before the trough, ``end_ms`` the trough; both None without any
    drawdown. ``longest_underwater_ms`` runs from the last sample at a peak to the first sample back
    at or above it, or to the curve's last sample if it never recovered.
    """

    max_drawdown_pct: float
    max_drawdown_abs: float
    start_ms: int | None
    end_ms: int | None
    peak_equity: float | None
    trough_equity: float | None
    longest_underwater_ms: int


def underwater_fraction(equity: FloatArray) -> FloatArray:
    """Return (running peak - equity) / running peak per sample (0 at peaks; 0 if peak <= 0)."""
    peak = np.maximum.accumulate(equity)
    fall = peak - equity
    return np.divide(fall, peak, out=np.zeros_like(fall), where=peak > 0)


def _longest_underwater_ms(curve: EquityCurve) -> int:
    below = curve.equity < np.maximum.accumulate(curve.equity)
    if not below.any():
        return 0
    edges = np.diff(np.concatenate(([False], below, [False])).astype(np.int8))
    starts = np.flatnonzero(edges == 1)  # first underwater sample; starts >= 1 (row 0 is a peak)
    stops = np.flatnonzero(edges == -1)  # first sample back at the peak, or len(curve)
    last = len(curve) - 1
    back_ms = curve.ts_ms[np.minimum(stops, last)]
    return int(np.max(back_ms - curve.ts_ms[starts - 1]))


def drawdown_stats(curve: EquityCurve) -> DrawdownStats:
    """Measure the worst drawdown and the longest underwater period of the curve."""
    frac = underwater_fraction(curve.equity)
    end = int(np.argmax(frac))
    underwater_ms = _longest_underwater_ms(curve)
    if frac[end] <= 0:
        return DrawdownStats(
            max_drawdown_pct=0.0,
            max_drawdown_abs=0.0,
            start_ms=None,
            end_ms=None,
            peak_equity=None,
            trough_equity=None,
            longest_underwater_ms=underwater_ms,
        )
    head = curve.equity[: end + 1]
    peak_value = float(head.max())
    start = int(np.flatnonzero(head == peak_value)[-1])
    trough = float(curve.equity[end])
    return DrawdownStats(
        max_drawdown_pct=float(frac[end]) * 100.0,
        max_drawdown_abs=peak_value - trough,
        start_ms=int(curve.ts_ms[start]),
        end_ms=int(curve.ts_ms[end]),
        peak_equity=peak_value,
        trough_equity=trough,
        longest_underwater_ms=underwater_ms,
    )
