from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal as D

import pytest

from core.brains.exits import (
    MARKET_EXIT_NAME,
    STOP_NAME,
    BotSideStop,
    BreakEvenConfig,
    CancelLeg,
    CloseAll,
    DynamicConfig,
    ExitConfig,
    ExitDecision,
    ExitPlan,
    LegFill,
    LegSpec,
    MarketExit,
    PlanRefused,
    PlanRequest,
    ReplaceStop,
    StopAnchor,
    StopFallback,
    StopMode,
    Target,
    bot_side_stop_hit,
    exit_at_market,
    on_fill,
    on_stop_rejected,
    on_venue_cancel,
    plan_exits,
)
from core.domain.enums import PositionSide
from core.errors import InvariantViolation

LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


def request(side: PositionSide = LONG, **changes: object) -> PlanRequest:
    base = PlanRequest(
        side=side, entry_price=D(100), amount=D(1), amount_step=D("0.001"), price_tick=D("0.01")
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def prices(plan: ExitPlan) -> list[D]:
    return [leg.price for leg in plan.legs]


def fill(plan: ExitPlan, name: str, amount: str) -> ExitDecision:
    return on_fill(plan, LegFill(leg_name=name, amount=D(amount)))


# --- the default ladder ----------------------------------------------------------------------


def test_default_ladder_long_from_100() -> None:
    plan = plan_exits(request(LONG))
    assert [leg.name for leg in plan.legs] == ["TP1", "TP2", "TP3"]
    assert prices(plan) == [D("101.95"), D("103.25"), D("105.20")]
    assert [leg.amount for leg in plan.legs] == [D("0.3"), D("0.3"), D("0.4")]
    assert plan.stop is not None
    assert (plan.stop.price, plan.stop.amount, plan.stop.mode) == (D(98), D(1), StopMode.EXCHANGE)
    # TP1 -> break-even (entry + 0.2 % fees buffer), TP2 -> TP1's price, TP3 closes
    assert [leg.stop_after_fill for leg in plan.legs] == [D("100.2"), D("101.95"), None]
    assert plan.remaining == D(1) and not plan.is_closed


def test_default_ladder_short_from_100() -> None:
    plan = plan_exits(request(SHORT))
    assert prices(plan) == [D("98.05"), D("96.75"), D("94.80")]
    assert plan.stop is not None and plan.stop.price == D(102)
    assert [leg.stop_after_fill for leg in plan.legs] == [D("99.8"), D("98.05"), None]


def test_static_plan_ignores_atr_and_confidence() -> None:
    assert plan_exits(request(atr=D(7), confidence=1.0)) == plan_exits(request())


def test_prices_round_conservatively_to_the_tick() -> None:
    cfg = ExitConfig(stop=Target.pct("2.1"))
    long_plan = plan_exits(request(LONG, price_tick=D("0.5"), config=cfg))
    # long: TPs down (toward entry), stop up (tighter): 101.95->101.5, 97.9->98.0
    assert prices(long_plan)[0] == D("101.5")
    assert long_plan.stop is not None and long_plan.stop.price == D(98)
    short_plan = plan_exits(request(SHORT, price_tick=D("0.5"), config=cfg))
    # short: TPs up (toward entry), stop down (tighter): 98.05->98.5, 102.1->102.0
    assert prices(short_plan)[0] == D("98.5")
    assert short_plan.stop is not None and short_plan.stop.price == D(102)


def test_atr_and_price_targets() -> None:
    cfg = ExitConfig(
        legs=(
            LegSpec(target=Target.atr(1), fraction=D("0.5")),
            LegSpec(target=Target.price("110"), fraction=D("0.5")),
        ),
        stop=Target.atr("1.5"),
    )
    plan = plan_exits(request(atr=D(2), config=cfg))
    assert prices(plan) == [D(102), D(110)]
    assert plan.stop is not None and plan.stop.price == D(97)


def test_price_target_on_the_wrong_side_is_rejected() -> None:
    cfg = ExitConfig(legs=(LegSpec(target=Target.price(95), fraction=D(1)),))
    with pytest.raises(ValueError, match="TP1 price 95 must be on the profit side"):
        plan_exits(request(LONG, config=cfg))
    stop_cfg = ExitConfig(stop=Target.price(101))
    with pytest.raises(ValueError, match="stop price 101 must be on the losing side"):
        plan_exits(request(LONG, config=stop_cfg))


def test_mixed_targets_that_do_not_grow_are_rejected_at_plan_time() -> None:
    cfg = ExitConfig(
        legs=(
            LegSpec(target=Target.atr(3), fraction=D("0.5")),
            LegSpec(target=Target.pct(1), fraction=D("0.5")),
        )
    )
    with pytest.raises(ValueError, match=r"TP2 rounds to 101\.00, not beyond TP1 103\.00"):
        plan_exits(request(atr=D(1), config=cfg))


def test_atr_target_without_atr_is_rejected() -> None:
    cfg = ExitConfig(stop=Target.atr(2))
    with pytest.raises(ValueError, match="needs an ATR"):
        plan_exits(request(config=cfg))


# --- dynamic scaling --------------------------------------------------------------------------


def dyn(**changes: object) -> ExitConfig:
    return ExitConfig(dynamic=replace(DynamicConfig(enabled=True), **changes))  # type: ignore[arg-type]


def test_volatility_scales_percent_legs_within_bounds() -> None:
    # reference ATR 1.5 %: ATR 3 % doubles the distances (the max), ATR 0.3 % halves them (the min)
    wide = plan_exits(request(atr=D(3), config=dyn()))
    assert wide.scale == D(2)
    assert prices(wide) == [D("103.90"), D("106.50"), D("110.40")]
    narrow = plan_exits(request(atr=D("0.3"), config=dyn()))
    assert narrow.scale == D("0.5")
    assert prices(narrow) == [D("100.97"), D("101.62"), D("102.60")]  # 100.975 rounds down
    neutral = plan_exits(request(atr=D("1.5"), config=dyn()))
    assert prices(neutral) == prices(plan_exits(request()))


def test_confidence_stretches_targets_within_bounds() -> None:
    high = plan_exits(request(atr=D("1.5"), confidence=1.0, config=dyn()))
    low = plan_exits(request(atr=D("1.5"), confidence=0.0, config=dyn()))
    assert high.scale == D("1.25") and low.scale == D("0.75")
    assert prices(high)[0] == D("102.43")  # 1.95 % x 1.25 = 2.4375 %
    assert prices(low)[0] == D("101.46")  # 1.95 % x 0.75 = 1.4625 %
    capped = plan_exits(request(atr=D(3), confidence=1.0, config=dyn(max_scale=D("1.1"))))
    assert capped.scale == D("1.1")


def test_confidence_never_widens_the_stop() -> None:
    a = plan_exits(request(atr=D("1.5"), confidence=1.0, config=dyn()))
    b = plan_exits(request(atr=D("1.5"), confidence=0.0, config=dyn()))
    assert a.stop == b.stop and a.stop is not None and a.stop.price == D(98)


def test_stop_is_volatility_scaled_but_capped() -> None:
    wide = plan_exits(request(atr=D(3), config=dyn()))  # 2 % x 2 = 4 % = the default cap
    assert wide.stop is not None and wide.stop.price == D(96)
    capped = plan_exits(request(atr=D(3), config=dyn(max_stop_pct=D(3))))
    assert capped.stop is not None and capped.stop.price == D(97)
    fixed = plan_exits(request(atr=D(3), config=dyn(scale_stop=False)))
    assert fixed.stop is not None and fixed.stop.price == D(98)
    short = plan_exits(request(SHORT, atr=D(3), config=dyn(max_stop_pct=D(3))))
    assert short.stop is not None and short.stop.price == D(103)


def test_dynamic_exits_need_an_atr() -> None:
    with pytest.raises(ValueError, match="dynamic exits needs an ATR"):
        plan_exits(request(config=dyn()))


# --- config and request validation ------------------------------------------------------------


def leg(pct: str, fraction: str, anchor: StopAnchor = StopAnchor.NONE) -> LegSpec:
    return LegSpec(target=Target.pct(pct), fraction=D(fraction), move_stop_to=anchor)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ExitConfig(legs=(leg("1", "0.5"), leg("2", "0.4"))), "sum to exactly 1, was 0.9"),
        (lambda: ExitConfig(legs=()), "at least one take-profit leg"),
        (lambda: leg("1", "0"), r"fraction must be in \(0, 1\], was 0"),
        (lambda: leg("1", "1.5"), r"fraction must be in \(0, 1\], was 1.5"),
        (lambda: LegSpec(target=Target.pct(1), fraction=0.5), "finite Decimal, was float"),  # type: ignore[arg-type]
        (lambda: Target.pct(0.5), "must be exact"),  # type: ignore[arg-type]
        (lambda: Target.pct("-2"), "must be > 0"),
        (lambda: Target.price("abc"), "price target must be a number, was 'abc'"),
        (lambda: Target.pct("NaN"), "finite Decimal"),
        (
            lambda: ExitConfig(legs=(leg("2", "0.5"), leg("2", "0.5"))),
            "strictly increasing away from entry: TP2 percent 2 is not beyond TP1 2",
        ),
        (
            lambda: ExitConfig(legs=(leg("1", "1", StopAnchor.PREVIOUS_LEG),)),
            "TP1 cannot move the stop to the previous leg",
        ),
        (lambda: DynamicConfig(min_scale=D("1.2")), "0 < min_scale <= 1 <= max_scale"),
        (lambda: DynamicConfig(confidence_stretch=D(1)), "confidence_stretch must be in"),
        (lambda: DynamicConfig(max_stop_pct=D(0)), "max_stop_pct must be in"),
        (lambda: BreakEvenConfig(fee_buffer_pct=D(-1)), "fee_buffer_pct must be >= 0"),
        (lambda: request(amount=D(0)), "amount must be > 0, was 0"),
        (lambda: request(price_tick=D(-1)), "price_tick must be > 0"),
        (lambda: request(min_amount=D(2)), "below the min order amount 2"),
        (lambda: request(confidence=1.5), r"confidence must be in \[0, 1\]"),
        (lambda: request(atr=0.0), "atr must be > 0"),
        (lambda: LegFill(leg_name="TP1", amount=D(0)), "fill amount of TP1 must be > 0"),
    ],
)
def test_bad_config_and_input_are_rejected_with_a_clear_message(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_short_percent_targets_past_zero_are_rejected() -> None:
    cfg = ExitConfig(legs=(leg("120", "1"),))
    with pytest.raises(PlanRefused, match="TP1 of the short entry 100 falls at or below 0"):
        plan_exits(request(SHORT, config=cfg))


# --- leg amounts ------------------------------------------------------------------------------


def test_last_leg_takes_the_remainder() -> None:
    plan = plan_exits(request(amount=D("0.1005")))
    assert [leg.amount for leg in plan.legs] == [D("0.030"), D("0.030"), D("0.0405")]
    assert sum(leg.amount for leg in plan.legs) == D("0.1005")


def test_small_legs_merge_into_the_next() -> None:
    plan = plan_exits(request(amount=D("0.01"), min_amount=D("0.004")))
    # TP1 would be 0.003 < 0.004: it rides with TP2
    assert [(leg.name, leg.amount) for leg in plan.legs] == [
        ("TP2", D("0.006")),
        ("TP3", D("0.004")),
    ]


def test_small_last_leg_merges_back() -> None:
    cfg = ExitConfig(legs=(leg("1", "0.45"), leg("2", "0.45"), leg("3", "0.1")))
    plan = plan_exits(request(amount=D("0.01"), min_amount=D("0.003"), config=cfg))
    assert [(leg.name, leg.amount) for leg in plan.legs] == [
        ("TP1", D("0.004")),
        ("TP2", D("0.006")),
    ]


def test_legs_below_the_minimum_notional_merge_and_the_plan_says_so() -> None:
    # 0.11 units from 100: TP1 0.033 * 101.95 = 3.36 and TP3 0.044 * 105.2 = 4.63 are below 5
    plan = plan_exits(request(amount=D("0.11"), min_notional=D(5)))
    assert [(leg.name, leg.amount) for leg in plan.legs] == [("TP2", D("0.110"))]
    assert plan.notes == (
        "TP1 (0.033) merged into TP2: below the minimum order",
        "TP3 (0.044) merged into TP2: below the minimum order",
    )
    assert all(leg.amount * leg.price >= 5 for leg in plan.legs)


def test_a_position_at_the_minimum_is_one_leg() -> None:
    plan = plan_exits(request(amount=D("0.005"), min_amount=D("0.005")))
    assert [(leg.name, leg.amount) for leg in plan.legs] == [("TP3", D("0.005"))]


# --- the trailing ladder ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "be", "tp1"), [(LONG, D("100.2"), D("101.95")), (SHORT, D("99.8"), D("98.05"))]
)
def test_break_even_after_tp1_then_tp1_after_tp2(side: PositionSide, be: D, tp1: D) -> None:
    plan = plan_exits(request(side))
    d1 = fill(plan, "TP1", "0.3")
    assert d1.actions == (ReplaceStop(price=be, amount=D("0.7")),)
    d2 = fill(d1.plan, "TP2", "0.3")
    assert d2.actions == (ReplaceStop(price=tp1, amount=D("0.4")),)
    d3 = fill(d2.plan, "TP3", "0.4")
    assert d3.actions == (CloseAll(cancel_legs=(), cancel_stop=True),)
    assert d3.plan.is_closed and d3.plan.stop is None and d3.plan.open_legs == ()


