"""Is a Sharpe ratio more than luck? The Probabilistic and the Deflated Sharpe Ratio.

Bailey and López de Prado, "The Sharpe Ratio Efficient Frontier" (2012) and "The Deflated
Sharpe Ratio" (2014). Everything is per period (daily returns here, the report's Sharpe
before its sqrt(365)):

- ``PSR(SR*) = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))``: the
  probability that the true Sharpe exceeds ``SR*``, given the estimate ``SR`` (mean over the
  sample standard deviation) from ``n`` returns of skewness ``g3`` and kurtosis ``g4`` (3 for
  a normal distribution; fat tails and negative skew widen the estimate's error).
- ``SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))``: the expected
  maximum of ``N`` independent trials' Sharpe estimates whose variance across trials is ``V``
  (gamma is the Euler-Mascheroni constant), the best a strategy with no edge would show after
  ``N`` tries. ``DSR = PSR(SR0)``. With one trial there is nothing to deflate: SR0 = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

EULER_GAMMA = 0.5772156649015329
_FLAT = 1e-12
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True, kw_only=True)
class SharpeMoments:
    """A return series' per-period Sharpe estimate and the moments its error depends on."""

    n: int
    sharpe: float  # mean / sample standard deviation (ddof=1), per period
    skew: float  # third standardised moment
    kurtosis: float  # fourth standardised moment, 3 for a normal distribution


def sharpe_moments(returns: npt.ArrayLike) -> SharpeMoments | None:
    """Return the moments of ``returns`` (None: fewer than 3, or flat)."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 3:
        return None
    sd = float(r.std(ddof=1))
    if sd < _FLAT:
        return None
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    return SharpeMoments(
        n=len(r),
        sharpe=float(r.mean()) / sd,
        skew=float(np.mean(centred**3)) / m2**1.5,
        kurtosis=float(np.mean(centred**4)) / m2**2,
    )


def probabilistic_sharpe(m: SharpeMoments, benchmark: float = 0.0) -> float:
    """Return PSR(benchmark): P(true per-period Sharpe > ``benchmark``)."""
    sr = m.sharpe
    spread = 1.0 - m.skew * sr + (m.kurtosis - 1.0) / 4.0 * sr * sr
    if spread <= 0.0:  # only for degenerate moments: the estimate has no error
        return 1.0 if sr > benchmark else 0.0
    return _NORMAL.cdf((sr - benchmark) * math.sqrt(m.n - 1) / math.sqrt(spread))


def expected_max_sharpe(trials: int, variance: float) -> float:
    """Return SR0, the expected maximum Sharpe of ``trials`` luck-only trials whose Sharpe
    estimates vary across trials by ``variance`` (0 for one trial)."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, was {trials}")
    if variance < 0:
        raise ValueError(f"variance must be >= 0, was {variance}")
    if trials == 1 or variance == 0.0:
        return 0.0
    return math.sqrt(variance) * (
        (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / trials)
        + EULER_GAMMA * _NORMAL.inv_cdf(1.0 - 1.0 / (trials * math.e))
    )


def trial_variance(sharpes: Sequence[float]) -> float:
    """Return the sample variance (ddof=1) of the trials' Sharpe estimates (0 for fewer
    than two)."""
    if len(sharpes) < 2:
        return 0.0
    return float(np.var(np.asarray(sharpes, dtype=np.float64), ddof=1))


def deflated_sharpe(m: SharpeMoments, trials: int, variance: float) -> float:
    """Return DSR: PSR against the expected maximum of ``trials`` luck-only Sharpes."""
    return probabilistic_sharpe(m, expected_max_sharpe(trials, variance))
