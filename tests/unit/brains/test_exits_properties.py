"""Properties of the exit brain over random plans and random sequences of fills.

A toy executor (``Book``) applies every action to an order book, so "no orphan orders" is checked
against what the exchange would hold, not only against the plan's own view.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from core.brains.exits import (
    MARKET_EXIT_NAME,
    STOP_NAME,
    Action,
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
    TakeProfitLeg,
    Target,
    bot_side_stop_hit,
    exit_at_market,
    on_fill,
    on_stop_rejected,
    on_venue_cancel,
    plan_exits,
    plan_stop,
)
from core.domain.enums import PositionSide

TICKS = [D("0.0001"), D("0.01"), D("0.1"), D("0.5"), D(1)]
STEPS = [D("0.00001"), D("0.001"), D("0.1"), D(1)]


@st.composite
def configs(draw: st.DrawFn) -> ExitConfig:
    n = draw(st.integers(1, 4))
    cuts = sorted(draw(st.sets(st.integers(1, 99), min_size=n - 1, max_size=n - 1)))
    bounds = [0, *cuts, 100]
    fractions = [D(b - a) / 100 for a, b in itertools.pairwise(bounds)]
    atr_kind = draw(st.booleans())
    # Distances grow by >= 0.1 % or 0.25 ATR (ATR >= 0.2 % of an entry of >= 10_000 ticks): at
    # least 2.5 ticks even at the smallest scale, so rounding can never merge two legs.
    steps = draw(st.lists(st.integers(1, 20), min_size=n, max_size=n))
    targets, total = [], 0
    for s in steps:
        total += s
        targets.append(Target.atr(D(total) / 4) if atr_kind else Target.pct(D(total) / 2))
    anchors = draw(st.lists(st.sampled_from(StopAnchor), min_size=n, max_size=n))
    if anchors[0] is StopAnchor.PREVIOUS_LEG:
        anchors[0] = StopAnchor.BREAK_EVEN
    legs = tuple(
        LegSpec(target=t, fraction=f, move_stop_to=a)
        for t, f, a in zip(targets, fractions, anchors, strict=True)
    )
    stop = draw(
        st.one_of(
            st.integers(1, 200).map(lambda k: Target.pct(D(k) / 10)),
            st.integers(1, 12).map(lambda k: Target.atr(D(k) / 4)),
        )
    )
    dynamic = DynamicConfig(
        enabled=draw(st.booleans()),
        min_scale=draw(st.sampled_from([D("0.5"), D("0.8"), D(1)])),
        max_scale=draw(st.sampled_from([D(1), D("1.5"), D(2)])),
        scale_stop=draw(st.booleans()),
        max_stop_pct=draw(st.sampled_from([D(1), D(4), D(10)])),
    )
    break_even = BreakEvenConfig(
        enabled=draw(st.booleans()), fee_buffer_pct=draw(st.sampled_from([D(0), D("0.2")]))
    )
    return ExitConfig(legs=legs, stop=stop, dynamic=dynamic, break_even=break_even)


@st.composite
def requests(draw: st.DrawFn) -> PlanRequest:
    tick = draw(st.sampled_from(TICKS))
    step = draw(st.sampled_from(STEPS))
    entry = tick * draw(st.integers(10_000, 10_000_000))
    amount = step * draw(st.integers(1, 100_000))
    min_amount = min(amount, step * draw(st.integers(0, 50)))
    # a venue minimum order value between nothing and the whole position's
    min_notional = amount * entry * D(draw(st.integers(0, 100))) / 100
    atr = entry * D(draw(st.integers(20, 200))) / 10_000  # 0.2 % .. 2 % of the entry
    return PlanRequest(
        side=draw(st.sampled_from(PositionSide)),
        entry_price=entry,
        amount=amount,
        amount_step=step,
        price_tick=tick,
        min_amount=min_amount,
        min_notional=min_notional,
        atr=atr,
        confidence=draw(st.floats(0.0, 1.0)),
        config=draw(configs()),
    )


@dataclass
class Book:
    """What the exchange holds after the executor carried out every action."""

    orders: dict[str, D]  # TP legs, "SL" (exchange stop) and "MKT" (market exit) -> open amount
    watched: D | None = None  # a bot-side stop's amount
    log: list[Action] = field(default_factory=list)
    stop_lost: bool = False  # the venue canceled the exchange stop on its own

    def venue_cancels(self, name: str) -> None:
        del self.orders[name]
        self.stop_lost = name == STOP_NAME

    def apply(self, actions: tuple[Action, ...]) -> None:
        for action in actions:
            self.log.append(action)
            if isinstance(action, ReplaceStop):
                assert STOP_NAME in self.orders or self.stop_lost, "moved a stop not placed"
                self.orders[STOP_NAME] = action.amount
                self.stop_lost = False
            elif isinstance(action, BotSideStop):
                self.orders.pop(STOP_NAME, None)
                self.watched = action.amount
            elif isinstance(action, CancelLeg):
                assert self.orders.pop(action.name) > 0, f"cancelled {action.name} twice"
            elif isinstance(action, MarketExit):
                self.orders.pop(STOP_NAME, None)
                self.watched = None
                self.orders["MKT"] = action.amount
            elif isinstance(action, CloseAll):
                for name in action.cancel_legs:
                    self.orders.pop(name)
                if action.cancel_stop:
                    assert self.orders.pop(STOP_NAME, None) is not None or self.watched is not None
                    self.watched = None

    def fill(self, name: str, amount: D) -> None:
        self.orders[name] -= amount
        if self.orders[name] == 0:
            del self.orders[name]

    def stop_amount(self) -> D | None:
        for key in (STOP_NAME, "MKT"):
            if key in self.orders:
                return self.orders[key]
        return self.watched


def tighter_or_equal(side: PositionSide, before: D, after: D) -> bool:
    return after >= before if side is PositionSide.LONG else after <= before


def check(plan: ExitPlan, book: Book) -> None:
    assert plan.remaining >= 0
    assert all(leg.amount > 0 and 0 <= leg.filled <= leg.amount for leg in plan.legs)
    assert {leg.name: leg.open_amount for leg in plan.open_legs} == {
        k: v for k, v in book.orders.items() if k not in (STOP_NAME, "MKT")
    }
    assert sum((leg.open_amount for leg in plan.open_legs), D(0)) <= plan.remaining
    if plan.is_closed:
        assert plan.stop is None and plan.open_legs == ()
        assert book.orders == {} and book.watched is None, f"orphans: {book}"
    else:
        assert plan.stop is not None and plan.stop.amount == plan.remaining > 0
        assert book.stop_amount() == plan.remaining


@settings(max_examples=200, deadline=None)
@given(req=requests())
def test_plan_splits_the_position_exactly(req: PlanRequest) -> None:
    plan = plan_exits(req)
    assert sum(leg.fraction for leg in req.config.legs) == 1
    assert sum(leg.amount for leg in plan.legs) == req.amount
    assert all(leg.amount >= req.min_amount and leg.amount > 0 for leg in plan.legs)
    # every leg the venue would take, unless even one leg of everything is too small
    small = [leg for leg in plan.legs if leg.amount * leg.price < req.min_notional]
    assert not small or len(plan.legs) == 1
    assert len(plan.notes) == len(req.config.legs) - len(plan.legs)  # each merge is noted
    sign = 1 if req.side is PositionSide.LONG else -1
    assert plan.stop is not None and plan.stop.amount == req.amount
    assert (req.entry_price - plan.stop.price) * sign > 0  # stop on the losing side
    levels = [req.entry_price, *(leg.price for leg in plan.legs)]
    assert all((b - a) * sign > 0 for a, b in itertools.pairwise(levels))
    assert all(leg.price % req.price_tick == 0 for leg in plan.legs)
    assert plan.stop.price % req.price_tick == 0


@settings(max_examples=200, deadline=None)
@given(req=requests(), data=st.data())
def test_any_fill_sequence_keeps_the_invariants(req: PlanRequest, data: st.DataObject) -> None:
    plan = plan_exits(req)
    book = Book(orders={leg.name: leg.amount for leg in plan.legs} | {STOP_NAME: plan.amount})
    check(plan, book)
    for _ in range(12):
        if plan.is_closed:
            break
        assert plan.stop is not None
        before = plan.stop.price
        decision = step(plan, book, data)
        book.apply(decision.actions)
        plan = decision.plan
        check(plan, book)
        if plan.stop is not None:
            assert tighter_or_equal(plan.side, before, plan.stop.price), "stop loosened"
    # whatever happened, the stop (or a market exit) can always finish the position cleanly
    while not plan.is_closed:
        plan = step_stop_fills_all(plan, book)
        check(plan, book)


def fill_amount(open_amount: D, position: D, data: st.DataObject) -> D:
    """Draw a fill of a quarter up to all of ``open_amount``, on the position's amount grid."""
    quarters = data.draw(st.sampled_from([1, 2, 3, 4, 4]))  # whole fills are common: weight them
    grid = D(1).scaleb(position.as_tuple().exponent)  # type: ignore[arg-type]
    amount = (open_amount * quarters / 4 / grid).to_integral_value(rounding=ROUND_FLOOR) * grid
    return amount if amount > 0 else open_amount


