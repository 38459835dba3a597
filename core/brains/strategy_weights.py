"""The Strategy Brain's ensemble weights: bounded targets, then hysteresis so they don't thrash.

A target is the ensemble's own rule (``core.ml.ensemble_weights.bounded_softmax`` of each
member's negative mean log-loss over the temperature): the brain recommends what the ensemble
would weigh, on the review window's record. A member keeps its current weight while its target
is within ``band`` of it; the members whose target moved further take theirs, shifted by one
common amount so that all weights again sum to 1 inside the bounds (the held ones stay where
they were). Fed its own output, the rule moves nothing (tested). Bounds are relaxed to
1/k where k members cannot meet them, as the ensemble does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from core.ml.ensemble_weights import bounded_softmax

SUM_TOL = 1e-9  # weights summing to 1 within this are normalised; the same within it: unchanged
STEPS = 200


def relaxed_bounds(k: int, min_weight: float, max_weight: float) -> tuple[float, float]:
    """Return the bounds ``k`` members can meet (widened to 1/k, as the ensemble does)."""
    share = 1.0 / k if k else 1.0
    return min(min_weight, share), max(max_weight, share)


def target_weights(
    log_loss: Mapping[str, float], *, temperature: float, min_weight: float, max_weight: float
) -> dict[str, float]:
    """Return the ensemble's bounded softmax of -log_loss / temperature, per member."""
    names = sorted(log_loss)
    if not names:
        return {}
    logits = np.array([[-log_loss[m] / temperature for m in names]], dtype=np.float64)
    active = np.ones_like(logits, dtype=np.bool_)
    w = bounded_softmax(logits, active, min_weight=min_weight, max_weight=max_weight)[0]
    return {m: float(x) for m, x in zip(names, w, strict=True)}


def equal_weights(names: Sequence[str]) -> dict[str, float]:
    """Return 1/k each."""
    return {m: 1.0 / len(names) for m in names}


def is_valid(
    weights: Mapping[str, float], names: Sequence[str], min_weight: float, max_weight: float
) -> bool:
    """Return whether ``weights`` covers exactly ``names``, within the bounds, summing to 1."""
    if set(weights) != set(names) or not names:
        return False
    lo, hi = relaxed_bounds(len(names), min_weight, max_weight)
    values = list(weights.values())
    return all(lo - SUM_TOL <= w <= hi + SUM_TOL for w in values) and (
        abs(sum(values) - 1.0) <= SUM_TOL
    )


def _shift_into(targets: list[float], total: float, lo: float, hi: float) -> list[float] | None:
    """Return clip(t + c, lo, hi) summing to ``total`` (c found by bisection), None if no c can."""
    k = len(targets)
    if not k * lo - SUM_TOL <= total <= k * hi + SUM_TOL:
        return None
    a, b = lo - max(targets) - 1.0, hi - min(targets) + 1.0  # all at lo .. all at hi
    for _ in range(STEPS):
        c = 0.5 * (a + b)
        if c in (a, b):
            break
        if sum(min(max(t + c, lo), hi) for t in targets) > total:
            b = c
        else:
            a = c
    return [min(max(t + 0.5 * (a + b), lo), hi) for t in targets]


def with_hysteresis(
    target: Mapping[str, float],
    current: Mapping[str, float],
    *,
    band: float,
    min_weight: float,
    max_weight: float,
) -> tuple[dict[str, float], tuple[str, ...]]:
    """Return the new weights and the members that moved (module docstring). ``current`` must
    be valid for ``target``'s members (``is_valid``); where the held weights leave the others
    no room inside the bounds, every member takes its target."""
    names = sorted(target)
    lo, hi = relaxed_bounds(len(names), min_weight, max_weight)
    moved = [m for m in names if abs(target[m] - current[m]) > band]
    if not moved:
        return {m: current[m] for m in names}, ()
    held = sum(current[m] for m in names if m not in moved)
    shifted = _shift_into([target[m] for m in moved], 1.0 - held, lo, hi)
    new = dict(current) if shifted is not None else dict(target)
    if shifted is not None:
        new.update(zip(moved, shifted, strict=True))
    total = sum(new.values())
    new = {m: new[m] / total for m in names}
    if all(abs(new[m] - current[m]) <= SUM_TOL for m in names):
        return {m: current[m] for m in names}, ()
    return new, tuple(m for m in names if abs(new[m] - current[m]) > SUM_TOL)
