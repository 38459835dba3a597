"""Consecutive candles with a planted seasonal return: what the torch forecasters can learn.

The one-candle return follows a 12-candle sine of random phase plus noise, so the sign of
the next 4 candles' sum is predictable from the last 32 returns (and from nothing else: the
phase differs between series, so memorising the time of day does not help).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

COLUMNS = ("ret_1", "vol_ratio", "noise")
HASH = "fs-forecast-0001"
PERIOD = 12
HORIZON = 4  # tests.unit.ml.synthetic.TINY's horizon

Matrix = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def seasonal(n: int, seed: int = 0, amplitude: float = 0.002) -> tuple[Matrix, Ints]:
    """Return ``n`` consecutive rows (the returns, two noise features) and the up labels."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi)
    t = np.arange(n)
    ret = amplitude * np.sin(2 * np.pi * t / PERIOD + phase) + 0.003 * rng.normal(size=n)
    x = np.column_stack([ret, 1 + 0.1 * rng.normal(size=n), rng.normal(size=n)])
    ahead = np.zeros(n)
    for h in range(1, HORIZON + 1):
        ahead[:-h] += ret[h:]
    y = (ahead > 0).astype(np.int64)
    y[-HORIZON:] = 0  # unknown at the end: never scored below
    return x, y