def step(plan: ExitPlan, book: Book, data: st.DataObject) -> ExitDecision:
    """Draw one event the exchange could report, tell the toy book, and run the brain."""
    assert plan.stop is not None
    # Legs are drawn more often: any stop event ends the take-profit ladder.
    choices = [leg.name for leg in plan.open_legs] * 4 + ["stop", "reject_bot", "reject_market"]
    choices += [f"venue:{leg.name}" for leg in plan.open_legs] + ["venue:stop"]
    event = data.draw(st.sampled_from(choices))
    if event == "venue:stop":  # the venue drops whatever closes the position; we re-send it
        mode = plan.stop.mode
        if mode is not StopMode.BOT_SIDE:
            book.venue_cancels("MKT" if mode is StopMode.MARKET else STOP_NAME)
        return on_venue_cancel(plan, MARKET_EXIT_NAME if mode is StopMode.MARKET else STOP_NAME)
    if event.startswith("venue:"):
        book.venue_cancels(event.removeprefix("venue:"))
        return on_venue_cancel(plan, event.removeprefix("venue:"))
    if event == "reject_bot":
        return on_stop_rejected(plan, StopFallback.BOT_SIDE)
    if event == "reject_market":
        return on_stop_rejected(plan, StopFallback.MARKET_EXIT)
    if event == "stop":
        if plan.stop.mode is StopMode.BOT_SIDE:
            low = plan.stop.price if plan.side is PositionSide.LONG else D(0)
            high = plan.stop.price if plan.side is PositionSide.SHORT else D(10**12)
            assert bot_side_stop_hit(plan, candle_low=low, candle_high=high)
            return exit_at_market(plan)
        amount = fill_amount(plan.stop.amount, plan.amount, data)
        book.fill("MKT" if plan.stop.mode is StopMode.MARKET else STOP_NAME, amount)
        return on_fill(plan, LegFill(leg_name=STOP_NAME, amount=amount))
    leg = next(leg for leg in plan.legs if leg.name == event)
    amount = fill_amount(leg.open_amount, plan.amount, data)
    book.fill(leg.name, amount)
    return on_fill(plan, LegFill(leg_name=leg.name, amount=amount))


