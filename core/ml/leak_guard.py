"""The leak guard: refuse a feature matrix that holds the label or a value from the future.

Cheap and statistical (a rank correlation on at most ``max_rows`` rows, well under a second),
meant to run before every training and evaluation. The exact proof of causality is the test
that recomputes the features after altering later candles; this guard catches what slips in
around it: a ``future_return`` column, the label itself, a centred moving average, tomorrow's
high.

A column is refused when its rank correlation with the forward return (or the forward absolute
return: future volatility) over some horizon reaches ``max_future_corr`` *and* exceeds its
correlation with the same quantity over the past horizon. Causal features measure the past:
realised volatility correlates about 0.35 with future absolute returns but more with past ones,
and no causal column of the feature set gets near 0.5 with a signed forward return (measured
about 0.1 at most). A column is also refused when it (nearly) equals the label: a threshold of
0.9, since volatility alone correlates about 0.55 with whether a fixed TP1 is hit first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

HORIZONS = (1, 2, 4, 8, 12, 24, 48)
FloatArray = npt.NDArray[np.float64]


def _ranks(a: FloatArray) -> FloatArray:
    out = np.empty(a.shape, dtype=np.float64)
    order = np.argsort(a, axis=0, kind="stable")
    positions = np.broadcast_to(np.arange(a.shape[0], dtype=np.float64)[:, None], a.shape)
    np.put_along_axis(out, order, positions, axis=0)
    return out


def _corr(x: FloatArray, y: FloatArray) -> FloatArray:
    """Return the Pearson correlations of every column of ``x`` with every column of ``y``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        xs = (x - x.mean(axis=0)) / x.std(axis=0)
        ys = (y - y.mean(axis=0)) / y.std(axis=0)
    out: FloatArray = np.nan_to_num(xs.T @ ys / len(x))  # a constant column cannot leak
    return out


def _refuse(column: str, rho: float, what: str, past: float | None, limit: float) -> None:
    before = "" if past is None else f" (with the past one: {past:+.2f})"
    raise ValueError(
        f"feature column {column!r} leaks the future: rank correlation {rho:+.2f} with {what}"
        f"{before}, limit {limit}; a feature at row t may use candles up to t only"
    )


def assert_no_leak(
    values: npt.NDArray[np.floating],
    columns: Sequence[str],
    close: FloatArray,
    *,
    label: npt.ArrayLike | None = None,
    label_valid: npt.NDArray[np.bool_] | None = None,
    horizons: Sequence[int] = HORIZONS,
    max_future_corr: float = 0.5,
    max_label_corr: float = 0.9,
    max_rows: int = 10_000,
    min_rows: int = 200,
) -> None:
    """Raise ValueError naming the first column that looks like the label or the future.

    ``values`` (rows aligned with ``close``, the candles' closes) and ``columns`` are the matrix
    a model would train on; ``label`` (and its ``label_valid`` mask) the target, if any. Rows
    with a NaN feature are ignored; fewer than ``min_rows`` usable rows is an error (the guard
    cannot judge, so it does not pass).
    """
    x_all = np.asarray(values, dtype=np.float64)
    n = len(close)
    if x_all.ndim != 2 or x_all.shape != (n, len(columns)):
        raise ValueError(
            f"values shape {x_all.shape} does not match {n} closes x {len(columns)} columns"
        )
    for name, given in (("label", label), ("label_valid", label_valid)):
        if given is not None and len(np.asarray(given)) != n:
            raise ValueError(f"{name} has {len(np.asarray(given))} rows, the closes {n}")
    h_max = max(horizons)
    usable = np.asarray(np.isfinite(x_all).all(axis=1), dtype=np.bool_)
    usable[:h_max] = False
    usable[max(n - h_max, 0) :] = False
    rows = np.flatnonzero(usable)
    if len(rows) < min_rows:
        raise ValueError(
            f"the leak guard needs {min_rows} rows with every feature finite and {h_max} candles "
            f"either side, had {len(rows)}"
        )
    rows = rows[np.linspace(0, len(rows) - 1, min(max_rows, len(rows))).astype(np.int64)]
    rx = _ranks(x_all[rows])
    if label is not None:  # first: "this is the label" says more than "this is the future"
        y = np.asarray(label, dtype=np.float64)
        _check_label(x_all[rows], rx, rows, y, label_valid, columns, max_label_corr)
    log_close = np.log(close)
    fut = np.column_stack([log_close[rows + h] - log_close[rows] for h in horizons])
    past = np.column_stack([log_close[rows] - log_close[rows - h] for h in horizons])
    for kind, f, p in (("", fut, past), ("absolute ", np.abs(fut), np.abs(past))):
        c_fut, c_past = np.abs(_corr(rx, _ranks(f))), np.abs(_corr(rx, _ranks(p)))
        bad = (c_fut >= max_future_corr) & (c_fut > c_past)
        if bad.any():
            j = int(np.argmax(bad.any(axis=1)))  # the first bad column, at its worst horizon
            k = int(np.argmax(np.where(bad[j], c_fut[j], -1.0)))
            what = f"the {horizons[k]}-candle forward {kind}return"
            _refuse(columns[j], float(c_fut[j, k]), what, float(c_past[j, k]), max_future_corr)


def _check_label(
    x: FloatArray,
    rx: FloatArray,
    rows: npt.NDArray[np.int64],
    label: FloatArray,
    valid: npt.NDArray[np.bool_] | None,
    columns: Sequence[str],
    limit: float,
) -> None:
    keep = np.isfinite(label[rows]) & (True if valid is None else valid[rows])
    if keep.sum() < 2:
        return
    # against the label itself, not its ranks (a binary label's ties would be ordered
    # arbitrarily), with the features raw (a copy of the label: 1) and ranked (any monotone
    # transform of it)
    y = label[rows][keep][:, None]
    rho = np.maximum(np.abs(_corr(x[keep], y)), np.abs(_corr(rx[keep], y)))[:, 0]
    if (rho >= limit).any():
        j = int(np.argmax(rho))
        _refuse(columns[j], float(rho[j]), "the label", None, limit)
