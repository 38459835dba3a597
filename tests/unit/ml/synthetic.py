"""Tiny synthetic data with a planted signal: y = 1 when x0 (plus noise) is above 0."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.ml.member import Member
from core.ml.members.lgbm import LgbmMember, LgbmParams
from core.ml.members.xgb import XgbMember, XgbParams

COLUMNS = ("x0", "x1", "x2", "x3", "x4", "x5")
HASH = "fs-test-0001"
TREES = 20  # small: every fit in these tests takes milliseconds
# One thread: on tiny data two threads cost 10-20x more when the other core is busy (OpenMP
# waits); the determinism test runs the production setting of two.
THREADS = 1


def planted(
    n: int, seed: int = 0, noise: float = 0.5
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Return ``n`` rows of six features, of which only x0 carries the label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(COLUMNS)))
    y = (x[:, 0] + noise * rng.normal(size=n) > 0).astype(np.int64)
    return x, y


def small(name: str, seed: int = 0, threads: int = THREADS) -> Member:
    """Return an unfitted member with few trees."""
    kw = {"n_estimators": TREES, "seed": seed, "early_stopping_rounds": 5, "n_jobs": threads}
    if name == "xgb":
        return XgbMember(XgbParams(**kw))
    return LgbmMember(LgbmParams(**kw))


def fitted(name: str, seed: int = 0, threads: int = THREADS) -> Member:
    """Return a member fitted on 1,000 planted rows."""
    member = small(name, seed, threads)
    x, y = planted(1000)
    member.fit(x, y, columns=COLUMNS, feature_set_hash=HASH)
    return member
