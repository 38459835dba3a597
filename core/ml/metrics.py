"""Scores of P(class 1) against 0/1 outcomes: log-loss, accuracy, ROC AUC (numpy only).

Used on out-of-sample rows only (a validation window, resolved labels): a score on the rows a
model was fitted on says nothing about what it will do next.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

EPS = 1e-15  # probabilities are clipped to [EPS, 1 - EPS]: one confident miss is finite


def log_losses(p: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return each row's log-loss (natural log)."""
    pp = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    yy = np.asarray(y, dtype=np.float64)
    return np.asarray(-(yy * np.log(pp) + (1.0 - yy) * np.log1p(-pp)), dtype=np.float64)


def log_loss(p: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Return the mean log-loss."""
    return float(log_losses(p, y).mean())


def accuracy(p: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Return the share of rows where P >= 0.5 agrees with the outcome."""
    return float(((np.asarray(p) >= 0.5) == (np.asarray(y) == 1)).mean())


def roc_auc(p: npt.ArrayLike, y: npt.ArrayLike) -> float | None:
    """Return the ROC AUC (Mann-Whitney, ties counted half), None when one class is absent."""
    pp = np.asarray(p, dtype=np.float64)
    yy = np.asarray(y) == 1
    pos, neg = int(yy.sum()), int((~yy).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(pp, kind="stable")
    ranks = np.empty(len(pp), dtype=np.float64)
    ranks[order] = np.arange(1, len(pp) + 1, dtype=np.float64)
    # average the ranks of tied scores
    _, inverse, counts = np.unique(pp, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    return float((ranks[yy].sum() - pos * (pos + 1) / 2) / (pos * neg))