def step_stop_fills_all(plan: ExitPlan, book: Book) -> ExitPlan:
    assert plan.stop is not None
    if plan.stop.mode is StopMode.BOT_SIDE:
        decision = exit_at_market(plan)
        book.apply(decision.actions)
        return decision.plan
    key = "MKT" if plan.stop.mode is StopMode.MARKET else STOP_NAME
    book.fill(key, plan.stop.amount)
    decision = on_fill(plan, LegFill(leg_name=STOP_NAME, amount=plan.stop.amount))
    book.apply(decision.actions)
    return decision.plan


@settings(max_examples=200, deadline=None)
@given(req=requests(), data=st.data())
def test_legs_filled_in_any_order_never_loosen_the_stop(
    req: PlanRequest, data: st.DataObject
) -> None:
    plan = plan_exits(req)
    order = data.draw(st.permutations([leg.name for leg in plan.legs]))
    for name in order:
        assert plan.stop is not None
        before = plan.stop.price
        decision = on_fill(plan, LegFill(leg_name=name, amount=plan_leg(plan, name).open_amount))
        plan = decision.plan
        if plan.stop is not None:
            assert tighter_or_equal(plan.side, before, plan.stop.price), "stop loosened"
            assert decision.actions == (ReplaceStop(price=plan.stop.price, amount=plan.remaining),)
    assert plan.is_closed and plan.stop is None
    assert decision.actions == (CloseAll(cancel_legs=(), cancel_stop=True),)


def plan_leg(plan: ExitPlan, name: str) -> TakeProfitLeg:
    return next(leg for leg in plan.legs if leg.name == name)


@st.composite
def any_price_requests(draw: st.DrawFn) -> PlanRequest:
    """Entries from 1e-6 to 1e6 with any tick and step, coarse or fine for that price."""
    entry = D(str(draw(st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False))))
    tick = D(10) ** draw(st.integers(-9, 3))
    step = D(10) ** draw(st.integers(-8, 2))
    amount = step * draw(st.integers(1, 10_000))
    return PlanRequest(
        side=draw(st.sampled_from(PositionSide)),
        entry_price=entry,
        amount=amount,
        amount_step=step,
        price_tick=tick,
        min_amount=step,
        confidence=draw(st.floats(0.0, 1.0)),
    )


@settings(max_examples=300, deadline=None)
@given(req=any_price_requests())
def test_any_price_and_tick_gives_a_valid_plan_or_a_reasoned_refusal(req: PlanRequest) -> None:
    try:
        plan = plan_exits(req)
    except PlanRefused as refusal:
        assert str(refusal)  # says why (no stop or target above zero at this tick)
        return
    sign = 1 if req.side is PositionSide.LONG else -1
    assert plan.stop is not None and plan.stop.price > 0
    assert (req.entry_price - plan.stop.price) * sign > 0
    levels = [req.entry_price, *(leg.price for leg in plan.legs)]
    assert all((b - a) * sign > 0 for a, b in itertools.pairwise(levels))
    assert all(leg.price % req.price_tick == 0 for leg in plan.legs)
    assert plan.stop.price % req.price_tick == 0
    assert sum(leg.amount for leg in plan.legs) == req.amount


def _outcome(plan: Callable[[], object]) -> object:
    try:
        return plan()
    except ValueError as refusal:  # PlanRefused included: the same kind and the same reason
        return (type(refusal), str(refusal))


@settings(max_examples=300, deadline=None)
@given(req=st.one_of(requests(), any_price_requests()))
def test_the_sizing_stop_is_the_plans_stop_and_refuses_what_the_plan_refuses(
    req: PlanRequest,
) -> None:
    planned = _outcome(lambda: plan_exits(req))
    if isinstance(planned, ExitPlan):
        assert planned.stop is not None
        planned = planned.stop.price
    assert _outcome(lambda: plan_stop(req)) == planned
