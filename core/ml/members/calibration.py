"""Platt scaling in numpy: P(label 1) = sigmoid(a * z + b), z the standardised forecast.

The torch members forecast a return, not a probability; this turns the forecast into P(up).
It is fitted on the validation window only (the rows the network did not train on): fitted on
the training rows it would trust an over-fitted forecast. Platt's smoothed targets
((n1 + 1) / (n1 + 2) and 1 / (n0 + 2)) and a small ridge on ``a`` keep it finite on separable
or one-class data. Plain numbers, saved in the member's JSON; no sklearn, no pickle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import ArtifactError

Vector = npt.NDArray[np.float64]
RIDGE = 1e-3
STEPS = 50


@dataclass(frozen=True, slots=True)
class Platt:
    """A fitted calibration: the forecast's centre and spread on validation, then a and b."""

    centre: float
    spread: float
    a: float
    b: float
    rows: int  # validation rows it was fitted on

    @classmethod
    def fit(cls, forecast: Vector, y: Vector) -> Platt:
        """Return the calibration of ``forecast`` against labels ``y`` (0/1) by Newton steps."""
        centre = float(forecast.mean())
        spread = float(forecast.std())
        spread = spread if spread > 0 else 1.0  # a collapsed forecast: P stays constant
        z = (forecast - centre) / spread
        n1 = float(y.sum())
        n0 = len(y) - n1
        t = np.where(y > 0.5, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
        w = np.zeros(2)  # a, b
        design = np.column_stack([z, np.ones_like(z)])
        for _ in range(STEPS):
            p = _sigmoid(design @ w)
            grad = design.T @ (p - t) + RIDGE * np.array([w[0], 0.0])
            hess = (design * (p * (1 - p))[:, None]).T @ design + RIDGE * np.eye(2)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-10:
                break
        return cls(centre, spread, float(w[0]), float(w[1]), len(y))

    def probability(self, forecast: Vector) -> Vector:
        """Return P(label 1) of each forecast."""
        return _sigmoid(self.a * (forecast - self.centre) / self.spread + self.b)

    def to_json(self) -> dict[str, Any]:
        """Return the parameters as a JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Platt:
        """Return the calibration in ``doc``; a malformed one is an ArtifactError."""
        try:
            out = cls(**doc)
            numbers = (out.centre, out.spread, out.a, out.b)
            if not all(isinstance(v, float | int) and math.isfinite(v) for v in numbers):
                raise ValueError("parameters must be finite numbers")
            if out.spread <= 0:
                raise ValueError("spread must be positive")
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: bad calibration: {exc}") from exc
        return out


def _sigmoid(v: Vector) -> Vector:
    out: Vector = 0.5 * (1.0 + np.tanh(0.5 * v))  # no overflow warning at large |v|
    return out
