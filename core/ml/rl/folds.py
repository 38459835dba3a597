"""Walk-forward folds over candidate trades, purged: a fold trains only on what had closed.

The candidates (in decision order) are cut into ``folds`` parts of about equal count, a cut
moved back to the first candidate decided at the same time so that simultaneous decisions
stay together. The first part only trains; each later one is tested by a policy trained on
the candidates before it whose trades had closed by the fold's first decision: a trade
still open then has an outcome nobody knew at the start of the fold (the purge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError, DataError
from core.ml.rl.candidates import Candidates

Indices = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingFold:
    """One out-of-sample fold: what trains for it and what it tests."""

    start_ms: int  # its first test candidate's decision
    train: Indices  # candidates decided before start_ms and closed by it
    test: Indices  # consecutive candidates from start_ms to the next fold's


def sizing_folds(candidates: Candidates, folds: int, *, min_train: int) -> tuple[SizingFold, ...]:
    """Return the ``folds - 1`` test folds (see module); a fold with fewer than
    ``min_train`` training candidates, or an empty one, is a ``DataError``."""
    if folds < 2 or min_train < 1:
        raise ConfigError(f"need folds >= 2 and min_train >= 1, were {folds} and {min_train}")
    n = len(candidates)
    decision = candidates.decision_ms
    cuts = [int(np.searchsorted(decision, decision[n * k // folds])) for k in range(1, folds)]
    edges = sorted(set(cuts))
    if len(edges) < len(cuts) or edges[0] == 0:
        raise DataError(f"{n} candidates cannot make {folds} folds (too few decision times)")
    out = []
    for i, (lo, hi) in enumerate(zip(edges, [*edges[1:], n], strict=True), start=1):
        start = int(decision[lo])
        train = np.flatnonzero(candidates.close_ms[:lo] <= start).astype(np.int64)
        if len(train) < min_train:
            raise DataError(
                f"sizing fold {i} has {len(train)} closed trades to train on, fewer than "
                f"{min_train}: use fewer folds or a longer timerange"
            )
        out.append(SizingFold(start_ms=start, train=train, test=np.arange(lo, hi, dtype=np.int64)))
    return tuple(out)
