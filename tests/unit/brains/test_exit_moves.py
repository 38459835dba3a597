"""The Exit Brain's candle-close moves: max holding time, profit lock, ATR trailing stop, and the
policy's stop tightening (longs and shorts, gaps inside a candle, never loosening)."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal as D

import pytest

from core.brains.exit_config import ExitConfig, ProfitLockConfig, TrailingConfig
from core.brains.exit_moves import (
    MAX_HOLD,
    PROFIT_LOCK,
    TIGHTENED_STOP,
    TRAILING_STOP,
    CandleClose,
    hold_ends_ms,
    on_candle,
    tighten_stop,
    watch_level,
)
from core.brains.exits import (
    STOP_NAME,
    BotSideStop,
    CancelLeg,
    ExitPlan,
    LegFill,
    MarketExit,
    PlanRequest,
    ReplaceStop,
    StopMode,
    exit_at_market,
    on_fill,
    plan_exits,
)
from core.domain.enums import PositionSide

LONG, SHORT = PositionSide.LONG, PositionSide.SHORT
TICK = D("0.01")
HOUR_MS = 3_600_000
TRAIL = TrailingConfig(atr_multiple=D(2), min_factor=D("0.5"), step_per_r=D("0.1"))
LOCK = ProfitLockConfig(trigger_pct=D(2), lock_pct=D("0.5"))


def plan_for(side: PositionSide, config: ExitConfig) -> ExitPlan:
    """Entry 100, 10 units, stop 2 % (98 / 102), TP 101.95 / 103.25 / 105.20 (mirrored)."""
    req = PlanRequest(
        side=side,
        entry_price=D(100),
        amount=D(10),
        amount_step=D("0.001"),
        price_tick=TICK,
        atr=D(1),
        config=config,
    )
    return plan_exits(req)


def bar(
    config: ExitConfig, high: str, low: str, close: str, *, held_h: float = 1, atr: str = "1"
) -> CandleClose:
    return CandleClose(
        high=D(high),
        low=D(low),
        close=D(close),
        price_tick=TICK,
        config=config,
        held_ms=int(held_h * HOUR_MS),
        atr=D(atr),
    )


def fill_legs(plan: ExitPlan, *names: str) -> ExitPlan:
    for name in names:
        leg = next(leg for leg in plan.legs if leg.name == name)
        plan = on_fill(plan, LegFill(leg_name=name, amount=leg.amount)).plan
    return plan


def stop_of(plan: ExitPlan) -> D:
    assert plan.stop is not None
    return plan.stop.price


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_change_nothing_on_any_candle() -> None:
    cfg = ExitConfig()
    plan = plan_for(LONG, cfg)
    for high, low, close in (("101", "99", "100"), ("130", "60", "61"), ("200", "199", "199")):
        decision = on_candle(plan, bar(cfg, high, low, close, held_h=10_000))
        assert decision.plan == plan and decision.actions == ()
    assert watch_level(plan, cfg, D(1), TICK) is None
    assert hold_ends_ms(cfg, 0) is None


# --- max holding time -------------------------------------------------------------------------


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_max_hold_exits_at_market_once_the_time_is_up(side: PositionSide) -> None:
    cfg = ExitConfig(max_hold_hours=D(24))
    plan = plan_for(side, cfg)
    assert on_candle(plan, bar(cfg, "100.5", "99.5", "100", held_h=23.99)).actions == ()
    decision = on_candle(plan, bar(cfg, "100.5", "99.5", "100", held_h=24))
    assert decision.actions == (
        CancelLeg(name="TP1"),
        CancelLeg(name="TP2"),
        CancelLeg(name="TP3"),
        MarketExit(amount=D(10), reason=MAX_HOLD),
    )
    assert decision.plan.stop is not None and decision.plan.stop.mode is StopMode.MARKET
    # Exiting already: a later candle sends nothing more.
    assert on_candle(decision.plan, bar(cfg, "101", "99", "100", held_h=30)).actions == ()
    assert hold_ends_ms(cfg, 1_000) == 1_000 + 24 * HOUR_MS


# --- profit lock ------------------------------------------------------------------------------


def test_profit_lock_moves_a_long_stop_once_the_trigger_was_reached() -> None:
    cfg = ExitConfig(profit_lock=LOCK)
    plan = plan_for(LONG, cfg)
    assert watch_level(plan, cfg, None, TICK) == D(102)  # the trigger: +2 %
    assert on_candle(plan, bar(cfg, "101.99", "100", "101")).actions == ()
    locked = on_candle(plan, bar(cfg, "102", "100.8", "101.5"))
    assert locked.actions == (ReplaceStop(price=D("100.50"), amount=D(10), reason=PROFIT_LOCK),)
    assert watch_level(locked.plan, cfg, None, TICK) is None  # locked: nothing left to watch
    # Locked once: a higher high moves nothing more.
    assert on_candle(locked.plan, bar(cfg, "104", "103", "103.5")).actions == ()


def test_profit_lock_of_a_short_mirrors() -> None:
    cfg = ExitConfig(profit_lock=LOCK)
    plan = plan_for(SHORT, cfg)
    assert watch_level(plan, cfg, None, TICK) == D(98)
    assert on_candle(plan, bar(cfg, "100", "98.01", "99")).actions == ()
    locked = on_candle(plan, bar(cfg, "99.5", "98", "98.8"))
    assert locked.actions == (ReplaceStop(price=D("99.50"), amount=D(10), reason=PROFIT_LOCK),)


@pytest.mark.parametrize(
    ("side", "candle"), [(LONG, ("102.5", "100.1", "100.2")), (SHORT, ("99.9", "97.5", "99.8"))]
)
def test_profit_lock_gapped_back_through_the_lock_inside_the_candle_exits_at_market(
    side: PositionSide, candle: tuple[str, str, str]
) -> None:
    cfg = ExitConfig(profit_lock=LOCK)
    decision = on_candle(plan_for(side, cfg), bar(cfg, *candle))
    assert decision.actions[-1] == MarketExit(amount=D(10), reason=PROFIT_LOCK)


def test_profit_lock_never_loosens_a_stop_already_beyond_it() -> None:
    cfg = ExitConfig(profit_lock=LOCK)
    plan = plan_for(LONG, cfg)
    plan = fill_legs(plan, "TP1", "TP2")  # the ladder moved the stop to TP1, 101.95
    assert stop_of(plan) == D("101.95")
    assert on_candle(plan, bar(cfg, "104", "103", "103.5")).actions == ()  # no trail configured


# --- trailing stop ----------------------------------------------------------------------------


def test_trailing_waits_for_the_last_but_one_take_profit_by_default() -> None:
    cfg = ExitConfig(trailing=TRAIL)
    plan = plan_for(LONG, cfg)
    assert on_candle(plan, bar(cfg, "101", "99", "100.5")).actions == ()
    after_tp1 = fill_legs(plan, "TP1")
    assert on_candle(after_tp1, bar(cfg, "103", "102", "102.5")).actions == ()
    assert watch_level(after_tp1, cfg, D(1), TICK) is None


def test_trailing_after_tp1_when_configured() -> None:
    cfg = ExitConfig(trailing=replace(TRAIL, after_tp=1))
    plan = fill_legs(plan_for(LONG, cfg), "TP1")
    # best 103, profit 1.5 R -> factor 0.85 -> 103 - 2 * 0.85 * 1 = 101.30
    decision = on_candle(plan, bar(cfg, "103", "102", "102.5"))
    assert decision.actions == (ReplaceStop(price=D("101.30"), amount=D(7), reason=TRAILING_STOP),)


def test_long_trail_follows_the_high_tightens_with_profit_and_never_loosens() -> None:
    cfg = ExitConfig(trailing=TRAIL)
    plan = fill_legs(plan_for(LONG, cfg), "TP1", "TP2")
    assert stop_of(plan) == D("101.95")
    # best 104: 2 R -> factor 0.8 -> 104 - 1.6 = 102.40
    first = on_candle(plan, bar(cfg, "104", "103.3", "103.8"))
    assert first.actions == (ReplaceStop(price=D("102.40"), amount=D(4), reason=TRAILING_STOP),)
    assert first.plan.best_price == D(104)
    assert watch_level(first.plan, cfg, D(1), TICK) == D(104)
    # A lower high: the best stays, nothing moves (even with a bigger ATR today).
    assert on_candle(first.plan, bar(cfg, "103.9", "103", "103.1", atr="3")).actions == ()
    # best 105: 2.5 R -> factor 0.75 -> 105 - 1.5 = 103.50
    second = on_candle(first.plan, bar(cfg, "105", "104", "104.2"))
    assert second.actions == (ReplaceStop(price=D("103.50"), amount=D(4), reason=TRAILING_STOP),)


def test_short_trail_follows_the_low() -> None:
    cfg = ExitConfig(trailing=TRAIL)
    plan = fill_legs(plan_for(SHORT, cfg), "TP1", "TP2")
    assert stop_of(plan) == D("98.05")
    # best 96: 2 R -> factor 0.8 -> 96 + 1.6 = 97.60
    decision = on_candle(plan, bar(cfg, "96.7", "96", "96.2"))
    assert decision.actions == (ReplaceStop(price=D("97.60"), amount=D(4), reason=TRAILING_STOP),)


def test_trail_factor_stops_shrinking_at_the_minimum() -> None:
    cfg = ExitConfig(trailing=replace(TRAIL, step_per_r=D(1)))
    plan = fill_legs(plan_for(LONG, cfg), "TP1", "TP2")
    # 2 R: 1 - 2 < 0.5 -> 0.5 -> 104 - 1 = 103.00
    decision = on_candle(plan, bar(cfg, "104", "103.5", "103.8"))
    assert stop_of(decision.plan) == D("103.00")


@pytest.mark.parametrize(
    ("side", "candle"), [(LONG, ("106", "103", "103")), (SHORT, ("97", "94", "97"))]
)
def test_a_reversal_through_the_new_trail_inside_the_candle_exits_at_market(
    side: PositionSide, candle: tuple[str, str, str]
) -> None:
    cfg = ExitConfig(trailing=TRAIL)
    plan = fill_legs(plan_for(side, cfg), "TP1", "TP2")
    decision = on_candle(plan, bar(cfg, *candle))
    assert decision.actions[-1] == MarketExit(amount=D(4), reason=TRAILING_STOP)


def test_no_atr_no_trail() -> None:
    cfg = ExitConfig(trailing=TRAIL)
    plan = fill_legs(plan_for(LONG, cfg), "TP1", "TP2")
    candle = replace(bar(cfg, "104", "103.3", "103.8"), atr=None)
    assert on_candle(plan, candle).actions == ()


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_a_random_walk_never_loosens_the_stop(side: PositionSide) -> None:
    cfg = ExitConfig(trailing=TRAIL, profit_lock=LOCK)
    plan = fill_legs(plan_for(side, cfg), "TP1", "TP2")
    rng = random.Random(5)
    sign = 1 if side is LONG else -1
    price = 103.0 if side is LONG else 97.0
    for _ in range(300):
        if plan.stop is None or plan.stop.mode is StopMode.MARKET:
            break
        before = stop_of(plan)
        price += rng.uniform(-0.4, 0.45) * sign
        high, low = price + rng.uniform(0, 0.5), price - rng.uniform(0, 0.5)
        close = rng.uniform(low, high)
        decision = on_candle(plan, bar(cfg, f"{high:.2f}", f"{low:.2f}", f"{close:.2f}"))
        plan = decision.plan
        assert plan.stop is not None
        after = plan.stop.price
        assert (after - before) * sign >= 0, "the stop loosened"
        if decision.actions and isinstance(decision.actions[0], ReplaceStop):
            assert (D(f"{close:.2f}") - after) * sign > 0, "a stop at or past the price"


# --- stop tightening --------------------------------------------------------------------------


def test_tighten_moves_a_long_stop_by_the_factor_once() -> None:
    plan = plan_for(LONG, ExitConfig())
    decision = tighten_stop(plan, D("0.5"), D(104), TICK)  # distance 6 -> 3
    assert decision.actions == (
        ReplaceStop(price=D("101.00"), amount=D(10), reason=TIGHTENED_STOP),
    )
    assert decision.plan.stop_factor == D("0.5")
    again = tighten_stop(decision.plan, D("0.5"), D(110), TICK)
    assert again.plan == decision.plan and again.actions == ()  # applied already
    # A stronger factor applies only what is new: 0.25 / 0.5 of today's distance (9 -> 4.5).
    more = tighten_stop(decision.plan, D("0.25"), D(110), TICK)
    assert stop_of(more.plan) == D("105.50") and more.plan.stop_factor == D("0.25")
    # Relaxed later: the stop stays where it is.
    assert tighten_stop(more.plan, D(1), D(110), TICK).actions == ()


def test_tighten_a_short_stop_and_a_watched_one() -> None:
    plan = plan_for(SHORT, ExitConfig())
    decision = tighten_stop(plan, D("0.5"), D(96), TICK)  # 102 -> 99
    assert decision.actions == (ReplaceStop(price=D("99.00"), amount=D(10), reason=TIGHTENED_STOP),)
    watched = replace(plan, stop=replace(plan.stop, mode=StopMode.BOT_SIDE))
    moved = tighten_stop(watched, D("0.5"), D(96), TICK)
    assert moved.actions == (BotSideStop(price=D("99.00"), amount=D(10), reason=TIGHTENED_STOP),)


def test_factor_one_is_a_no_op() -> None:
    plan = plan_for(LONG, ExitConfig())
    decision = tighten_stop(plan, D(1), D(104), TICK)
    assert decision.plan is plan and decision.actions == ()


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_tighten_never_crosses_the_price_nor_loosens(side: PositionSide) -> None:
    plan = plan_for(side, ExitConfig())
    stop = stop_of(plan)
    sign = 1 if side is LONG else -1
    one_tick_away = stop + sign * TICK
    # One tick of room: rounding away from the price leaves the stop where it is.
    decision = tighten_stop(plan, D("0.01"), one_tick_away, TICK)
    assert decision.actions == () and stop_of(decision.plan) == stop
    # The price through the stop: nothing to tighten (the stop fills).
    assert tighten_stop(plan, D("0.5"), stop - sign * D(1), TICK).actions == ()
    # A tiny factor far from the stop: one tick short of the price at most.
    near = tighten_stop(plan, D("0.0001"), D(100), TICK)
    assert (D(100) - stop_of(near.plan)) * sign >= TICK


@pytest.mark.parametrize("factor", [D(0), D("-0.5"), D("1.01")])
def test_tighten_refuses_a_factor_out_of_range(factor: D) -> None:
    with pytest.raises(ValueError, match="stop tightening factor"):
        tighten_stop(plan_for(LONG, ExitConfig()), factor, D(100), TICK)


def test_nothing_moves_while_exiting_at_market() -> None:
    cfg = ExitConfig(trailing=TRAIL, profit_lock=LOCK, max_hold_hours=D(1))
    leaving = exit_at_market(plan_for(LONG, cfg)).plan
    assert on_candle(leaving, bar(cfg, "110", "100", "109", held_h=5)).actions == ()
    assert tighten_stop(leaving, D("0.5"), D(104), TICK).actions == ()
    assert watch_level(leaving, cfg, D(1), TICK) is None


def test_a_ladder_move_drops_the_reason_of_the_stop_it_replaces() -> None:
    cfg = ExitConfig(profit_lock=ProfitLockConfig(trigger_pct=D("1.5"), lock_pct=D("0.1")))
    locked = on_candle(plan_for(LONG, cfg), bar(cfg, "101.6", "101", "101.2")).plan
    assert locked.stop is not None and locked.stop.reason == PROFIT_LOCK
    be = fill_legs(locked, "TP1")  # break-even 100.20 is tighter than the lock at 100.10
    assert be.stop is not None and (be.stop.price, be.stop.reason) == (D("100.20"), "")
    stopped = on_fill(be, LegFill(leg_name=STOP_NAME, amount=D(7)))
    assert stopped.plan.is_closed


def test_config_refuses_a_lock_at_or_beyond_its_trigger() -> None:
    with pytest.raises(ValueError, match="lock_pct"):
        ProfitLockConfig(trigger_pct=D(1), lock_pct=D(1))
    with pytest.raises(ValueError, match="min_factor"):
        TrailingConfig(atr_multiple=D(1), min_factor=D(0))
    with pytest.raises(ValueError, match="max_hold_hours"):
        ExitConfig(max_hold_hours=D(-1))
