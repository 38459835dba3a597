"""Out-of-sample scores of P(up) against resolved labels, and how far they are from chance.

``score`` turns one model's predictions on the rows it predicted out of sample (each symbol's
rows in time order, kept apart) into a ``ScoreCard``: accuracy and balanced accuracy at 0.5,
log-loss and Brier against a constant at the rows' own base rate, ROC AUC, the rows at the
trading threshold and how often their label was 1, and a calibration table.

Chance. The rows are not independent: labels overlap (each spans up to ``horizon`` candles)
and a model's output drifts slowly, so the textbook null standard deviation of the AUC,
``sqrt((n0 + n1 + 1) / (12 n0 n1))`` for independent rows, is too narrow. The noise band here
comes from the data itself: each symbol's labels are shifted circularly against its
predictions (by 5 % to 95 % of its rows, at least two horizons, ``shifts`` evenly spaced
offsets), which keeps the serial correlation of both and breaks only their alignment; the
standard deviation of those AUCs is the null ``sigma``, and their mean +- 2 sigma the band.
The mean is 0.5 for one symbol; pooled over several it is not when P's level and the base rate
differ between symbols together: that survives every shift, so it is no evidence of timing
(one bet per symbol), and a band at 0.5 would call it skill. Both sigmas are reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from core.ml.metrics import accuracy, log_loss, roc_auc

FloatArray = npt.NDArray[np.float64]
BAND_Z = 2.0  # the noise band is 0.5 +- BAND_Z null standard deviations
SHIFTS = 200
BINS = 10

Chance = Literal["above chance", "within noise of chance", "below chance", "undefined"]


def balanced_accuracy(p: npt.ArrayLike, y: npt.ArrayLike, threshold: float = 0.5) -> float | None:
    """Return the mean of the true-positive and true-negative rates of ``p >= threshold``
    (None when one class is absent)."""
    pp, yy = np.asarray(p, dtype=np.float64), np.asarray(y) == 1
    if yy.all() or not yy.any():
        return None
    said = pp >= threshold
    return float((said[yy].mean() + (~said[~yy]).mean()) / 2.0)


def brier(p: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Return the mean squared difference between P and the 0/1 outcome."""
    pp, yy = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.mean((pp - yy) ** 2))


def auc_iid_sigma(positives: int, negatives: int) -> float | None:
    """Return the AUC's standard deviation under the null for independent rows (no ties)."""
    if positives < 1 or negatives < 1:
        return None
    return math.sqrt((positives + negatives + 1) / (12.0 * positives * negatives))


def auc_shift_sigma(
    groups: Sequence[tuple[FloatArray, npt.NDArray[np.int8]]],
    *,
    horizon: int,
    shifts: int = SHIFTS,
) -> float | None:
    """Return the standard deviation of the pooled AUC under the null (``auc_shift_null``)."""
    null = auc_shift_null(groups, horizon=horizon, shifts=shifts)
    return None if null is None else null[1]


def auc_shift_null(
    groups: Sequence[tuple[FloatArray, npt.NDArray[np.int8]]],
    *,
    horizon: int,
    shifts: int = SHIFTS,
) -> tuple[float, float] | None:
    """Return the mean and standard deviation of the pooled AUC with each group's labels
    shifted circularly against its predictions (see the module docstring); None when a group
    is too short to shift by two horizons both ways, or a class is absent."""
    lengths = [len(y) for _, y in groups]
    if not lengths or min(lengths) < 4 * horizon + 2 or shifts < 2:
        return None
    p = np.concatenate([g[0] for g in groups])
    aucs = []
    for frac in np.linspace(0.0, 1.0, shifts):
        rolled = []
        for (_, y), n in zip(groups, lengths, strict=True):
            lo = max(0.05 * n, 2.0 * horizon)
            rolled.append(np.roll(y, round(lo + frac * (n - 2.0 * lo))))
        auc = roc_auc(p, np.concatenate(rolled))
        if auc is None:
            return None
        aucs.append(auc)
    return float(np.mean(aucs)), float(np.std(aucs, ddof=1))


def versus_chance(
    auc: float | None, sigma: float | None, z: float = BAND_Z, centre: float = 0.5
) -> Chance:
    """Say where ``auc`` lies against the band ``centre`` +- z sigma."""
    if auc is None or sigma is None:
        return "undefined"
    if auc > centre + z * sigma:
        return "above chance"
    if auc < centre - z * sigma:
        return "below chance"
    return "within noise of chance"


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationBin:
    """The rows whose P fell in ``[lo, hi)`` (the last bin includes 1): how many, their mean
    P, the share whose label was 1 and two standard errors of that share (binomial, of the
    share shrunk to (k + 1) / (n + 2), so a bin of a few rows all alike is not +-0)."""

    lo: float
    hi: float
    rows: int
    mean_p: float | None
    observed: float | None
    observed_2se: float | None


