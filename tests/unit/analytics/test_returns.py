"""Return ratios against values computed by hand from the formulas in the module docstring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.analytics.returns import cagr_pct, omega, ratio_or_inf, sharpe, sortino, var_es

R = np.array([0.01, -0.01, 0.02, 0.0])  # mean 0.005


def test_sharpe_known_value() -> None:
    # Sample variance: ((0.005)^2 + (0.015)^2 + (0.015)^2 + (0.005)^2) / 3 = 0.0005 / 3.
    expected = 0.005 / math.sqrt(0.0005 / 3) * math.sqrt(365)
    assert sharpe(R) == pytest.approx(expected)
    assert sharpe(R) == pytest.approx(7.3993, abs=1e-4)


def test_sortino_known_value() -> None:
    # Downside deviation over all 4 days: sqrt((0.01^2) / 4) = 0.005, equal to the mean.
    assert sortino(R) == pytest.approx(math.sqrt(365))


def test_omega_known_value() -> None:
    assert omega(R) == pytest.approx(0.03 / 0.01)


def test_ratios_without_downside_or_dispersion() -> None:
    ups = np.array([0.01, 0.02])
    flat = np.zeros(5)
    assert sortino(ups) == math.inf
    assert omega(ups) == math.inf
    assert sharpe(flat) is None
    assert sortino(flat) is None
    assert omega(flat) is None
    assert sharpe(np.full(3, 0.01)) is None  # constant returns: std 0, Sharpe undefined


def test_fewer_than_two_days_is_undefined() -> None:
    one = np.array([0.05])
    assert sharpe(one) is None
    assert sortino(one) is None
    assert omega(one) is None
    assert var_es(one) == (None, None)


def test_var_es_sixty_days_uses_the_three_worst() -> None:
    # k = ceil(60 * 5 / 100) = 3 (float arithmetic would give ceil(3.0000000000000004) = 4).
    returns = np.array([-0.05, -0.04, -0.03, -0.02] + [0.01] * 56)
    var, es = var_es(returns)
    assert var == pytest.approx(3.0)
    assert es == pytest.approx((5 + 4 + 3) / 3)


def test_var_es_twenty_days_is_the_worst_day() -> None:
    returns = np.array([0.02] * 18 + [-0.01, -0.07])
    assert var_es(returns) == (pytest.approx(7.0), pytest.approx(7.0))


def test_cagr_known_values() -> None:
    year_ms = 365 * 86_400_000
    assert cagr_pct(100.0, 121.0, year_ms) == pytest.approx(21.0)
    assert cagr_pct(100.0, 121.0, 2 * year_ms) == pytest.approx(10.0)
    assert cagr_pct(100.0, 121.0, 86_400_000 - 1) is None
    assert cagr_pct(100.0, 0.0, year_ms) == -100.0


def test_ratio_or_inf() -> None:
    assert ratio_or_inf(3.0, 2.0) == 1.5
    assert ratio_or_inf(3.0, 0.0) == math.inf
    assert ratio_or_inf(0.0, 0.0) is None
