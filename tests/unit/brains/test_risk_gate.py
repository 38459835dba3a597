"""The pre-trade risk gate: trading states first, then the policy limits, each with its code."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.brains.limits import LimitContext
from core.brains.risk_gate import (
    DenyReason,
    GateInput,
    OrderIntent,
    RiskAction,
    RiskVerdict,
    check_order,
)
from core.domain.enums import TradingState
from core.domain.policy import Policy
from tests.fakes import quiet_limits

QUIET = quiet_limits()

# equity 10_000: per-position cap min(0.5 * 10_000, 1_000_000) = 5_000, exposure cap 10_000
POLICY = Policy(
    risk_per_trade=D("0.01"),
    max_position_pct=D("0.5"),
    max_position_notional=D(1_000_000),
    max_open_positions=2,
    max_leverage=3,
    max_total_exposure_pct=D("1.0"),
    allow_short=False,
)


def gate(
    notional: str = "1000",
    *,
    reduces: bool = False,
    protective: bool = False,
    short: bool = False,
    leverage: int = 1,
    state: TradingState = TradingState.ACTIVE,
    policy: Policy = POLICY,
    equity: str = "10000",
    open_positions: int = 0,
    exposure: str = "0",
    limits: LimitContext | None = QUIET,
) -> RiskVerdict:
    return check_order(
        GateInput(
            intent=OrderIntent(
                symbol="BTC/USDT",
                notional=D(notional),
                reduces_exposure=reduces,
                opens_short=short,
                leverage=leverage,
                protective=protective,
            ),
            state=state,
            policy=policy,
            equity=D(equity),
            open_positions=open_positions,
            total_exposure=D(exposure),
            limits=limits,
        )
    )


def test_an_ordinary_order_in_active_state_is_allowed() -> None:
    verdict = gate("1000")
    assert verdict.allowed
    assert verdict.action is RiskAction.ALLOW
    assert verdict.reason is DenyReason.NONE


@pytest.mark.parametrize(("reduces", "protective"), [(False, False), (True, False), (False, True)])
def test_halted_denies_every_order_that_is_not_a_protective_exit(
    reduces: bool, protective: bool
) -> None:
    # new exposure, a reduce-only take-profit, and a "protective" flag on a non-reducing order
    verdict = gate("1", reduces=reduces, protective=protective, state=TradingState.HALTED)
    assert not verdict.allowed
    assert verdict.action is RiskAction.DENY
    assert verdict.reason is DenyReason.HALTED
    assert verdict.reason.value == "halted"


def test_halted_lets_stops_and_market_exits_through() -> None:
    # A halt must never leave a position bare or stuck: its stop and its exit still go.
    verdict = gate("999999", reduces=True, protective=True, state=TradingState.HALTED)
    assert verdict.allowed


def test_reducing_allows_exposure_reducing_orders() -> None:
    # Even one far beyond every limit, with no equity: closing is always welcome.
    verdict = gate(
        "999999999", reduces=True, state=TradingState.REDUCING, equity="0", open_positions=50
    )
    assert verdict.allowed


def test_reducing_denies_new_exposure() -> None:
    verdict = gate("10", state=TradingState.REDUCING)
    assert not verdict.allowed
    assert verdict.reason is DenyReason.REDUCING_ONLY
    assert verdict.reason.value == "reducing_only"


def test_active_reduce_only_skips_the_limits() -> None:
    verdict = gate("50000", reduces=True, open_positions=9, exposure="99999", leverage=10)
    assert verdict.allowed


@pytest.mark.parametrize("equity", ["0", "-5"])
def test_no_equity_denies_new_exposure(equity: str) -> None:
    verdict = gate("10", equity=equity)
    assert verdict.reason is DenyReason.NO_EQUITY
    assert verdict.reason.value == "no_equity"
    assert equity in verdict.detail


def test_short_needs_the_policy_to_allow_it() -> None:
    denied = gate("100", short=True)
    assert denied.reason is DenyReason.SHORT_NOT_ALLOWED
    assert denied.reason.value == "short_not_allowed"
    shorting = Policy(allow_short=True, max_leverage=3)
    assert gate("100", short=True, policy=shorting).allowed


def test_leverage_above_the_policy_is_denied() -> None:
    assert gate("100", leverage=3).allowed
    verdict = gate("100", leverage=4)
    assert verdict.reason is DenyReason.LEVERAGE
    assert verdict.reason.value == "max_leverage"
    assert "4 > 3" in verdict.detail


def test_max_open_positions_counts_other_symbols() -> None:
    assert gate("100", open_positions=1).allowed
    verdict = gate("100", open_positions=2)
    assert verdict.reason is DenyReason.OPEN_POSITIONS
    assert verdict.reason.value == "max_open_positions"


def test_position_cap_is_the_pct_of_equity_when_smaller() -> None:
    # cap = min(1_000_000, 0.5 * 10_000) = 5_000: exactly at the cap is fine, a cent over is not
    assert gate("5000").allowed
    verdict = gate("5000.01")
    assert verdict.reason is DenyReason.POSITION_SIZE
    assert verdict.reason.value == "max_position_size"
    assert "cap 5000.00" in verdict.detail


def test_position_cap_is_the_absolute_notional_when_smaller() -> None:
    # cap = min(2_000, 0.5 * 10_000) = 2_000
    policy = Policy(max_position_notional=D(2000), max_position_pct=D("0.5"))
    assert gate("2000", policy=policy).allowed
    verdict = gate("2000.01", policy=policy)
    assert verdict.reason is DenyReason.POSITION_SIZE
    assert "cap 2000.00" in verdict.detail


def test_total_exposure_includes_what_is_already_open() -> None:
    # exposure cap = 1.0 * 10_000; 6_000 open + 4_000 new = 10_000 is fine, + 4_000.01 is not
    assert gate("4000", exposure="6000").allowed
    verdict = gate("4000.01", exposure="6000")
    assert verdict.reason is DenyReason.TOTAL_EXPOSURE
    assert verdict.reason.value == "max_total_exposure"
    assert "cap 10000.00" in verdict.detail


def test_checks_run_in_the_documented_order() -> None:
    # Everything is wrong at once: the state wins, then equity, short, leverage, positions, size.
    kwargs = {"short": True, "leverage": 9, "open_positions": 5, "exposure": "1e9"}
    assert gate("1e9", state=TradingState.HALTED, equity="0", **kwargs).reason == "halted"
    assert gate("1e9", state=TradingState.REDUCING, equity="0", **kwargs).reason == (
        "reducing_only"
    )
    assert gate("1e9", equity="0", **kwargs).reason is DenyReason.NO_EQUITY
    assert gate("1e9", **kwargs).reason is DenyReason.SHORT_NOT_ALLOWED
    kwargs["short"] = False
    assert gate("1e9", **kwargs).reason is DenyReason.LEVERAGE
    kwargs["leverage"] = 1
    assert gate("1e9", **kwargs).reason is DenyReason.OPEN_POSITIONS
    kwargs["open_positions"] = 0
    assert gate("1e9", **kwargs).reason is DenyReason.POSITION_SIZE
    assert gate("1", **kwargs).reason is DenyReason.TOTAL_EXPOSURE


# --- properties -------------------------------------------------------------------------------

money = st.decimals(min_value=-1000, max_value=10**7, places=2, allow_nan=False)
fractions = st.decimals(min_value=D("0.01"), max_value=5, places=2)


@st.composite
def gate_inputs(draw: st.DrawFn) -> GateInput:
    policy = Policy(
        risk_per_trade=draw(st.decimals(min_value=D("0.001"), max_value=D("0.2"), places=3)),
        max_position_pct=draw(fractions),
        max_position_notional=draw(st.decimals(min_value=1, max_value=10**7, places=2)),
        max_open_positions=draw(st.integers(1, 10)),
        max_leverage=draw(st.integers(1, 20)),
        max_total_exposure_pct=draw(fractions),
        allow_short=draw(st.booleans()),
    )
    intent = OrderIntent(
        symbol="ETH/USDT",
        notional=draw(st.decimals(min_value=0, max_value=10**7, places=2)),
        reduces_exposure=draw(st.booleans()),
        opens_short=draw(st.booleans()),
        leverage=draw(st.integers(1, 30)),
        protective=draw(st.booleans()),
    )
    return GateInput(
        intent=intent,
        state=draw(st.sampled_from(TradingState)),
        policy=policy,
        equity=draw(money),
        open_positions=draw(st.integers(0, 12)),
        total_exposure=draw(st.decimals(min_value=0, max_value=10**7, places=2)),
        limits=QUIET,  # nothing recorded: the pre-trade limits (tests/unit/brains/test_limits.py)
    )


@given(gate_inputs())
def test_property_the_trading_state_bounds_what_passes(inp: GateInput) -> None:
    verdict = check_order(inp)
    if inp.state is TradingState.HALTED:
        assert verdict.allowed == (inp.intent.reduces_exposure and inp.intent.protective)
        if not verdict.allowed:
            assert verdict.reason is DenyReason.HALTED
    elif inp.state is TradingState.REDUCING:
        assert verdict.allowed == inp.intent.reduces_exposure
        if not verdict.allowed:
            assert verdict.reason is DenyReason.REDUCING_ONLY
    elif inp.intent.reduces_exposure:
        assert verdict.allowed
    # A denial always says why; an allow never carries a reason.
    assert (verdict.reason is DenyReason.NONE) == verdict.allowed


@given(gate_inputs())
def test_property_an_allowed_new_order_respects_every_limit(inp: GateInput) -> None:
    verdict = check_order(inp)
    if not verdict.allowed or inp.intent.reduces_exposure:
        return
    p, intent = inp.policy, inp.intent
    assert inp.state is TradingState.ACTIVE
    assert inp.equity > 0
    assert p.allow_short or not intent.opens_short
    assert intent.leverage <= p.max_leverage
    assert inp.open_positions < p.max_open_positions
    assert intent.notional <= min(p.max_position_notional, p.max_position_pct * inp.equity)
    assert inp.total_exposure + intent.notional <= p.max_total_exposure_pct * inp.equity
