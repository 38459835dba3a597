"""Is a member's output usable? Degenerate output takes a member out of the ensemble.

The system we replace served a PatchTST stuck at 0.615 and an N-HiTS that said SELL 99.6 % of
the time while its dashboards showed them active. ``health`` looks at a batch of
probabilities (a validation window, or the latest predictions) and says what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MIN_STD = 1e-3  # a classifier whose P(up) moves less than 0.1 point over a batch says nothing
MIN_ROWS = 2


@dataclass(frozen=True, slots=True)
class Health:
    """``ok`` and, when not, the reason (for the exclusion event and ``qt models list``)."""

    ok: bool
    reason: str = ""


def health(
    probabilities: npt.ArrayLike,
    *,
    min_std: float = MIN_STD,
    min_rows: int = MIN_ROWS,
    max_one_side: float | None = None,
) -> Health:
    """Return whether a batch of P(class 1) is usable: finite, within [0, 1], and not
    near-constant (standard deviation of at least ``min_std`` over ``min_rows`` or more).

    ``max_one_side`` (e.g. 0.99) also flags a batch of which more than that share falls on one
    side of 0.5; off by default, since a rare label can honestly keep P(up) below 0.5.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 1:
        return Health(False, f"output has shape {p.shape}, one probability per row expected")
    if p.size < min_rows:
        return Health(False, f"{p.size} predictions, at least {min_rows} needed to judge")
    nan, inf = int(np.isnan(p).sum()), int(np.isinf(p).sum())
    if nan or inf:
        return Health(False, f"{nan} NaN and {inf} infinite of {p.size} predictions")
    outside = int(((p < 0.0) | (p > 1.0)).sum())
    if outside:
        return Health(
            False,
            f"{outside} of {p.size} predictions outside [0, 1] (min {p.min():.4g}, "
            f"max {p.max():.4g})",
        )
    std = float(p.std())
    if std < min_std:
        return Health(
            False,
            f"near-constant output: std {std:.2g} < {min_std:g} over {p.size} predictions "
            f"(mean {p.mean():.4f})",
        )
    if max_one_side is not None:
        up = float((p > 0.5).mean())
        if max(up, 1.0 - up) > max_one_side:
            return Health(
                False,
                f"one-sided output: {max(up, 1.0 - up):.1%} of {p.size} predictions on the "
                f"{'up' if up > 0.5 else 'down'} side of 0.5 (limit {max_one_side:.1%})",
            )
    return Health(True)


def healthy_on_validation(metrics: Mapping[str, float]) -> bool:
    """Return whether a fit's recorded validation output was healthy (``fit_member``'s
    ``healthy`` metric; a version recorded before it was measured counts as healthy)."""
    return metrics.get("healthy", 1.0) >= 1.0
