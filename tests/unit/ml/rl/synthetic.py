"""Synthetic candidate trades for the RL sizing tests, generated here from a seed."""

from __future__ import annotations

import numpy as np

from core.ml.rl.candidates import Candidates

HOUR_MS = 3_600_000
START_MS = 1_700_000_000_000


def candidates(n: int, seed: int, *, edge: float = 0.008, cost: float = 0.006) -> Candidates:
    """Return ``n`` candidates whose confidence says how they end: above 0.5 they win
    ``edge`` on average, below it they lose ``cost``; noise hides it from any one trade.
    Trades overlap (a close comes 1-23 hours after a decision, decisions 2-11 hours apart)."""
    rng = np.random.default_rng(seed)
    decision = START_MS + np.cumsum(rng.integers(2, 12, n)) * HOUR_MS
    confidence = rng.uniform(0.0, 1.0, n)
    outcome = np.where(confidence > 0.5, edge, -cost) + rng.normal(0.0, 0.004, n)
    return Candidates(
        decision_ms=decision,
        close_ms=decision + rng.integers(1, 24, n) * HOUR_MS,
        features=np.column_stack([confidence, rng.normal(size=n)]),
        feature_names=("confidence", "noise"),
        unit_outcome=outcome,
    )


def with_volatility(n: int, seed: int, *, edge: float = 0.008, cost: float = 0.006) -> Candidates:
    """Return ``candidates(n, seed, ...)`` with a realised volatility feature (daily percent,
    around 3, saying nothing of the outcome) between the confidence and the noise."""
    base = candidates(n, seed, edge=edge, cost=cost)
    vol = np.random.default_rng([seed, 1]).lognormal(np.log(3.0), 0.3, n)
    return Candidates(
        decision_ms=base.decision_ms,
        close_ms=base.close_ms,
        features=np.column_stack([base.features[:, 0], vol, base.features[:, 1]]),
        feature_names=("confidence", "realised_vol", "noise"),
        unit_outcome=base.unit_outcome,
    )