def test_break_even_can_be_disabled() -> None:
    cfg = ExitConfig(break_even=BreakEvenConfig(enabled=False))
    d1 = fill(plan_exits(request(config=cfg)), "TP1", "0.3")
    assert d1.actions == (ReplaceStop(price=D(98), amount=D("0.7")),)


def test_stop_never_loosens_when_legs_fill_out_of_order() -> None:
    plan = plan_exits(request())
    d2 = fill(plan, "TP2", "0.3")  # price gapped through TP1 and TP2; TP2's report came first
    assert d2.actions == (ReplaceStop(price=D("101.95"), amount=D("0.7")),)
    d1 = fill(d2.plan, "TP1", "0.3")  # break-even (100.2) would loosen: ignored, only resized
    assert d1.actions == (ReplaceStop(price=D("101.95"), amount=D("0.4")),)


def test_partial_fill_resizes_the_stop_and_keeps_the_leg_open() -> None:
    plan = plan_exits(request())
    d = fill(plan, "TP1", "0.1")
    assert d.actions == (ReplaceStop(price=D(98), amount=D("0.9")),)  # not moved yet
    tp1 = d.plan.legs[0]
    assert tp1.is_open and tp1.open_amount == D("0.2") and d.plan.remaining == D("0.9")
    d = fill(d.plan, "TP1", "0.2")
    assert d.actions == (ReplaceStop(price=D("100.2"), amount=D("0.7")),)
    assert not d.plan.legs[0].is_open


