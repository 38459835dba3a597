"""Buy and hold: the market change and an equal-weight hold curve, the yardstick for a backtest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.domain.market import CandleSeries, FloatArray, IntArray
from core.errors import DataError


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchmarkSeries:
    """Closes of one symbol on the equity curve's time grid; NaN before the symbol has data."""

    symbol: str
    close: FloatArray


def align_close(series: CandleSeries, ts_ms: IntArray) -> FloatArray:
    """Return the last close at or before each ``ts_ms`` (NaN before the series' first candle)."""
    idx = np.searchsorted(series.ts_ms, ts_ms, side="right") - 1
    out = np.full(len(ts_ms), np.nan, dtype=np.float64)
    ok = idx >= 0
    out[ok] = series.close[idx[ok]]
    return out


def _valid_bounds(bench: BenchmarkSeries) -> tuple[int, int]:
    valid = np.flatnonzero(np.isfinite(bench.close) & (bench.close > 0))
    if len(valid) == 0:
        raise DataError(f"benchmark {bench.symbol}: no positive finite close on the equity grid")
    return int(valid[0]), int(valid[-1])


def market_change_pct(benchmarks: Sequence[BenchmarkSeries]) -> float | None:
    """Return the mean over symbols of (last close / first close - 1) in percent, as Freqtrade does.

    First and last are the first and last positive finite closes; None when there is no benchmark.
    """
    if not benchmarks:
        return None
    changes = []
    for bench in benchmarks:
        first, last = _valid_bounds(bench)
        changes.append(bench.close[last] / bench.close[first] - 1.0)
    return float(np.mean(changes)) * 100.0


def buy_and_hold_curve(
    benchmarks: Sequence[BenchmarkSeries], starting_balance: float
) -> FloatArray | None:
    """Return the value of splitting ``starting_balance`` equally over the symbols and holding.

    A symbol's share stays in cash until its first close, then follows close / first close; gaps
    after that carry the last close forward. No fees. None when there is no benchmark. Its last
    value equals ``starting_balance * (1 + market_change_pct / 100)``.
    """
    if not benchmarks:
        return None
    share = starting_balance / len(benchmarks)
    total = np.zeros(len(benchmarks[0].close), dtype=np.float64)
    for bench in benchmarks:
        first, _ = _valid_bounds(bench)
        close = bench.close
        valid = np.isfinite(close) & (close > 0)
        # Forward fill: index of the latest valid close at or before each row.
        last_valid = np.maximum.accumulate(np.where(valid, np.arange(len(close)), -1))
        ratio = np.ones(len(close), dtype=np.float64)
        held = last_valid >= first
        ratio[held] = close[last_valid[held]] / close[first]
        total += share * ratio
    return total
