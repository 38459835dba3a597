"""The pre-trade limits through the risk gate: each at, just below and just above its
threshold; exits never meet them; an unknown context denies; stricter never allows more."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.brains.limits import HOUR_MS, LimitContext, OpenCorrelation
from core.brains.risk_gate import DenyReason, GateInput, OrderIntent, RiskVerdict, check_order
from core.domain.enums import TradingState
from core.domain.policy import Policy
from tests.fakes import quiet_limits

NOW = 1_700_000_000_000
POLICY = Policy(max_leverage=10, allow_short=True)  # the limits at their defaults
QUIET = quiet_limits(NOW)


def gate(
    ctx: LimitContext | None = QUIET,
    *,
    policy: Policy = POLICY,
    short: bool = False,
    reduces: bool = False,
    protective: bool = False,
    stop: str | None = None,
    liquidation: str | None = None,
    state: TradingState = TradingState.ACTIVE,
) -> RiskVerdict:
    return check_order(
        GateInput(
            intent=OrderIntent(
                symbol="ETH/USDT",
                notional=D(1000),
                reduces_exposure=reduces,
                opens_short=short,
                protective=protective,
                stop_price=None if stop is None else D(stop),
                liquidation_price=None if liquidation is None else D(liquidation),
            ),
            state=state,
            policy=policy,
            equity=D(10_000),
            open_positions=0,
            total_exposure=D(0),
            limits=ctx,
        )
    )


def exits_pass(ctx: LimitContext | None) -> None:
    """Whatever the limits say of new exposure, an exit still goes out."""
    assert gate(ctx, reduces=True).allowed
    assert gate(ctx, reduces=True, protective=True).allowed


def test_nothing_recorded_allows_an_entry() -> None:
    assert gate().allowed


@pytest.mark.parametrize(
    ("pnl", "allowed"), [("-499.99", True), ("-500", False), ("-500.01", False)]
)
def test_daily_loss_denies_from_the_limit_on(pnl: str, allowed: bool) -> None:
    ctx = replace(QUIET, day_pnl=D(pnl))  # 5 % of 10_000 is 500
    verdict = gate(ctx)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason is DenyReason.DAILY_LOSS and "500.00" in verdict.detail
    exits_pass(ctx)


def test_daily_loss_off_at_zero_and_a_gain_never_counts() -> None:
    ctx = replace(QUIET, day_pnl=D(-9_000))
    assert gate(ctx, policy=replace(POLICY, daily_loss_limit_pct=D(0))).allowed
    assert gate(replace(QUIET, day_pnl=D(5_000))).allowed


@pytest.mark.parametrize(
    ("losses", "ago_s", "allowed"),
    [
        (2, 60, True),  # one loss short of the streak
        (3, 60, False),
        (3, 6 * 3600 - 1, False),  # a second before the cooldown ends
        (3, 6 * 3600, True),  # at its end
        (7, 6 * 3600 + 1, True),
    ],
)
def test_loss_streak_cooldown(losses: int, ago_s: int, allowed: bool) -> None:
    ctx = replace(QUIET, consecutive_losses=losses, last_loss_ms=NOW - ago_s * 1000)
    verdict = gate(ctx)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason is DenyReason.LOSS_STREAK
    exits_pass(ctx)


@pytest.mark.parametrize(("ago_ms", "allowed"), [(3_599_999, False), (3_600_000, True)])
def test_symbol_cooldown_after_a_close_on_that_symbol(ago_ms: int, allowed: bool) -> None:
    ctx = replace(QUIET, last_close_ms={"ETH/USDT": NOW - ago_ms, "BTC/USDT": NOW})
    verdict = gate(ctx)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason is DenyReason.SYMBOL_COOLDOWN
    # Another symbol's close does not count.
    assert gate(replace(QUIET, last_close_ms={"BTC/USDT": NOW})).allowed
    exits_pass(ctx)


@pytest.mark.parametrize(("entries", "allowed"), [(3, True), (4, False), (5, False)])
def test_entries_per_hour(entries: int, allowed: bool) -> None:
    ctx = replace(QUIET, entry_times_ms=tuple(NOW - i * 60_000 for i in range(entries)))
    verdict = gate(ctx)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason is DenyReason.ENTRIES_PER_HOUR
    exits_pass(ctx)


def test_entries_older_than_an_hour_do_not_count() -> None:
    old = tuple(NOW - HOUR_MS - i for i in range(10))  # an hour ago exactly, and before
    assert gate(replace(QUIET, entry_times_ms=(*old, NOW, NOW, NOW))).allowed


@pytest.mark.parametrize(("corr", "allowed"), [(0.7999, True), (0.8, True), (0.8001, False)])
def test_correlation_above_the_cap_with_a_same_side_position(corr: float, allowed: bool) -> None:
    ctx = replace(
        QUIET, correlations=(OpenCorrelation(symbol="BTC/USDT", long=True, correlation=corr),)
    )
    verdict = gate(ctx)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason is DenyReason.CORRELATION and "BTC/USDT" in verdict.detail
    assert gate(ctx, short=True).allowed  # a short beside a correlated long is a hedge
    exits_pass(ctx)


def test_an_unknown_correlation_denies_only_while_the_limit_is_on() -> None:
    ctx = replace(
        QUIET, correlations=(OpenCorrelation(symbol="BTC/USDT", long=True, correlation=None),)
    )
    assert gate(ctx).reason is DenyReason.LIMIT_CONTEXT_MISSING
    assert gate(ctx, policy=replace(POLICY, max_correlation=1.0)).allowed


@pytest.mark.parametrize(
    ("rate", "short", "allowed"),
    [
        ("0.001", False, True),  # at the cap
        ("0.0010001", False, False),
        ("0.0010001", True, True),  # a short receives positive funding
        ("-0.001", True, True),
        ("-0.0010001", True, False),
        ("-0.5", False, True),
    ],
)
def test_funding_denies_the_side_that_pays(rate: str, short: bool, allowed: bool) -> None:
    ctx = replace(QUIET, perp=True, funding_rate=D(rate))
    verdict = gate(ctx, short=short)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason is DenyReason.FUNDING
    assert gate(replace(ctx, perp=False), short=short).allowed  # spot: no funding
    exits_pass(ctx)


def test_unknown_funding_denies_only_when_strict() -> None:
    ctx = replace(QUIET, perp=True, funding_rate=None)
    assert gate(ctx).allowed
    strict = replace(POLICY, funding_unknown_denies=True)
    assert gate(ctx, policy=strict).reason is DenyReason.FUNDING
    assert gate(ctx, policy=replace(strict, max_funding_rate=None)).allowed  # the filter off


@pytest.mark.parametrize(
    ("stop", "liquidation", "short", "allowed"),
    [
        ("98", "97.51", False, True),  # 0.49 beyond a stop of 98: 0.5 % of it, exactly
        ("98", "97.5", False, True),
        ("98", "97.52", False, False),  # 0.48 beyond
        ("102", "102.51", True, True),  # 0.51 beyond; 0.5 % of 102 is 0.51
        ("102", "102.50", True, False),
    ],
)
def test_liquidation_buffer_beyond_the_stop(
    stop: str, liquidation: str, short: bool, allowed: bool
) -> None:
    verdict = gate(replace(QUIET, perp=True), stop=stop, liquidation=liquidation, short=short)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason is DenyReason.LIQUIDATION_BUFFER


def test_liquidation_buffer_at_the_threshold_exactly() -> None:
    # 0.5 % of 100 is 0.5: a liquidation 0.5 below the stop keeps the buffer, 0.4999 does not.
    assert gate(replace(QUIET, perp=True), stop="100", liquidation="99.5").allowed
    denied = gate(replace(QUIET, perp=True), stop="100", liquidation="99.5001")
    assert denied.reason is DenyReason.LIQUIDATION_BUFFER


def test_a_missing_context_denies_new_exposure_but_never_an_exit() -> None:
    verdict = gate(None)
    assert verdict.reason is DenyReason.LIMIT_CONTEXT_MISSING
    exits_pass(None)
    off = Policy(
        daily_loss_limit_pct=D(0),
        loss_streak_limit=0,
        max_entries_per_hour=0,
        symbol_cooldown_s=0,
        max_correlation=1.0,
        max_funding_rate=None,
    )
    assert gate(None, policy=off).allowed  # every limit off: nothing to know


@pytest.mark.parametrize(
    "ctx",
    [
        replace(QUIET, day_start_equity=None),
        replace(QUIET, day_pnl=None),
        replace(QUIET, consecutive_losses=None),
        replace(QUIET, consecutive_losses=3, last_loss_ms=None),
        replace(QUIET, entry_times_ms=None),
        replace(QUIET, last_close_ms=None),
        replace(QUIET, correlations=None),
    ],
)
def test_each_unknown_part_denies_while_its_limit_is_on(ctx: LimitContext) -> None:
    assert gate(ctx).reason is DenyReason.LIMIT_CONTEXT_MISSING
    exits_pass(ctx)


def test_limits_run_in_the_documented_order() -> None:
    everything = replace(
        QUIET,
        day_pnl=D(-1_000),
        consecutive_losses=3,
        last_loss_ms=NOW,
        last_close_ms={"ETH/USDT": NOW},
        entry_times_ms=(NOW,) * 4,
        correlations=(OpenCorrelation(symbol="BTC/USDT", long=True, correlation=0.99),),
        perp=True,
        funding_rate=D("0.01"),
    )
    kw = {"stop": "100", "liquidation": "99.9"}
    order = [
        ("day_pnl", D(0), DenyReason.DAILY_LOSS),
        ("consecutive_losses", 0, DenyReason.LOSS_STREAK),
        ("last_close_ms", {}, DenyReason.SYMBOL_COOLDOWN),
        ("entry_times_ms", (), DenyReason.ENTRIES_PER_HOUR),
        ("correlations", (), DenyReason.CORRELATION),
        ("funding_rate", D(0), DenyReason.FUNDING),
    ]
    ctx = everything
    for name, cleared, reason in order:
        assert gate(ctx, **kw).reason is reason
        ctx = replace(ctx, **{name: cleared})
    assert gate(ctx, **kw).reason is DenyReason.LIQUIDATION_BUFFER


# --- properties -------------------------------------------------------------------------------


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    return Policy(
        max_leverage=10,
        allow_short=True,
        daily_loss_limit_pct=draw(st.sampled_from([D(0), D("0.01"), D("0.05"), D("0.2")])),
        loss_streak_limit=draw(st.integers(0, 5)),
        loss_streak_cooldown_s=draw(st.integers(0, 12 * 3600)),
        max_entries_per_hour=draw(st.integers(0, 6)),
        symbol_cooldown_s=draw(st.integers(0, 3 * 3600)),
        max_correlation=draw(st.sampled_from([1.0, 0.9, 0.8, 0.5, 0.0, -0.5])),
        max_funding_rate=draw(st.sampled_from([None, D("0.01"), D("0.001"), D("0.0001")])),
        funding_unknown_denies=draw(st.booleans()),
        min_liquidation_buffer_pct=draw(st.sampled_from([D(0), D("0.001"), D("0.005"), D("0.05")])),
    )


def stricter(loose: Policy, draw: st.DrawFn) -> Policy:
    """Return a policy whose every limit is at least as strict as ``loose``'s (0/None/1 = off
    is the loosest of all)."""

    def tighter_count(value: int) -> int:
        return draw(st.integers(1, value)) if value else draw(st.integers(0, 6))

    def longer(value: int) -> int:
        return draw(st.integers(value, value + 6 * 3600))

    def lower_pct(value: D) -> D:
        if not value:  # off: any limit is stricter
            return draw(st.sampled_from([D(0), D("0.05"), D("0.01")]))
        return draw(st.sampled_from([value, value / 2, value / 10]))

    funding = loose.max_funding_rate
    return replace(
        loose,
        daily_loss_limit_pct=lower_pct(loose.daily_loss_limit_pct),
        loss_streak_limit=tighter_count(loose.loss_streak_limit),
        loss_streak_cooldown_s=longer(loose.loss_streak_cooldown_s),
        max_entries_per_hour=tighter_count(loose.max_entries_per_hour),
        symbol_cooldown_s=longer(loose.symbol_cooldown_s),
        max_correlation=draw(st.floats(-1, loose.max_correlation)),
        max_funding_rate=(
            draw(st.sampled_from([funding, funding / 10]))
            if funding
            else draw(st.sampled_from([None, D("0.001")]))
        ),
        funding_unknown_denies=loose.funding_unknown_denies or draw(st.booleans()),
        min_liquidation_buffer_pct=draw(
            st.sampled_from([loose.min_liquidation_buffer_pct, D("0.01"), D("0.1")]).filter(
                lambda v: v >= loose.min_liquidation_buffer_pct
            )
        ),
    )


@st.composite
def contexts(draw: st.DrawFn) -> LimitContext | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    correlations = tuple(
        OpenCorrelation(
            symbol=draw(st.sampled_from(["BTC/USDT", "SOL/USDT", "ETH/USDT"])),
            long=draw(st.booleans()),
            correlation=draw(st.none() | st.floats(-1, 1)),
        )
        for _ in range(draw(st.integers(0, 2)))
    )
    return LimitContext(
        now_ms=NOW,
        day_start_equity=draw(st.none() | st.just(D(10_000))),
        day_pnl=draw(st.none() | st.decimals(-3_000, 3_000, places=2)),
        consecutive_losses=draw(st.none() | st.integers(0, 8)),
        last_loss_ms=draw(st.none() | st.integers(NOW - 13 * 3600 * 1000, NOW)),
        entry_times_ms=draw(
            st.none() | st.lists(st.integers(NOW - 2 * HOUR_MS, NOW), max_size=8).map(tuple)
        ),
        last_close_ms=draw(
            st.none()
            | st.dictionaries(
                st.sampled_from(["ETH/USDT", "BTC/USDT"]),
                st.integers(NOW - 4 * HOUR_MS, NOW),
            )
        ),
        correlations=draw(st.none() | st.just(correlations)),
        perp=draw(st.booleans()),
        funding_rate=draw(st.none() | st.decimals(D("-0.02"), D("0.02"), places=5)),
    )


@st.composite
def orders(draw: st.DrawFn) -> dict[str, object]:
    stop = draw(st.decimals(50, 150, places=2))
    return {
        "short": draw(st.booleans()),
        "reduces": draw(st.booleans()),
        "protective": draw(st.booleans()),
        "stop": str(stop),
        "liquidation": draw(st.none() | st.decimals(1, 300, places=2).map(str)),
        "state": draw(st.sampled_from(TradingState)),
    }


@settings(max_examples=150, deadline=None)  # a loaded machine must not fail it
@given(st.data())
def test_property_a_stricter_policy_never_allows_what_a_looser_denied(data: st.DataObject) -> None:
    loose = data.draw(policies())
    strict = stricter(loose, data.draw)
    ctx, order = data.draw(contexts()), data.draw(orders())
    if not gate(ctx, policy=loose, **order).allowed:  # type: ignore[arg-type]
        assert not gate(ctx, policy=strict, **order).allowed  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)  # a loaded machine must not fail it
@given(policies(), contexts(), orders())
def test_property_the_trading_state_still_bounds_what_passes(
    policy: Policy, ctx: LimitContext | None, order: dict[str, object]
) -> None:
    verdict = gate(ctx, policy=policy, **order)  # type: ignore[arg-type]
    state, reduces, protective = order["state"], order["reduces"], order["protective"]
    if state is TradingState.HALTED:
        assert verdict.allowed == (reduces and protective)
    elif state is TradingState.REDUCING:
        assert verdict.allowed == reduces
    elif reduces:
        assert verdict.allowed  # no limit ever holds back an exit