def test_stop_fill_closes_everything() -> None:
    d = fill(plan_exits(request()), STOP_NAME, "1")
    assert d.actions == (CloseAll(cancel_legs=("TP1", "TP2", "TP3"), cancel_stop=False),)
    assert d.plan.is_closed and d.plan.stop is None and d.plan.open_legs == ()


def test_partial_stop_fill_cancels_take_profits_and_keeps_the_stop() -> None:
    d = fill(fill(plan_exits(request()), "TP1", "0.3").plan, STOP_NAME, "0.5")
    assert d.actions == (CancelLeg(name="TP2"), CancelLeg(name="TP3"))
    assert d.plan.stop is not None and d.plan.stop.amount == D("0.2") == d.plan.remaining
    d = fill(d.plan, STOP_NAME, "0.2")
    assert d.actions == (CloseAll(cancel_legs=(), cancel_stop=False),)


def test_a_fill_that_races_a_cancel_is_accepted() -> None:
    # the stop fills in part, we cancel TP2/TP3, but TP2 had filled before the cancel landed
    d = fill(fill(plan_exits(request()), STOP_NAME, "0.5").plan, "TP2", "0.2")
    assert d.plan.remaining == D("0.3")
    assert d.actions == (ReplaceStop(price=D(98), amount=D("0.3")),)
    with pytest.raises(InvariantViolation, match=r"only 0\.100 was unfilled"):
        fill(d.plan, "TP2", "0.2")  # TP2 has 0.1 left


