"""Candles with a planted learnable signal, and without: for the walk-forward and the
evaluation tests (test-only generators)."""

from __future__ import annotations

import numpy as np

from core.domain.market import CandleSeries

T0 = 1_704_067_200_000  # 2024-01-01
HOUR_MS = 3_600_000
N = 2_400


def regimes(seed: int, drift: float, n: int = N, symbol: str = "BTC/USDT") -> CandleSeries:
    """1h candles whose returns follow persistent up/down regimes (``drift`` x the noise per
    candle, a regime lasting ~33 candles): what happened lately says what comes next, which
    the features can learn. ``drift=0`` is a pure random walk: nothing to learn."""
    rng = np.random.default_rng(seed)
    switch = rng.random(N) < 0.03
    sign = np.where(np.cumsum(switch) % 2 == 0, 1.0, -1.0)
    ret = 0.004 * (drift * sign + rng.normal(size=N))
    close = 100.0 * np.exp(np.cumsum(ret))
    open_ = np.concatenate(([100.0], close[:-1]))
    wick = 0.002 * np.abs(rng.normal(size=N)) * close
    return CandleSeries.from_columns(
        symbol,
        "1h",
        T0 + HOUR_MS * np.arange(N, dtype=np.int64),
        open_,
        np.maximum(open_, close) + wick,
        np.minimum(open_, close) - wick,
        close,
        rng.uniform(10, 20, N),
    ).slice(0, n)