def calibration_table(
    p: npt.ArrayLike, y: npt.ArrayLike, bins: int = BINS
) -> tuple[CalibrationBin, ...]:
    """Return ``bins`` equal-width bins of P over [0, 1] with what was observed in each."""
    pp, yy = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    which = np.clip((pp * bins).astype(np.int64), 0, bins - 1)
    out = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        rate = float(yy[inside].mean()) if n else None
        shrunk = (float(yy[inside].sum()) + 1.0) / (n + 2.0)
        out.append(
            CalibrationBin(
                lo=b / bins,
                hi=(b + 1) / bins,
                rows=n,
                mean_p=float(pp[inside].mean()) if n else None,
                observed=rate,
                observed_2se=None if not n else 2.0 * math.sqrt(shrunk * (1 - shrunk) / n),
            )
        )
    return tuple(out)


def calibration_error(table: Sequence[CalibrationBin]) -> float | None:
    """Return the expected calibration error: the row-weighted mean |observed - mean P|."""
    total = sum(b.rows for b in table)
    if not total:
        return None
    return (
        sum(
            b.rows * abs(b.observed - b.mean_p)
            for b in table
            if b.observed is not None and b.mean_p is not None
        )
        / total
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreCard:
    """One model's out-of-sample scores (see ``score``)."""

    name: str
    rows: int
    positives: int
    base_rate: float
    accuracy: float  # P >= 0.5 agrees with the label
    majority_accuracy: float  # always saying the more frequent class
    balanced_accuracy: float | None
    log_loss: float
    log_loss_constant: float  # a constant at the rows' own base rate (not knowable before)
    brier: float
    brier_constant: float
    auc: float | None
    auc_null_mean: float | None  # the null's mean AUC from circular shifts: the band's centre
    auc_sigma: float | None  # the null's standard deviation from circular shifts
    auc_iid_sigma: float | None  # the same for independent rows (too narrow here)
    chance: Chance
    threshold: float
    rows_at_threshold: int  # rows with P >= threshold: where the strategy would enter
    hit_rate_at_threshold: float | None  # the share of them whose label was 1
    calibration: tuple[CalibrationBin, ...]
    calibration_error: float | None

    @property
    def band(self) -> tuple[float, float] | None:
        """Return the noise band of the AUC, the null's mean +- 2 sigma."""
        if self.auc_sigma is None or self.auc_null_mean is None:
            return None
        half = BAND_Z * self.auc_sigma
        return self.auc_null_mean - half, self.auc_null_mean + half


def score(
    name: str,
    groups: Sequence[tuple[FloatArray, npt.NDArray[np.int8]]],
    *,
    threshold: float,
    horizon: int,
    shifts: int = SHIFTS,
    bins: int = BINS,
) -> ScoreCard:
    """Score ``(p, y)`` per group (a symbol's out-of-sample rows in time order), pooled."""
    groups = [(np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.int8)) for p, y in groups]
    if not groups or not sum(len(y) for _, y in groups):
        raise ValueError(f"{name}: no rows to score")
    p = np.concatenate([g[0] for g in groups])
    y = np.concatenate([g[1] for g in groups])
    if not np.isfinite(p).all():
        raise ValueError(f"{name}: predictions must be finite on the rows scored")
    base = float(y.mean())
    positives = int(y.sum())
    auc = roc_auc(p, y)
    null = auc_shift_null(groups, horizon=horizon, shifts=shifts)
    centre, sigma = (None, None) if null is None else null
    at = p >= threshold
    table = calibration_table(p, y, bins)
    return ScoreCard(
        name=name,
        rows=len(y),
        positives=positives,
        base_rate=base,
        accuracy=accuracy(p, y),
        majority_accuracy=max(base, 1.0 - base),
        balanced_accuracy=balanced_accuracy(p, y),
        log_loss=log_loss(p, y),
        log_loss_constant=log_loss(np.full(len(y), base), y),
        brier=brier(p, y),
        brier_constant=base * (1.0 - base),
        auc=auc,
        auc_null_mean=centre,
        auc_sigma=sigma,
        auc_iid_sigma=auc_iid_sigma(positives, len(y) - positives),
        chance=versus_chance(auc, sigma, centre=0.5 if centre is None else centre),
        threshold=threshold,
        rows_at_threshold=int(at.sum()),
        hit_rate_at_threshold=float(y[at].mean()) if at.any() else None,
        calibration=table,
        calibration_error=calibration_error(table),
    )
