"""Position sizing: a fixed fraction of equity at risk, then the caps, then the exchange step."""

from __future__ import annotations

import math
from decimal import Decimal as D

import numpy as np
import pytest

from core.brains.sizing import (
    SizingDecision,
    SizingInput,
    TradingCosts,
    daily_vol_pct,
    loss_per_unit,
    size_position,
    volatility_scale,
)
from core.domain.policy import Policy

# Loose caps so the risk amount binds unless a test tightens one:
# position cap 1.0 * 10_000 = 10_000 (100 units at 100), exposure cap 2.0 * 10_000.
LOOSE = Policy(
    risk_per_trade=D("0.01"),
    max_position_pct=D(1),
    max_position_notional=D(1_000_000),
    max_total_exposure_pct=D(2),
    max_leverage=5,
)


def size(
    *,
    equity: str = "10000",
    free_cash: str = "10000",
    entry: str = "100",
    stop: str = "98",
    exposure: str = "0",
    leverage: int = 1,
    step: str = "0.001",
    min_notional: str = "0",
    fees: TradingCosts | None = None,
    policy: Policy = LOOSE,
) -> SizingDecision:
    return size_position(
        SizingInput(
            equity=D(equity),
            free_cash=D(free_cash),
            entry_price=D(entry),
            stop_price=D(stop),
            total_exposure=D(exposure),
            leverage=leverage,
            amount_step=D(step),
            min_notional=D(min_notional),
            costs=fees or TradingCosts(),
            policy=policy,
        )
    )


def test_risk_amount_by_hand() -> None:
    # 10_000 * 1 % = 100 at risk over a 2.00 stop distance = 50 units (5_000 notional)
    decision = size()
    assert decision.amount == D(50)
    assert decision.bound_by == "risk"


def test_the_cap_multiplier_is_where_the_tightest_cap_cuts_the_risk_budget() -> None:
    # risk buys 50 units (no fee here: 2.00 a unit); the 30 % position cap buys 30: a
    # multiplier of 0.6 of this budget reaches it, whatever multiplier it was sized at
    capped = size(policy=Policy(max_position_pct=D("0.3"), max_total_exposure_pct=D(2)))
    assert (capped.risk_amount, capped.cap_amount) == (D(50), D(30))
    assert capped.cap_multiplier(1.0) == pytest.approx(0.6)
    assert capped.cap_multiplier(1.5) == pytest.approx(0.9)  # its budget was 1.5x the unit's
    assert size().cap_multiplier(1.0) >= 1.0  # the risk budget bound: no cut
    assert size(equity="0").cap_multiplier(1.0) == math.inf  # not sized: nothing to tell


def test_short_stop_above_entry_sizes_the_same() -> None:
    decision = size(stop="102")
    assert decision.amount == D(50)
    assert decision.bound_by == "risk"


def test_position_cap_binds_with_the_smaller_of_pct_and_absolute() -> None:
    # pct cap 0.3 * 10_000 = 3_000 -> 30 units (absolute 1_000_000 is looser)
    by_pct = size(policy=Policy(max_position_pct=D("0.3"), max_total_exposure_pct=D(2)))
    assert (by_pct.amount, by_pct.bound_by) == (D(30), "position_cap")
    # absolute 2_500 -> 25 units (pct 1.0 * 10_000 = 10_000 is looser)
    absolute = Policy(
        max_position_pct=D(1), max_position_notional=D(2500), max_total_exposure_pct=D(2)
    )
    by_abs = size(policy=absolute)
    assert (by_abs.amount, by_abs.bound_by) == (D(25), "position_cap")


def test_exposure_cap_counts_what_is_already_open() -> None:
    # 2.0 * 10_000 - 17_000 open = 3_000 left -> 30 units
    decision = size(exposure="17000")
    assert (decision.amount, decision.bound_by) == (D(30), "exposure_cap")


def test_exposure_cap_already_exceeded_gives_zero() -> None:
    decision = size(exposure="25000")
    assert decision.amount == 0
    assert decision.bound_by == "exposure_cap:below_minimum"


def test_cash_cap_pays_the_fee_and_keeps_a_small_buffer() -> None:
    # 2_000 free * (1 - 0.001) / (100 * (1 + 0.01)) = 19.782... units
    decision = size(free_cash="2000", fees=TradingCosts(taker_fee=D("0.01"), max_fee=D("0.01")))
    assert (decision.amount, decision.bound_by) == (D("19.782"), "cash")
    cost = decision.amount * 100 * D("1.01")
    assert cost <= D(2000)


def test_a_two_percent_fee_still_trades_when_cash_binds() -> None:
    costs = TradingCosts(taker_fee=D("0.02"), max_fee=D("0.02"))
    policy = Policy(risk_per_trade=D("0.2"), max_position_pct=D(10), max_total_exposure_pct=D(10))
    decision = size(free_cash="10000", fees=costs, policy=policy)
    assert decision.bound_by == "cash"
    assert decision.amount * 100 * D("1.02") <= D(10_000)  # it can be paid, fee included


