"""The CEO Brain: modes from the risk score, hysteresis, dwell, manual modes, fail closed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.brains.ceo import (
    HOUR_MS,
    MODE_SETTINGS,
    CeoConfig,
    CeoInput,
    ManualMode,
    decide,
    mode_levers,
)
from core.domain.enums import Mode, TradingState

NOW = 1_000 * HOUR_MS
STATES = [TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED]


def _inp(
    score: float | None, mode: Mode = Mode.OPTIMIZATION, held_h: float = 100, **kw
) -> CeoInput:
    return CeoInput(
        now_ms=NOW,
        mode=mode,
        mode_since_ms=NOW - int(held_h * HOUR_MS),
        score=score,
        assessed_ms=None if score is None else NOW,
        **kw,
    )


@pytest.mark.parametrize(
    ("score", "mode"),
    [
        (10, Mode.OPTIMIZATION),
        (49, Mode.OPTIMIZATION),
        (50, Mode.PRESERVATION),
        (75, Mode.EMERGENCY),
    ],
)
def test_the_score_asks_for_a_mode(score: float, mode: Mode) -> None:
    assert decide(_inp(score)).mode is mode


def test_escalation_is_immediate_even_right_after_a_change() -> None:
    d = decide(_inp(90, Mode.OPTIMIZATION, held_h=0))
    assert d.mode is Mode.EMERGENCY and d.changed and d.alert
    assert "90" in d.reasons[0]


def test_leaving_emergency_waits_for_the_dwell_the_band_and_goes_one_step() -> None:
    assert decide(_inp(10, Mode.EMERGENCY, held_h=2)).mode is Mode.EMERGENCY  # dwell
    assert decide(_inp(70, Mode.EMERGENCY, held_h=48)).mode is Mode.EMERGENCY  # band: 65
    d = decide(_inp(10, Mode.EMERGENCY, held_h=48))
    assert d.mode is Mode.PRESERVATION and not d.alert
    assert decide(_inp(45, Mode.PRESERVATION, held_h=48)).mode is Mode.PRESERVATION  # band: 40
    assert decide(_inp(39, Mode.PRESERVATION, held_h=48)).mode is Mode.OPTIMIZATION


def test_expansion_needs_calm_and_a_record_and_is_left_at_25() -> None:
    record = {"trades": 30, "profit_factor": 1.5}
    assert decide(_inp(10, **record)).mode is Mode.EXPANSION
    assert decide(_inp(10, trades=5, profit_factor=3.0)).mode is Mode.OPTIMIZATION
    assert decide(_inp(10, trades=30, profit_factor=1.0)).mode is Mode.OPTIMIZATION
    assert decide(_inp(10, drawdown=0.05, **record)).mode is Mode.OPTIMIZATION
    assert decide(_inp(20, Mode.EXPANSION, **record)).mode is Mode.EXPANSION  # hysteresis
    assert decide(_inp(25, Mode.EXPANSION, held_h=0, **record)).mode is Mode.OPTIMIZATION


def test_no_or_a_stale_assessment_fails_closed() -> None:
    assert decide(_inp(None)).mode is Mode.PRESERVATION
    stale = CeoInput(
        now_ms=NOW, mode=Mode.EXPANSION, mode_since_ms=0, score=5, assessed_ms=NOW - 10 * HOUR_MS
    )
    d = decide(stale)
    assert d.mode is Mode.PRESERVATION and "stale" in d.reasons[0]
    assert decide(_inp(None, Mode.EMERGENCY)).mode is Mode.EMERGENCY  # never looser


@pytest.mark.parametrize("score", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("mode", list(Mode))
def test_a_score_that_is_not_a_number_fails_closed(score: float, mode: Mode) -> None:
    d = decide(_inp(score, mode))  # NaN compares false with every threshold: not calm
    assert d.mode.severity >= max(mode.severity, Mode.PRESERVATION.severity), d.reasons
    assert "fail closed" in d.reasons[0]


def test_a_manual_mode_wins_until_it_expires() -> None:
    manual = ManualMode(mode=Mode.PRESERVATION, until_ms=NOW + HOUR_MS, reason="FOMC")
    d = decide(_inp(5, manual=manual))
    assert d.mode is Mode.PRESERVATION and d.manual and "FOMC" in d.reasons[0]
    expired = ManualMode(mode=Mode.PRESERVATION, until_ms=NOW, reason="FOMC")
    assert decide(_inp(5, manual=expired)).mode is Mode.OPTIMIZATION


def test_the_mode_table() -> None:
    assert MODE_SETTINGS[Mode.EMERGENCY].state is TradingState.HALTED
    assert MODE_SETTINGS[Mode.PRESERVATION].state is TradingState.REDUCING
    assert mode_levers(Mode.EXPANSION).size_multiplier == Decimal("1.25")
    assert mode_levers(Mode.EXPANSION).extra_positions == 1


def test_the_config_refuses_contradictions() -> None:
    with pytest.raises(ValueError):
        CeoConfig(preservation_at=80, emergency_at=75)
    with pytest.raises(ValueError):
        CeoConfig(expansion_below=30, expansion_leave_at=20)


def _strictness(mode: Mode) -> tuple[int, Decimal, Decimal]:
    lv = mode_levers(mode)
    return STATES.index(lv.state), -lv.size_multiplier, -lv.stop_tighten


@settings(max_examples=200, deadline=None)
@given(
    low=st.floats(0, 100),
    high=st.floats(0, 100),
    mode=st.sampled_from(list(Mode)),
    held_h=st.floats(0, 100),
    trades=st.integers(0, 100),
    pf=st.floats(0, 5),
)
def test_a_higher_score_never_loosens_the_policy(
    low: float, high: float, mode: Mode, held_h: float, trades: int, pf: float
) -> None:
    low, high = min(low, high), max(low, high)
    calm = decide(_inp(low, mode, held_h, trades=trades, profit_factor=pf))
    danger = decide(_inp(high, mode, held_h, trades=trades, profit_factor=pf))
    assert danger.mode.severity >= calm.mode.severity
    a, b = _strictness(calm.mode), _strictness(danger.mode)
    assert b[0] >= a[0] and b[1] >= a[1] and b[2] >= a[2]
