"""Return and risk ratios of daily equity returns: Sharpe, Sortino, Omega, VaR, ES, and CAGR.

Every function takes daily simple returns (fractions, one per UTC day) and answers None when the
figure is undefined: fewer than ``MIN_DAYS`` returns, or 0 / 0. A positive figure over a zero
denominator (no losing day, no downside) is ``math.inf``.
"""

from __future__ import annotations

import math

import numpy as np

from core.domain.market import FloatArray

DAYS_PER_YEAR = 365  # crypto trades every calendar day
YEAR_MS = DAYS_PER_YEAR * 86_400_000
MIN_DAYS = 2
_FLAT_STD = 1e-12  # a daily std below this is numerical noise on a flat curve


def ratio_or_inf(num: float, den: float) -> float | None:
    """Return num / den; inf when den is 0 and num > 0; None when den is 0 and num <= 0."""
    if den > 0:
        return num / den
    return math.inf if num > 0 else None


def sharpe(returns: FloatArray) -> float | None:
    """Return mean / sample std (ddof=1) of daily returns times sqrt(365); risk-free rate 0."""
    if len(returns) < MIN_DAYS:
        return None
    std = float(np.std(returns, ddof=1))
    if std < _FLAT_STD:
        return None
    return float(np.mean(returns)) / std * math.sqrt(DAYS_PER_YEAR)


def sortino(returns: FloatArray) -> float | None:
    """Return mean / downside deviation times sqrt(365); target 0.

    Downside deviation = sqrt(mean(min(r, 0) ** 2)) over all days (not only the losing ones).
    """
    if len(returns) < MIN_DAYS:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    mean = float(np.mean(returns))
    if downside < _FLAT_STD:
        return math.inf if mean > 0 else None
    return mean / downside * math.sqrt(DAYS_PER_YEAR)


def omega(returns: FloatArray, threshold: float = 0.0) -> float | None:
    """Return the sum of gains above ``threshold`` over the sum of shortfalls below it."""
    if len(returns) < MIN_DAYS:
        return None
    excess = returns - threshold
    gains = float(excess[excess > 0].sum())
    losses = float(-excess[excess < 0].sum())
    return ratio_or_inf(gains, losses)


def var_es(returns: FloatArray, level_pct: int = 95) -> tuple[float | None, float | None]:
    """Return historical (VaR, ES) in percent of equity; positive numbers are losses.

    With n returns sorted ascending and k = ceil(n * (100 - level_pct) / 100) (at least 1), VaR is
    the loss of the k-th worst day and ES the mean loss of the k worst days.
    """
    n = len(returns)
    if n < MIN_DAYS:
        return None, None
    tail = 100 - level_pct
    k = max(1, (n * tail + 99) // 100)  # integer ceil: no float surprises at n * 0.05
    worst = np.sort(returns)[:k]
    return float(-worst[-1]) * 100.0, float(-np.mean(worst)) * 100.0


def cagr_pct(start_balance: float, final_balance: float, span_ms: int) -> float | None:
    """Return the compound annual growth rate in percent over ``span_ms`` (365-day years).

    None for spans under one day (the annualised figure would be noise); -100 when the account is
    gone (final balance <= 0).
    """
    if span_ms < 86_400_000 or start_balance <= 0:
        return None
    if final_balance <= 0:
        return -100.0
    growth = math.pow(final_balance / start_balance, YEAR_MS / span_ms)
    return (growth - 1.0) * 100.0