def test_cash_cap_scales_with_leverage() -> None:
    # perp margin per unit 100 / 3 (no fee here): 1_000 * 0.999 * 3 / 100 = 29.97 units
    decision = size(free_cash="1000", leverage=3)
    assert (decision.amount, decision.bound_by) == (D("29.97"), "cash")
    # with 5x the cash allows 49.95 units: still below the risk amount of 50
    assert size(free_cash="1000", leverage=5).amount == D("49.95")
    # with 2_000 free and 3x it allows 59.94: risk binds again
    assert size(free_cash="2000", leverage=3).bound_by == "risk"


def test_fees_and_slippage_are_inside_the_risk_budget() -> None:
    costs = TradingCosts(taker_fee=D("0.001"), max_fee=D("0.001"), slippage=D("0.0002"))
    # long: the stop 98 sells at 98 * 0.9998 = 97.9804; fees 0.001 * (100 + 97.9804)
    per_unit = D(100) - D("97.9804") + D("0.001") * (D(100) + D("97.9804"))
    assert loss_per_unit(D(100), D(98), costs) == per_unit == D("2.2175804")
    decision = size(fees=costs)
    assert decision.amount == D("45.094")  # 100 / 2.2175804 = 45.0942..., down to 0.001
    assert decision.amount * per_unit <= 100
    # short: the stop 102 buys at 102 * 1.0002 = 102.0204
    assert loss_per_unit(D(100), D(102), costs) == D("2.0204") + D("0.001") * D("202.0204")


def test_amount_is_rounded_down_to_the_step() -> None:
    # 100 / 3 = 33.333... units
    assert size(stop="97", step="0.1").amount == D("33.3")
    assert size(stop="97", step="1").amount == D(33)
    assert size(stop="97", step="0.00001").amount == D("33.33333")
    # never rounded up, even a hair under a whole step
    assert size(stop="97.000001", step="1").amount == D(33)


def test_below_min_notional_gives_zero() -> None:
    # 33 units * 100 = 3_300 < 5_000
    decision = size(stop="97", step="1", min_notional="5000")
    assert decision.amount == 0
    assert decision.bound_by == "risk:below_minimum"
    # valued at the stop, where the exit must clear the minimum too, with 10 % headroom for
    # a fill below the price sized on: 33 * 97 = 3_201 >= 1.1 * 2_910
    assert size(stop="97", step="1", min_notional="2910").amount == D(33)
    assert size(stop="97", step="1", min_notional="2911").amount == 0
    # a short's stop is above the entry: the entry is the smaller value, 3_300 = 1.1 * 3_000
    assert size(stop="103", step="1", min_notional="3000").amount == D(33)


def test_rounding_to_zero_gives_zero() -> None:
    # 0.5 units with a step of 1
    decision = size(equity="100", free_cash="100", step="1")
    assert decision.amount == 0
    assert decision.bound_by.endswith(":below_minimum")


@pytest.mark.parametrize(
    ("entry", "stop", "equity"),
    [("100", "100", "10000"), ("0", "-2", "10000"), ("-100", "-98", "10000"), ("100", "98", "0")],
)
def test_invalid_input_gives_zero(entry: str, stop: str, equity: str) -> None:
    decision = size(entry=entry, stop=stop, equity=equity)
    assert decision.amount == 0
    assert decision.bound_by == "invalid_input"


def test_no_free_cash_gives_zero() -> None:
    decision = size(free_cash="-10")
    assert decision.amount == 0
    assert decision.bound_by == "cash:below_minimum"


def test_the_daily_volatility_is_the_ewma_of_log_returns_scaled_to_a_day() -> None:
    # log returns of +-1 % alternating: every squared return is 1e-4, whatever the weights
    closes = 100.0 * np.exp(np.cumsum(np.tile([0.01, -0.01], 30)))
    assert daily_vol_pct(closes, 24) == pytest.approx(0.01 * 24**0.5 * 100)
    policy = Policy(vol_target_pct=D(1), vol_scale_min=D("0.1"), vol_scale_max=D(3))
    assert float(volatility_scale(policy, closes, 24)) == pytest.approx(
        1 / daily_vol_pct(closes, 24)
    )


@pytest.mark.parametrize(
    "closes",
    [np.full(20, 100.0), np.full(50, 100.0), np.r_[np.full(49, 100.0), np.nan], np.zeros(50)],
)
def test_an_unmeasurable_volatility_is_nan_and_targets_the_lower_bound(
    closes: np.ndarray,
) -> None:
    assert math.isnan(daily_vol_pct(closes, 24))
    policy = Policy(vol_target_pct=D(1))
    assert volatility_scale(policy, closes, 24) == policy.vol_scale_min
