"""Tiny synthetic data with a planted signal: y = 1 when x0 (plus noise) is above 0.

The torch forecasters read x0 as the one-candle return (it carries nothing for them here:
these rows serve the interface and artifact tests; ``forecast_data`` plants their signal).
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from core.ml.member import Member
from core.ml.members.forecaster import ForecastMember
from core.ml.members.lgbm import LgbmMember, LgbmParams
from core.ml.members.nhits import NhitsMember, NhitsParams
from core.ml.members.patchtst import PatchTstMember, PatchTstParams
from core.ml.members.xgb import XgbMember, XgbParams

COLUMNS = ("x0", "x1", "x2", "x3", "x4", "x5")
HASH = "fs-test-0001"
TREES = 20  # small: every fit in these tests takes milliseconds
# One thread: on tiny data two threads cost 10-20x more when the other core is busy (OpenMP
# waits); the determinism test runs the production setting of two.
THREADS = 1
GBDT = ("lgbm", "xgb")
FORECASTERS = ("nhits", "patchtst")
# A few epochs of networks of a few thousand weights: each fit takes a fraction of a second.
TINY = {"window": 32, "horizon": 4, "epochs": 3, "warm_epochs": 2, "batch_size": 128}


def planted(
    n: int, seed: int = 0, noise: float = 0.5
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Return ``n`` rows of six features, of which only x0 carries the label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(COLUMNS)))
    y = (x[:, 0] + noise * rng.normal(size=n) > 0).astype(np.int64)
    return x, y


def tiny_forecaster(
    name: str, seed: int = 0, threads: int = THREADS, **kw: object
) -> ForecastMember[NhitsParams] | ForecastMember[PatchTstParams]:
    """Return an unfitted torch member with a small window and network (``kw`` override)."""
    args: dict[str, object] = {**TINY, "seed": seed, "n_threads": threads, **kw}
    if name == "nhits":
        nhits = {"pools": (4, 2, 1), "downsample": (2, 1, 1), "hidden": 32}
        return NhitsMember(NhitsParams(**{**nhits, **args}))
    patchtst = {"patch": 8, "stride": 4, "d_model": 16, "heads": 2, "layers": 1, "ff": 32}
    return PatchTstMember(PatchTstParams(**{**patchtst, **args}))


def small(name: str, seed: int = 0, threads: int = THREADS) -> Member:
    """Return an unfitted member with few trees (or a tiny network)."""
    if name in FORECASTERS:
        return tiny_forecaster(name, seed, threads, returns_column="x0", feature_columns=("x1",))
    kw = {"n_estimators": TREES, "seed": seed, "early_stopping_rounds": 5, "n_jobs": threads}
    if name == "xgb":
        return XgbMember(XgbParams(**kw))
    return LgbmMember(LgbmParams(**kw))


def fitted(name: str, seed: int = 0, threads: int = THREADS) -> Member:
    """Return a member fitted on 1,000 planted rows."""
    if name in FORECASTERS:
        return _fitted_forecaster(name, seed, threads)
    member = small(name, seed, threads)
    x, y = planted(1000)
    member.fit(x, y, columns=COLUMNS, feature_set_hash=HASH)
    return member


@functools.cache  # torch fits are the slow part of these tests; nothing mutates a member
def _fitted_forecaster(name: str, seed: int, threads: int) -> Member:
    member = small(name, seed, threads)
    x, y = planted(1000)
    xv, yv = planted(300, seed=9)
    member.fit(x, y, columns=COLUMNS, feature_set_hash=HASH, eval_set=(xv, yv))
    return member