def test_impossible_fills_are_invariant_violations() -> None:
    plan = plan_exits(request())
    with pytest.raises(InvariantViolation, match=r"TP1 filled 0\.5 but only 0\.300 was unfilled"):
        fill(plan, "TP1", "0.5")
    with pytest.raises(InvariantViolation, match="unknown exit leg 'TP9'"):
        fill(plan, "TP9", "0.1")
    with pytest.raises(InvariantViolation, match="more than its 1"):
        fill(plan, STOP_NAME, "2")
    closed = fill(plan, STOP_NAME, "1").plan
    with pytest.raises(InvariantViolation, match="closed exit plan"):
        fill(closed, "TP1", "0.1")
    with pytest.raises(InvariantViolation, match="closed exit plan"):
        on_stop_rejected(closed, StopFallback.BOT_SIDE)


# --- rejected stop fallbacks ------------------------------------------------------------------


def test_rejected_stop_falls_back_to_a_bot_side_stop() -> None:
    d = on_stop_rejected(plan_exits(request()), "bot_side")
    assert d.actions == (BotSideStop(price=D(98), amount=D(1)),)
    assert d.plan.stop is not None and d.plan.stop.mode is StopMode.BOT_SIDE
    assert not bot_side_stop_hit(d.plan, candle_low=D("98.01"), candle_high=D(120))
    assert bot_side_stop_hit(d.plan, candle_low=98.0, candle_high=99.0)
    # later moves keep the bot-side form
    d = fill(d.plan, "TP1", "0.3")
    assert d.actions == (BotSideStop(price=D("100.2"), amount=D("0.7")),)
    # when it is hit the executor exits at market
    d = exit_at_market(d.plan)
    assert d.actions == (CancelLeg(name="TP2"), CancelLeg(name="TP3"), MarketExit(amount=D("0.7")))


