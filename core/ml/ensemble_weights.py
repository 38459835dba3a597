"""The ensemble's weights: softmax of each member's negative rolling log-loss, bounded.

Only labels already resolved count: at row ``t`` a label is known when it is valid and its
end row (where TP1, the stop or the horizon was reached) is at most ``t``; the candle closing
there is the newest one the decision at ``t`` has seen. Only a member's out-of-sample rows
count (``oos``): a loss on rows it was trained on flatters it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.ml.metrics import log_losses

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
STEPS = 100  # bisection steps at most
CONVERGED_AFTER = 40  # bisection steps before it can have reached the last float: not checked
SCALAR_ROWS = 8  # rows bisected on Python floats (the same floats, fewer calls)
PAIRWISE_FROM = 8  # members from which numpy sums a row pairwise, not left to right


@dataclass(frozen=True, slots=True)
class ResolvedLosses:
    """One member's usable labels in the order they resolved (``ends``: the row each became
    known) and the running sum of its log-losses on them (``costs[i]``: the first ``i``),
    taken on a history of ``n`` rows; a history grown from it extends this."""

    n: int
    ends: IntArray
    costs: FloatArray


def resolved_losses(
    p: FloatArray,
    y: npt.ArrayLike,
    *,
    known_at: IntArray,
    usable: BoolArray,
    previous: ResolvedLosses | None = None,
) -> ResolvedLosses:
    """Return one member's resolved labels and the running sum of its log-losses (``p`` and
    ``usable`` its column), extending ``previous`` when the history grew from its.

    A label known before the previous history ended was known to it, with the same outcome,
    prediction and row (causal): only those resolved since are new, and they all resolve
    after the old ones, so they go at the end, summed on from the old total (the same floats
    as summing them all again, a cumulative sum being left to right).
    """
    take = np.flatnonzero(usable & np.isfinite(p))
    if previous is not None:
        take = take[known_at[take] >= previous.n]
    order = take[np.argsort(known_at[take], kind="stable")]  # in the order they resolved
    losses = log_losses(p[order], np.asarray(y)[order])
    if previous is None:
        return ResolvedLosses(len(p), known_at[order], np.concatenate(([0.0], np.cumsum(losses))))
    more = np.cumsum(np.concatenate((previous.costs[-1:], losses)))[1:]
    return ResolvedLosses(
        len(p),
        np.concatenate((previous.ends, known_at[order])),
        np.concatenate((previous.costs, more)),
    )


def windowed_loss(
    losses: ResolvedLosses, rows: npt.NDArray[np.intp], window: int
) -> tuple[FloatArray, IntArray]:
    """Return, per row of ``rows``, the mean log-loss over the last ``window`` labels known by
    then and how many there were (NaN loss where none)."""
    hi = np.searchsorted(losses.ends, rows, side="right")
    lo = np.maximum(hi - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = (losses.costs[hi] - losses.costs[lo]) / (hi - lo)
    return np.asarray(loss, dtype=np.float64), np.asarray(hi - lo, dtype=np.int64)


def rolling_log_loss(
    p: FloatArray,
    y: npt.ArrayLike,
    *,
    known_at: IntArray,
    usable: BoolArray,
    window: int,
) -> tuple[FloatArray, IntArray]:
    """Return, per row ``t`` and member, the mean log-loss over the last ``window`` labels
    known by ``t`` and how many there were (NaN loss where none).

    ``p`` is (rows, members); ``known_at[s]`` the row from which label ``s`` is known;
    ``usable`` (rows, members) marks the labels that may count for each member.
    """
    n, k = p.shape
    rows = np.arange(n)
    loss = np.full((len(rows), k), np.nan)
    count = np.zeros((len(rows), k), dtype=np.int64)
    for m in range(k):
        losses = resolved_losses(p[:, m], y, known_at=known_at, usable=usable[:, m])
        loss[:, m], count[:, m] = windowed_loss(losses, rows, window)
    return loss, count


def bounded_softmax(
    logits: FloatArray, active: BoolArray, *, min_weight: float, max_weight: float
) -> FloatArray:
    """Return per-row weights of the active members: softmax of ``logits``, then each kept
    within [min_weight, max_weight] and summing to 1 (bounds are relaxed to 1/k where k active
    members cannot meet them). Rows without an active member get zeros."""
    n, k = logits.shape
    z = np.where(active, logits, -np.inf)
    top = np.max(z, axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    e = np.where(active, np.exp(z - top), 0.0)
    total = e.sum(axis=1, keepdims=True)
    s = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    k_active = active.sum(axis=1, keepdims=True)
    share = np.divide(1.0, k_active, out=np.ones_like(total), where=k_active > 0)
    lo = np.minimum(min_weight, share)
    hi = np.maximum(max_weight, share)
    # w = clip(c * s, lo, hi) summing to 1: bisect c in log space, row by row at once
    s_pos = np.maximum(s, 1e-300)
    s_max = np.where(active, s_pos, 0.0).max(axis=1, keepdims=True)
    s_min = np.where(active, s_pos, np.inf).min(axis=1, keepdims=True)
    none = k_active == 0
    a = np.where(
        none, 0.0, np.log(np.maximum(lo, 1e-12)) - np.log(np.where(none, 1.0, s_max)) - 1.0
    )
    b = np.where(none, 0.0, np.log(hi) - np.log(np.where(none, 1.0, s_min)) + 1.0)
    steps = STEPS
    if n <= SCALAR_ROWS and k < PAIRWISE_FROM and all(np.isfinite(v).all() for v in (s, a, b)):
        for i in range(n):  # a live decision: one row, whose ~11 array calls a step cost most
            a[i, 0], b[i, 0] = _bisect_row(
                float(a[i, 0]),
                float(b[i, 0]),
                s[i][active[i]].tolist(),
                float(lo[i, 0]),
                float(hi[i, 0]),
            )
        steps = 0  # bisected
    for step in range(steps):
        c = 0.5 * (a + b)
        # Converged to the last float on every row (c is a or b): the remaining steps would
        # leave 0.5 * (a + b) at c, so stopping here gives the same weights, fewer steps.
        if step >= CONVERGED_AFTER and bool(((c == a) | (c == b)).all()):
            break
        # np.clip and .sum as their ufuncs: the same floats, without the wrappers' overhead,
        # which is most of a step on the one row of a live decision
        w = np.where(active, np.minimum(np.maximum(np.exp(c) * s, lo), hi), 0.0)
        over = np.add.reduce(w, axis=1, keepdims=True) > 1.0
        b = np.where(over, c, b)
        a = np.where(over, a, c)
    w = np.where(active, np.clip(np.exp(0.5 * (a + b)) * s, lo, hi), 0.0)
    total = w.sum(axis=1, keepdims=True)
    out: FloatArray = np.divide(w, total, out=np.zeros((n, k)), where=total > 0)
    return out


def _bisect_row(a: float, b: float, s: list[float], lo: float, hi: float) -> tuple[float, float]:
    """Return the bisection's final (a, b) of one row (its active shares ``s``): the steps of
    ``bounded_softmax`` on Python floats, which are IEEE doubles as numpy's are: ``np.exp``
    of a float is its array loop's, ``clip`` is ``min(max())`` on finite values, and numpy
    sums fewer than ``PAIRWISE_FROM`` values left to right (tested equal, float for float).
    """
    for step in range(STEPS):
        c = 0.5 * (a + b)
        if step >= CONVERGED_AFTER and (c == a or c == b):
            break
        e = float(np.exp(c))
        total = 0.0
        for share in s:  # not sum(): Python 3.12 sums floats compensated
            total += min(max(e * share, lo), hi)
        if total > 1.0:
            b = c
        else:
            a = c
    return a, b
