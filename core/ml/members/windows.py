"""Causal input windows and forecast targets of the torch members, in numpy (no torch here).

The rows of ``X`` are taken as consecutive candles of one series, oldest first. The window of
row ``t`` holds rows ``t - L + 1 .. t`` of the chosen channels (the one-candle log return
first, then a few feature columns): nothing after ``t``. Rows before the first have no
values: they are missing, like NaN, so the first ``L - 1`` rows of a batch get a shorter
window (pass ``L - 1`` rows of context before the first row whose prediction matters).

Each window is normalised on its own: returns divided by their root mean square (their sign
and drift stay), features z-scored; a missing value becomes 0 after that (the window's mean).
The forecast target of row ``t`` is the path of cumulative returns over ``t + 1 .. t + H``,
in units of the window's scale, so one network fits calm and wild markets alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from core.ml.member import FloatMatrix

Float32 = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float64]
MIN_SCALE = 1e-6  # a flat window (no trade) must not divide by zero


@dataclass(frozen=True, slots=True)
class Windows:
    """Normalised inputs (rows, channels, L) and each row's return scale (rows,)."""

    inputs: Float32
    scale: Vector
    full: npt.NDArray[np.bool_]  # the window lies wholly inside the batch


def make_windows(x: FloatMatrix, channels: list[int], length: int, first: int = 0) -> Windows:
    """Return the window of every row of ``x`` from row ``first`` on (the rows before are
    context only); channel 0 must be the one-candle return."""
    rows = x.shape[0]
    values = x[:, channels].T  # (channels, rows)
    padded = np.concatenate([np.full((len(channels), length - 1), np.nan), values], axis=1)
    # Each window is normalised on its own: those of rows before ``first`` are not built (a
    # live decision wants one window of 168, not 168 of them).
    raw = sliding_window_view(padded[:, first:], length, axis=1).transpose(1, 0, 2)  # (rows, C, L)
    present = np.isfinite(raw)
    filled = np.where(present, raw, 0.0)
    count = np.maximum(present.sum(axis=2), 1)

    scale = np.sqrt((filled[:, 0] ** 2).sum(axis=1) / count[:, 0])
    scale = np.maximum(scale, MIN_SCALE)
    out = np.empty(raw.shape, dtype=np.float32)
    out[:, 0] = filled[:, 0] / scale[:, None]
    if len(channels) > 1:
        feats, seen, n = filled[:, 1:], present[:, 1:], count[:, 1:, None]
        mean = feats.sum(axis=2, keepdims=True) / n
        centred = np.where(seen, feats - mean, 0.0)
        std = np.sqrt((centred**2).sum(axis=2, keepdims=True) / n)
        out[:, 1:] = centred / np.maximum(std, 1e-8)
    full = np.arange(first, rows) >= length - 1
    return Windows(out, scale, full)


def target_paths(
    returns: Vector, scale: Vector, horizon: int
) -> tuple[Float32, npt.NDArray[np.bool_]]:
    """Return each row's cumulative-return path over the next ``horizon`` rows in units of its
    window's scale (rows, H), and a mask of the rows where that path is known and finite."""
    rows = len(returns)
    path = np.full((rows, horizon), np.nan)
    if rows > horizon:
        ahead = sliding_window_view(returns[1:], horizon)[: rows - horizon]  # rows t+1..t+H
        path[: rows - horizon] = np.cumsum(ahead, axis=1)
    known = np.isfinite(path).all(axis=1)
    normalised = np.where(known[:, None], path, 0.0) / scale[:, None]
    return normalised.astype(np.float32), known
