"""Drawdown and underwater figures on small curves whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from core.analytics.drawdown import drawdown_stats, underwater_fraction
from tests.unit.analytics.builders import curve


def test_known_drawdown_100_120_90_130() -> None:
    dd = drawdown_stats(curve([0, 1_000, 2_000, 3_000], [100, 120, 90, 130]))
    assert dd.max_drawdown_pct == pytest.approx(25.0)  # (120 - 90) / 120
    assert dd.max_drawdown_abs == pytest.approx(30.0)
    assert (dd.start_ms, dd.end_ms) == (1_000, 2_000)
    assert (dd.peak_equity, dd.trough_equity) == (120.0, 90.0)
    assert dd.longest_underwater_ms == 2_000  # at the peak at 1 000, back above it at 3 000


def test_drawdown_starts_at_the_last_sample_on_the_peak_and_may_never_recover() -> None:
    dd = drawdown_stats(curve([0, 10, 20, 30, 40], [100, 120, 120, 90, 110]))
    assert (dd.start_ms, dd.end_ms) == (20, 30)
    assert dd.longest_underwater_ms == 20  # from 20 to the curve's end at 40, still under 120


def test_worst_percent_drawdown_and_longest_underwater_can_be_different_episodes() -> None:
    ts = [0, 10, 20, 30, 40, 50, 60, 70]
    eq = [100, 90, 100, 110, 105, 104, 103, 111]
    dd = drawdown_stats(curve(ts, eq))
    assert dd.max_drawdown_pct == pytest.approx(10.0)  # 100 -> 90 beats 110 -> 103 (6.36 %)
    assert dd.max_drawdown_abs == pytest.approx(10.0)
    assert (dd.start_ms, dd.end_ms) == (0, 10)
    assert dd.longest_underwater_ms == 40  # 110 at 30 until 111 at 70; the first dip lasted 20


def test_rising_curve_has_no_drawdown() -> None:
    dd = drawdown_stats(curve([0, 1, 2], [100, 101, 105]))
    assert dd.max_drawdown_pct == 0.0
    assert dd.max_drawdown_abs == 0.0
    assert dd.start_ms is None and dd.end_ms is None
    assert dd.longest_underwater_ms == 0


def test_underwater_fraction_per_sample() -> None:
    got = underwater_fraction(np.array([100.0, 120.0, 90.0, 130.0, 117.0]))
    np.testing.assert_allclose(got, [0.0, 0.0, 0.25, 0.0, 0.1])
