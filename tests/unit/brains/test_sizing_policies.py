"""The simple sizers: fixed 1, volatility targeting and capped fractional Kelly, each in
[0, cap], with no measurement or no record never sizing up."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from core.brains.ceo import MODE_SETTINGS
from core.brains.sizing_policies import (
    KellyParams,
    SizerState,
    TradeRecord,
    VolTargetParams,
    fixed_fractional,
    fractional_kelly,
    volatility_target,
    within_policy,
)
from core.domain.enums import Mode
from core.domain.policy import Policy, apply_levers
from core.errors import ConfigError, DataError

VOL = VolTargetParams(target_vol=0.02, floor=0.25, cap=1.5)
KELLY = KellyParams(fraction=0.5, cap=1.5, min_trades=10, without_record=1.0)


def record(wins: int, losses: int, win: float = 0.02, loss: float = 0.01) -> TradeRecord:
    return TradeRecord.from_outcomes([win] * wins + [-loss] * losses)


def test_fixed_fractional_is_todays_size_whatever_the_state() -> None:
    for state in (SizerState(realised_vol=0.0), SizerState(realised_vol=5.0)):
        assert fixed_fractional(state) == 1.0
    assert fixed_fractional(SizerState(realised_vol=0.01), cap=0.5) == 0.5


def test_volatility_targeting_scales_inversely_with_the_realised_vol() -> None:
    at_target = volatility_target(SizerState(realised_vol=0.02), VOL)
    calm = volatility_target(SizerState(realised_vol=0.025), VOL)
    wild = volatility_target(SizerState(realised_vol=0.04), VOL)

    assert at_target == pytest.approx(1.0)
    assert calm == pytest.approx(0.02 / 0.025)
    assert wild == pytest.approx(0.5)


def test_volatility_targeting_is_capped_and_floored() -> None:
    assert volatility_target(SizerState(realised_vol=1e-9), VOL) == 1.5
    assert volatility_target(SizerState(realised_vol=10.0), VOL) == 0.25


@pytest.mark.parametrize("vol", [0.0, -0.01, math.nan, math.inf])
def test_a_volatility_that_cannot_be_targeted_gets_the_floor_not_the_cap(vol: float) -> None:
    assert volatility_target(SizerState(realised_vol=vol), VOL) == 0.25


def test_kelly_without_enough_record_gives_the_configured_base() -> None:
    state = SizerState(realised_vol=0.02, record=record(5, 4))
    assert fractional_kelly(SizerState(realised_vol=0.02), KELLY) == 1.0
    assert fractional_kelly(state, KELLY) == 1.0
    assert fractional_kelly(state, KellyParams(min_trades=10, without_record=0.0)) == 0.0


def test_kelly_is_a_fraction_of_the_growth_optimal_multiplier() -> None:
    # p = 0.6, W = 0.02, L = 0.01: m* = 0.6 / 0.01 - 0.4 / 0.02 = 40; growth peaks there.
    state = SizerState(realised_vol=0.02, record=record(6, 4))
    m = np.linspace(0.0, 99.0, 9901)
    growth = 0.6 * np.log1p(m * 0.02) + 0.4 * np.log1p(-m * 0.01)
    optimum = float(m[np.argmax(growth)])
    small = KellyParams(fraction=0.01, cap=1.5, min_trades=10)

    assert optimum == pytest.approx(40.0, abs=0.01)
    assert fractional_kelly(state, small) == pytest.approx(0.01 * optimum, abs=1e-3)
    assert fractional_kelly(state, KELLY) == 1.5  # half of 40 is far above the cap


def test_kelly_of_a_losing_record_is_zero() -> None:
    losing = SizerState(realised_vol=0.02, record=record(3, 7, win=0.01, loss=0.01))
    no_wins = SizerState(realised_vol=0.02, record=record(0, 12))
    assert fractional_kelly(losing, KELLY) == 0.0
    assert fractional_kelly(no_wins, KELLY) == 0.0


def test_kelly_of_a_record_without_losses_stops_at_the_cap() -> None:
    assert fractional_kelly(SizerState(realised_vol=0.02, record=record(12, 0)), KELLY) == 1.5


def test_a_record_summarises_wins_and_losses_and_ignores_flat_trades() -> None:
    rec = TradeRecord.from_outcomes([0.03, 0.01, -0.02, 0.0])
    assert (rec.wins, rec.losses, rec.trades) == (2, 1, 3)
    assert rec.mean_win == pytest.approx(0.02) and rec.mean_loss == pytest.approx(0.02)


def test_every_sizer_stays_within_zero_and_its_cap_on_random_states() -> None:
    rng = np.random.default_rng(7)
    for _ in range(500):
        outcomes = rng.normal(rng.uniform(-0.01, 0.01), 0.02, size=int(rng.integers(0, 40)))
        state = SizerState(
            realised_vol=float(rng.exponential(0.02)), record=TradeRecord.from_outcomes(outcomes)
        )
        for value, cap in (
            (fixed_fractional(state), 1.5),
            (volatility_target(state, VOL), VOL.cap),
            (fractional_kelly(state, KELLY), KELLY.cap),
        ):
            assert 0.0 <= value <= cap and math.isfinite(value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: VolTargetParams(target_vol=0.0),
        lambda: VolTargetParams(target_vol=0.02, floor=2.0, cap=1.5),
        lambda: VolTargetParams(target_vol=0.02, cap=math.inf),
        lambda: KellyParams(fraction=0.0),
        lambda: KellyParams(fraction=math.nan),
        lambda: KellyParams(min_trades=0),
        lambda: KellyParams(cap=1.0, without_record=1.2),
    ],
)
def test_bad_parameters_are_a_config_error(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigError):
        make()


def test_bad_records_are_a_data_error() -> None:
    with pytest.raises(DataError, match="finite"):
        TradeRecord.from_outcomes([0.01, math.nan])
    with pytest.raises(DataError, match="counts"):
        TradeRecord(wins=-1)
    with pytest.raises(DataError, match="mean_loss"):
        TradeRecord(losses=2, mean_loss=-0.01)
    with pytest.raises(ConfigError, match="cap"):
        fixed_fractional(SizerState(realised_vol=0.02), cap=0.0)


# --- within_policy: what the engine may apply of any sizer's multiplier --------------------------


def brains(mode: Mode, *, scale: str | None = None) -> Policy:
    """Return the policy the brains set in ``mode`` (a drawdown tier's ``scale`` if given)."""
    levers = MODE_SETTINGS[mode]
    if scale is not None:
        levers = replace(levers, size_multiplier=Decimal(scale))
    return apply_levers(Policy(), levers, version=1)


@pytest.mark.parametrize("raw", [-0.5, 0.0, 0.6, 1.0, 1.5, 7.0])
def test_a_multiplier_is_kept_within_zero_and_the_cap(raw: float) -> None:
    for mode in (Mode.OPTIMIZATION, Mode.EXPANSION):
        bounded = within_policy(raw, brains(mode), cap=1.5)
        assert bounded == min(max(raw, 0.0), 1.5)


@pytest.mark.parametrize(
    ("mode", "scale"),
    [
        (Mode.PRESERVATION, None),
        (Mode.EMERGENCY, None),
        (Mode.OPTIMIZATION, "0.75"),  # the ladder's first drawdown tier
        (Mode.EXPANSION, "0.75"),
        (Mode.PRESERVATION, "1"),  # the mode alone caps, whatever its scale
    ],
)
def test_while_the_brains_cut_sizes_a_sizer_may_only_shrink_them(
    mode: Mode, scale: str | None
) -> None:
    policy = brains(mode, scale=scale)
    assert within_policy(1.5, policy, cap=1.5) == 1.0
    assert within_policy(0.5, policy, cap=1.5) == 0.5
    assert within_policy(1.0, policy, cap=0.8) == 0.8  # and the cap still holds below 1
    # The risk the entry is sized for never exceeds what the mode allows of the base.
    allowed = float(policy.effective_risk_per_trade)
    assert float(Policy().risk_per_trade) * float(policy.size_multiplier) * within_policy(
        1.5, policy, cap=1.5
    ) == pytest.approx(allowed)


@pytest.mark.parametrize("raw", [math.nan, math.inf, -math.inf])
def test_a_multiplier_that_is_not_finite_is_refused(raw: float) -> None:
    with pytest.raises(DataError, match="finite"):
        within_policy(raw, Policy(), cap=1.5)


@pytest.mark.parametrize("cap", [0.0, -1.0, math.nan, math.inf])
def test_a_bad_cap_is_a_config_error(cap: float) -> None:
    with pytest.raises(ConfigError):
        within_policy(1.0, Policy(), cap=cap)