def test_bot_side_stop_hit_for_a_short_and_only_in_bot_side_mode() -> None:
    plan = plan_exits(request(SHORT))
    assert not bot_side_stop_hit(plan, candle_low=90.0, candle_high=110.0)  # exchange stop
    watched = on_stop_rejected(plan, StopFallback.BOT_SIDE).plan
    assert bot_side_stop_hit(watched, candle_low=90.0, candle_high=102.0)
    assert not bot_side_stop_hit(watched, candle_low=90.0, candle_high=101.99)


def test_rejected_stop_falls_back_to_a_market_exit() -> None:
    d = on_stop_rejected(plan_exits(request()), StopFallback.MARKET_EXIT)
    assert d.actions == (
        CancelLeg(name="TP1"),
        CancelLeg(name="TP2"),
        CancelLeg(name="TP3"),
        MarketExit(amount=D(1)),
    )
    assert d.plan.stop is not None and d.plan.stop.mode is StopMode.MARKET
    assert exit_at_market(d.plan).actions == ()  # idempotent: no second market order
    done = fill(d.plan, STOP_NAME, "1")
    assert done.actions == (CloseAll(cancel_legs=(), cancel_stop=False),)
    assert done.plan.is_closed


# --- orders the venue ended on its own ---------------------------------------------------------


def test_a_take_profit_the_venue_canceled_leaves_the_plan() -> None:
    d = on_venue_cancel(fill(plan_exits(request()), "TP1", "0.3").plan, "TP2")
    assert d.actions == ()  # not sent again; the stop still covers all that remains
    assert [leg.name for leg in d.plan.open_legs] == ["TP3"]
    assert d.plan.stop is not None and d.plan.stop.amount == D("0.7") == d.plan.remaining
    # its stop anchor is gone with it: TP3 closes what it can, the stop keeps the rest
    d = fill(d.plan, "TP3", "0.4")
    assert d.actions == (ReplaceStop(price=D("100.2"), amount=D("0.3")),)
    assert on_venue_cancel(d.plan, "TP3").actions == ()  # already filled: nothing to do


def test_a_stop_the_venue_canceled_is_placed_again() -> None:
    plan = fill(plan_exits(request()), "TP1", "0.3").plan
    d = on_venue_cancel(plan, STOP_NAME)
    assert d.actions == (ReplaceStop(price=D("100.2"), amount=D("0.7")),)
    assert d.plan.legs == plan.legs  # the take-profits keep working
    watched = on_stop_rejected(plan, StopFallback.BOT_SIDE).plan
    assert on_venue_cancel(watched, STOP_NAME).actions == ()  # no exchange stop to lose


def test_a_market_exit_the_venue_canceled_is_sent_again_for_what_remains() -> None:
    out = exit_at_market(fill(plan_exits(request()), "TP1", "0.3").plan).plan
    assert on_venue_cancel(out, MARKET_EXIT_NAME).actions == (MarketExit(amount=D("0.7")),)


def test_venue_cancels_on_a_closed_plan_change_nothing_and_unknown_legs_are_errors() -> None:
    closed = fill(plan_exits(request()), STOP_NAME, "1").plan
    for name in ("TP1", STOP_NAME, MARKET_EXIT_NAME):
        assert on_venue_cancel(closed, name) == ExitDecision(plan=closed, actions=())
    with pytest.raises(InvariantViolation, match="unknown exit leg 'TP9'"):
        on_venue_cancel(plan_exits(request()), "TP9")


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_a_tick_coarser_than_half_the_stop_distance_refuses_the_plan(side: PositionSide) -> None:
    # Whole-number prices around 12: the 2 % stop (0.24) rounds to the market or a point away.
    with pytest.raises(PlanRefused, match=r"the tick 1 is too coarse for a stop 0.24"):
        plan_exits(request(side, entry_price=D(12), price_tick=D(1)))
    # Half the distance is still a stop: 0.12 of a 0.24 distance.
    plan = plan_exits(request(side, entry_price=D(12), price_tick=D("0.12")))
    assert plan.stop is not None and abs(plan.stop.price - D(12)) >= D("0.12")
