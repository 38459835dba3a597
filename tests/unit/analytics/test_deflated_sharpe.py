"""The Probabilistic and Deflated Sharpe Ratios against hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from core.analytics.deflated_sharpe import (
    SharpeMoments,
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    sharpe_moments,
    trial_variance,
)


def test_psr_of_normal_returns_by_hand() -> None:
    # SR 0.1 over 101 days, normal (skew 0, kurtosis 3):
    # z = 0.1 * sqrt(100) / sqrt(1 - 0 + (3 - 1) / 4 * 0.01) = 1 / sqrt(1.005) = 0.997509
    # PSR = Phi(0.997509) = 0.840741
    m = SharpeMoments(n=101, sharpe=0.1, skew=0.0, kurtosis=3.0)
    assert probabilistic_sharpe(m) == pytest.approx(0.840741, abs=1e-6)


def test_negative_skew_and_fat_tails_widen_the_error() -> None:
    # SR 0.1 over 253 days, skew -1, kurtosis 6:
    # z = 0.1 * sqrt(252) / sqrt(1 + 0.1 + 5 / 4 * 0.01) = 1.587451 / 1.054751 = 1.505048
    # PSR = Phi(1.505048) = 0.933844; normal returns of the same Sharpe: Phi(1.5835) = 0.9434
    skewed = SharpeMoments(n=253, sharpe=0.1, skew=-1.0, kurtosis=6.0)
    normal = SharpeMoments(n=253, sharpe=0.1, skew=0.0, kurtosis=3.0)
    assert probabilistic_sharpe(skewed) == pytest.approx(0.933844, abs=1e-6)
    assert probabilistic_sharpe(skewed) < probabilistic_sharpe(normal)


def test_psr_against_a_benchmark_at_the_estimate_is_one_half() -> None:
    m = SharpeMoments(n=500, sharpe=0.07, skew=-0.3, kurtosis=5.0)
    assert probabilistic_sharpe(m, benchmark=0.07) == pytest.approx(0.5)


def test_expected_maximum_of_ten_trials_by_hand() -> None:
    # N = 10, V = 0.0025 (a standard deviation of 0.05 across the trials' Sharpes):
    # Phi^-1(1 - 1/10) = 1.281552, Phi^-1(1 - 1/(10 e)) = 1.789242
    # SR0 = 0.05 * (0.422784 * 1.281552 + 0.577216 * 1.789242) = 0.078730
    assert expected_max_sharpe(10, 0.0025) == pytest.approx(0.078730, abs=1e-6)


def test_the_expected_maximum_is_close_to_a_simulated_one() -> None:
    rng = np.random.default_rng(0)
    for trials in (5, 20, 100):
        simulated = rng.normal(0.0, 0.05, size=(20_000, trials)).max(axis=1).mean()
        assert expected_max_sharpe(trials, 0.0025) == pytest.approx(simulated, rel=0.05)


def test_dsr_by_hand_and_with_one_trial_it_is_the_psr() -> None:
    m = SharpeMoments(n=253, sharpe=0.1, skew=-1.0, kurtosis=6.0)
    # against SR0 = 0.078730: z = (0.1 - 0.078730) * sqrt(252) / 1.054751 = 0.320125
    assert deflated_sharpe(m, 10, 0.0025) == pytest.approx(0.625563, abs=1e-6)
    assert deflated_sharpe(m, 1, 0.0) == probabilistic_sharpe(m)
    more = [deflated_sharpe(m, n, 0.0025) for n in (2, 10, 100, 1000)]
    assert more == sorted(more, reverse=True)  # every trial raises the bar


def test_moments_match_scipy_and_the_report_s_sharpe() -> None:
    r = np.random.default_rng(3).standard_t(4, size=400) * 0.01 + 0.001
    m = sharpe_moments(r)
    assert m is not None and m.n == 400
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1))
    assert m.skew == pytest.approx(stats.skew(r))
    assert m.kurtosis == pytest.approx(stats.kurtosis(r, fisher=False))
    assert sharpe_moments(np.zeros(30)) is None  # flat: no trade
    assert sharpe_moments([0.01, 0.02]) is None


def test_trial_variance_and_bad_arguments() -> None:
    assert trial_variance([0.1]) == 0.0
    assert trial_variance([0.1, 0.3]) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="trials must be >= 1"):
        expected_max_sharpe(0, 0.1)
    with pytest.raises(ValueError, match="variance must be >= 0"):
        expected_max_sharpe(3, -1.0)
    assert math.isclose(expected_max_sharpe(1, 0.5), 0.0)
