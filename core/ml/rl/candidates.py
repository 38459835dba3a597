"""The candidate trades an RL sizing episode replays, each with its outcome at size 1.

A candidate is an entry the engine would take (from the walk-forward's signals): when it was
decided, when its trade closed (the outcome is known from then on), the state features known
at the decision (confidence, member agreement, regime, realised volatility, risk score... as
the caller computed them from data before the decision) and its outcome per unit size: the
trade's return on equity at size multiplier 1, fees, slippage and funding included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from core.errors import DataError

FloatMatrix = npt.NDArray[np.float64]
FloatVector = npt.NDArray[np.float64]
Millis = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidates:
    """Candidate trades in decision order; arrays of one row per candidate (see module)."""

    decision_ms: Millis
    close_ms: Millis  # when the trade's exit filled: its outcome is known from then on
    features: FloatMatrix  # (candidates, len(feature_names)), known at the decision
    feature_names: tuple[str, ...]
    unit_outcome: FloatVector  # return on equity at multiplier 1, all costs included

    def __post_init__(self) -> None:
        decision = np.asarray(self.decision_ms, dtype=np.int64)
        close = np.asarray(self.close_ms, dtype=np.int64)
        features = np.ascontiguousarray(self.features, dtype=np.float64)
        outcome = np.asarray(self.unit_outcome, dtype=np.float64)
        names = tuple(self.feature_names)
        n = decision.shape[0] if decision.ndim == 1 else -1
        if n < 1 or close.shape != (n,) or outcome.shape != (n,):
            raise DataError(
                "candidates need 1-D decision_ms, close_ms and unit_outcome of one length >= 1, "
                f"were shapes {decision.shape}, {close.shape} and {outcome.shape}"
            )
        if features.shape != (n, len(names)) or len(set(names)) != len(names):
            raise DataError(
                f"features must be ({n}, {len(names)}) with distinct names, were "
                f"{features.shape} named {names}"
            )
        if (np.diff(decision) < 0).any():
            raise DataError("candidates must be in decision order (decision_ms not decreasing)")
        if (close <= decision).any():
            first = int(np.flatnonzero(close <= decision)[0])
            raise DataError(f"candidate {first} closes at or before its decision")
        if not (np.isfinite(features).all() and np.isfinite(outcome).all()):
            raise DataError("candidate features and outcomes must be finite")
        if (outcome <= -1).any():
            raise DataError("a unit outcome of -1 or less loses the whole equity at size 1")
        object.__setattr__(self, "decision_ms", decision)
        object.__setattr__(self, "close_ms", close)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "unit_outcome", outcome)
        object.__setattr__(self, "feature_names", names)

    def __len__(self) -> int:
        return int(self.decision_ms.shape[0])

    def take(self, indices: npt.ArrayLike) -> Candidates:
        """Return the candidates at ``indices`` (increasing: a fold of the sequence)."""
        rows = np.asarray(indices, dtype=np.int64)
        return Candidates(
            decision_ms=self.decision_ms[rows],
            close_ms=self.close_ms[rows],
            features=self.features[rows],
            feature_names=self.feature_names,
            unit_outcome=self.unit_outcome[rows],
        )

    def with_outcomes(self, unit_outcome: Sequence[float] | FloatVector) -> Candidates:
        """Return the same candidates with other outcomes (a shuffled-reward control)."""
        return replace(self, unit_outcome=np.asarray(unit_outcome, dtype=np.float64))
