"""Correlation of two symbols' recent log returns, on the candles both have."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def log_return_correlation(
    a: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]],
    b: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]],
    *,
    returns: int,
    min_returns: int,
) -> float | None:
    """Return the Pearson correlation of the newest ``returns`` log returns of ``a`` and ``b``
    (each ``(open times, closes)``), over the candles both hold; None when fewer than
    ``min_returns`` are common (0 when either side does not move at all)."""
    common, ia, ib = np.intersect1d(a[0], b[0], assume_unique=True, return_indices=True)
    if len(common) < min_returns + 1:
        return None
    ia, ib = ia[-(returns + 1) :], ib[-(returns + 1) :]
    ca, cb = a[1][ia], b[1][ib]
    if np.any(ca <= 0) or np.any(cb <= 0):
        return None
    ra, rb = np.diff(np.log(ca)), np.diff(np.log(cb))
    sa, sb = float(ra.std()), float(rb.std())
    if not np.isfinite(sa) or not np.isfinite(sb):
        return None
    if sa == 0 or sb == 0:
        return 0.0  # a price that does not move cannot move with another
    return float(np.mean((ra - ra.mean()) * (rb - rb.mean())) / (sa * sb))
