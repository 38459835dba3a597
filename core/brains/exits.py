"""Exit brain: plan a take-profit ladder plus a stop, then move them as fills arrive.

Pure functions over frozen values (the config lives in ``core.brains.exit_config``, re-exported
here). The executor places what ``plan_exits`` returns, reports every fill through ``on_fill`` and
carries out the returned actions in order. Conventions, and why:

* Targets are positive distances from the entry (percent, ATR multiple) or absolute prices; the side
  sets the direction. LONG: take-profits above the entry, stop below. SHORT: mirrored.
* Prices round to the tick conservatively: take-profits *toward the entry* (at least as likely to
  fill as planned), stops *toward the profit side* (up for a long, down for a short) so the loss at
  the stop is never larger than planned.
* Leg amounts are ``fraction × amount`` rounded down to the step; the last leg takes the remainder,
  so the legs sum exactly to the position. A leg below the venue's minimum (``min_amount``, or a
  notional ``amount × price`` below ``min_notional``: the venue would refuse it) is merged into
  the next leg (its share exits at the next, farther price; its stop move is dropped); a last
  leg that is too small is merged back into the previous kept leg. ``ExitPlan.notes`` says so.
  A leg is valued at the worse of its price and the stop's: whatever is left after a leg fills
  may have to leave through the stop, and the venue must take that order too.
* The stop covers the whole remaining position (``stop.amount == plan.remaining``) and never
  loosens: a move away from the price is ignored.
* The stop moves when a leg is *completely* filled, to that leg's anchor (break-even, the previous
  leg's price, or nowhere). A partial fill only shrinks the position and resizes the stop.
* Any stop fill means the market turned against us: all take-profit legs are cancelled.
* When nothing remains, ``CloseAll`` lists every exit order still open, so none is orphaned.
* Dynamic mode scales percent legs by volatility (ATR% over a reference ATR%), and percent and ATR
  legs by confidence (ATR legs are volatility-scaled already); the product is clamped to
  ``[min_scale, max_scale]``. Price legs are never scaled. The stop may be volatility-scaled (never
  by confidence: confidence must not buy extra risk) and is capped at ``max_stop_pct``.
"""

from __future__ import annotations

import math
from dataclasses import field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

from core.brains.exit_config import (
    DEFAULT_LEGS,
    HUNDRED,
    ONE,
    ZERO,
    BreakEvenConfig,
    DynamicConfig,
    ExitConfig,
    LegSpec,
    StopAnchor,
    Target,
    TargetKind,
    require_decimal,
)
from core.domain.enums import PositionSide
from core.errors import InvariantViolation
from core.values import value_class

__all__ = [
    "DEFAULT_LEGS",
    "MARKET_EXIT_NAME",
    "STOP_NAME",
    "Action",
    "BotSideStop",
    "BreakEvenConfig",
    "CancelLeg",
    "CloseAll",
    "DynamicConfig",
    "ExitConfig",
    "ExitDecision",
    "ExitPlan",
    "LegFill",
    "LegSpec",
    "MarketExit",
    "PlanRefused",
    "PlanRequest",
    "ReplaceStop",
    "StopAnchor",
    "StopFallback",
    "StopLeg",
    "StopMode",
    "TakeProfitLeg",
    "Target",
    "TargetKind",
    "bot_side_stop_hit",
    "exit_at_market",
    "on_fill",
    "on_stop_rejected",
    "on_venue_cancel",
    "plan_exits",
]

STOP_NAME = "SL"  # the leg name of the stop (and of a market exit) in ``LegFill``
MARKET_EXIT_NAME = "EXIT"  # a market exit order in ``on_venue_cancel`` (its fills use STOP_NAME)


# --- plan state -------------------------------------------------------------------------------


class StopMode(StrEnum):
    """How the stop is enforced: an exchange order, watched by the bot, or a market exit sent."""

    EXCHANGE = "exchange"
    BOT_SIDE = "bot_side"
    MARKET = "market"


class StopFallback(StrEnum):
    """What to do when the exchange rejects the stop order."""

    BOT_SIDE = "bot_side"
    MARKET_EXIT = "market_exit"


@value_class(frozen=True, slots=True, kw_only=True)
class TakeProfitLeg:
    """A take-profit limit order; ``stop_after_fill`` is where the stop goes once it is filled."""

    name: str
    price: Decimal
    amount: Decimal
    filled: Decimal = ZERO
    canceled: bool = False
    stop_after_fill: Decimal | None = None

    @property
    def open_amount(self) -> Decimal:
        """Return what can still fill (zero once filled or cancelled)."""
        return ZERO if self.canceled else self.amount - self.filled

    @property
    def is_open(self) -> bool:
        """Return True while the leg's order should be on the exchange."""
        return self.open_amount > ZERO


@value_class(frozen=True, slots=True, kw_only=True)
class StopLeg:
    """The protective stop; ``amount`` always equals the plan's remaining position."""

    price: Decimal
    amount: Decimal
    mode: StopMode = StopMode.EXCHANGE
    # The exit reason of a stop a candle move put here (TRAILING_STOP, PROFIT_LOCK,
    # TIGHTENED_STOP: core.brains.exit_moves); "" for the plan's and the ladder's stops.
    reason: str = ""


@value_class(frozen=True, slots=True, kw_only=True)
class ExitPlan:
    """The exits of one position. ``stop`` is None once the position is closed."""

    side: PositionSide
    entry_price: Decimal
    amount: Decimal
    legs: tuple[TakeProfitLeg, ...]
    stop: StopLeg | None
    stop_filled: Decimal = ZERO
    scale: Decimal = ONE  # the multiplier applied to percent legs (1 when static)
    notes: tuple[str, ...] = ()  # what planning had to change (legs merged below the minimum)
    # Candle-close moves (core.brains.exit_moves): the planned stop (1 R from the entry), the
    # best price seen since the entry (high for a long, low for a short), and the stop
    # tightening factor applied so far (1: none), so a repeated cycle never tightens twice.
    initial_stop: Decimal | None = None
    best_price: Decimal | None = None
    stop_factor: Decimal = ONE

    @property
    def remaining(self) -> Decimal:
        """Return the open position: amount minus everything filled by TP legs and the stop."""
        return self.amount - sum((leg.filled for leg in self.legs), ZERO) - self.stop_filled

    @property
    def is_closed(self) -> bool:
        """Return True when nothing of the position remains."""
        return self.remaining == ZERO

    @property
    def open_legs(self) -> tuple[TakeProfitLeg, ...]:
        """Return the take-profit legs whose orders are still working."""
        return tuple(leg for leg in self.legs if leg.is_open)


# --- actions for the executor -----------------------------------------------------------------


@value_class(frozen=True, slots=True, kw_only=True)
class ReplaceStop:
    """Replace the exchange stop with one at ``price`` for ``amount`` (the remaining position);
    ``reason`` is its exit reason when it fills ("" : SL or TSL)."""

    price: Decimal
    amount: Decimal
    reason: str = ""


@value_class(frozen=True, slots=True, kw_only=True)
class BotSideStop:
    """Hold no exchange stop; watch ``price`` (``bot_side_stop_hit``) for ``amount``."""

    price: Decimal
    amount: Decimal
    reason: str = ""


@value_class(frozen=True, slots=True, kw_only=True)
class CancelLeg:
    """Cancel the take-profit order of leg ``name``."""

    name: str


@value_class(frozen=True, slots=True, kw_only=True)
class MarketExit:
    """Close ``amount`` at market now; report its fills as ``LegFill(leg_name=STOP_NAME)``.
    ``reason`` names the exit in reports ("": the executor's, e.g. SL or SIGNAL)."""

    amount: Decimal
    reason: str = ""


@value_class(frozen=True, slots=True, kw_only=True)
class CloseAll:
    """The position is flat: cancel these leftover exit orders. Sends no trade."""

    cancel_legs: tuple[str, ...]
    cancel_stop: bool


Action = ReplaceStop | BotSideStop | CancelLeg | MarketExit | CloseAll


@value_class(frozen=True, slots=True, kw_only=True)
class ExitDecision:
    """The new plan and what the executor must do on the exchange, in order."""

    plan: ExitPlan
    actions: tuple[Action, ...]


@value_class(frozen=True, slots=True, kw_only=True)
class LegFill:
    """A fill of leg ``leg_name`` (``TP1``…, or ``STOP_NAME`` for the stop or a market exit)."""

    leg_name: str
    amount: Decimal

    def __post_init__(self) -> None:
        require_decimal("fill amount", self.amount)
        if self.amount <= ZERO:
            raise ValueError(f"fill amount of {self.leg_name} must be > 0, was {self.amount}")


@value_class(frozen=True, slots=True, kw_only=True)
class PlanRequest:
    """Everything ``plan_exits`` needs. ``atr`` is in price units; ``confidence`` in [0, 1]."""

    side: PositionSide
    entry_price: Decimal
    amount: Decimal
    amount_step: Decimal
    price_tick: Decimal
    min_amount: Decimal = ZERO
    min_notional: Decimal = ZERO  # the venue's smallest order value (amount * price)
    atr: Decimal | float | None = None
    confidence: float = 0.5
    config: ExitConfig = field(default_factory=ExitConfig)

    def __post_init__(self) -> None:
        for name in ("entry_price", "amount", "amount_step", "price_tick"):
            value = getattr(self, name)
            require_decimal(name, value)
            if value <= ZERO:
                raise ValueError(f"{name} must be > 0, was {value}")
        for name in ("min_amount", "min_notional"):
            value = getattr(self, name)
            require_decimal(name, value)
            if value < ZERO:
                raise ValueError(f"{name} must be >= 0, was {value}")
        if self.amount < self.min_amount:
            raise ValueError(
                f"position amount {self.amount} is below the min order amount {self.min_amount}: "
                "no exit order can be placed"
            )
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], was {self.confidence}")
        if self.atr is not None and not 0.0 < float(self.atr) < math.inf:
            raise ValueError(f"atr must be > 0 when given, was {self.atr}")


# --- planning ---------------------------------------------------------------------------------


class PlanRefused(ValueError):
    """No exit plan fits this position (no stop or target above zero at the tick): the entry
    must not be made. The message is the reason."""


def _sign(side: PositionSide) -> Decimal:
    return ONE if side is PositionSide.LONG else -ONE


def _round_to(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return ((value / step).to_integral_value(rounding=rounding) * step).quantize(step)


def _round_tp(req: PlanRequest, price: Decimal) -> Decimal:
    # Toward the entry: down for a long, up for a short.
    mode = ROUND_FLOOR if req.side is PositionSide.LONG else ROUND_CEILING
    return _round_to(price, req.price_tick, mode)


def _round_stop(req: PlanRequest, price: Decimal) -> Decimal:
    # Toward the profit side: up for a long, down for a short (never more risk than planned).
    mode = ROUND_CEILING if req.side is PositionSide.LONG else ROUND_FLOOR
    return _round_to(price, req.price_tick, mode)


def _atr(req: PlanRequest, why: str) -> Decimal:
    if req.atr is None:
        raise ValueError(f"{why} needs an ATR, but the plan request has atr=None")
    return req.atr if isinstance(req.atr, Decimal) else Decimal(str(float(req.atr)))


def _scales(req: PlanRequest) -> tuple[dict[TargetKind, Decimal], Decimal]:
    """Return the take-profit multiplier per target kind and the stop's volatility multiplier."""
    dyn = req.config.dynamic
    if not dyn.enabled:
        return dict.fromkeys(TargetKind, ONE), ONE

    def clamp(x: Decimal) -> Decimal:
        return min(max(x, dyn.min_scale), dyn.max_scale)

    vol = clamp(_atr(req, "dynamic exits") / req.entry_price * HUNDRED / dyn.reference_atr_pct)
    conf = ONE + dyn.confidence_stretch * (2 * Decimal(str(req.confidence)) - ONE)
    tp = {TargetKind.PERCENT: clamp(vol * conf), TargetKind.ATR: clamp(conf), TargetKind.PRICE: ONE}
    return tp, vol


def _distance(req: PlanRequest, target: Target, what: str, profit_side: bool) -> Decimal:
    """Return the positive distance of ``target`` from the entry, before scaling."""
    if target.kind is TargetKind.PERCENT:
        return req.entry_price * target.value / HUNDRED
    if target.kind is TargetKind.ATR:
        return _atr(req, f"{what} ({target.value} ATR)") * target.value
    toward_profit = (target.value - req.entry_price) * _sign(req.side)
    distance = toward_profit if profit_side else -toward_profit
    if distance <= ZERO:
        where = "on the profit side" if profit_side else "on the losing side"
        raise ValueError(
            f"{what} price {target.value} must be {where} of the {req.side} entry {req.entry_price}"
        )
    return distance


def _stop_price(req: PlanRequest, vol_scale: Decimal, notes: list[str]) -> Decimal:
    cfg = req.config
    distance = _distance(req, cfg.stop, "stop", profit_side=False)
    if cfg.dynamic.enabled:
        if cfg.dynamic.scale_stop and cfg.stop.kind is TargetKind.PERCENT:
            distance *= vol_scale
        distance = min(distance, req.entry_price * cfg.dynamic.max_stop_pct / HUNDRED)
    sign = _sign(req.side)
    if req.price_tick * 2 > distance:
        # Rounded either way the stop would be nothing like the one planned: at the market
        # (stopped out by the spread) or far beyond it. No honest plan: no entry.
        raise PlanRefused(
            f"the tick {req.price_tick} is too coarse for a stop {distance:.6g} from the "
            f"{req.side} entry {req.entry_price} (set the symbol's price_tick)"
        )
    price = _round_stop(req, req.entry_price - sign * distance)  # >= half the distance away
    if price <= ZERO:
        raise PlanRefused(
            f"no stop fits below the {req.side} entry {req.entry_price} at tick {req.price_tick}"
        )
    return price


def _tp_prices(
    req: PlanRequest, scales: dict[TargetKind, Decimal], notes: list[str]
) -> list[Decimal]:
    sign = _sign(req.side)
    prices: list[Decimal] = []
    previous_raw = req.entry_price
    for i, spec in enumerate(req.config.legs, start=1):
        distance = _distance(req, spec.target, f"TP{i}", profit_side=True)
        raw = req.entry_price + sign * distance * scales[spec.target.kind]
        price = _round_tp(req, raw)
        previous = prices[-1] if prices else req.entry_price
        if (raw - previous_raw) * sign <= ZERO:  # the targets themselves are out of order
            raise ValueError(
                f"TP{i} rounds to {price}, not beyond {'TP' + str(i - 1) if prices else 'entry'} "
                f"{previous} for a {req.side} (targets must grow away from entry)"
            )
        if (price - previous) * sign <= ZERO:
            # Rounding to the tick collapsed it onto the previous level: one tick beyond.
            pushed = _round_tp(req, previous) + sign * req.price_tick
            if (pushed - previous) * sign <= ZERO:
                pushed += sign * req.price_tick
            notes.append(f"TP{i} at {pushed}: one tick beyond {previous} (tick {req.price_tick})")
            price = pushed
        previous_raw = raw
        if price <= ZERO:
            raise PlanRefused(
                f"TP{i} of the {req.side} entry {req.entry_price} falls at or below 0 at tick "
                f"{req.price_tick}"
            )
        prices.append(price)
    return prices


def _leg_minimum(req: PlanRequest, price: Decimal) -> Decimal:
    """Return the smallest amount the venue takes for a leg at ``price``."""
    by_notional = _round_to(req.min_notional / price, req.amount_step, ROUND_CEILING)
    return max(req.min_amount, by_notional)


def _split_amount(
    req: PlanRequest, prices: list[Decimal], stop_price: Decimal
) -> tuple[list[Decimal], list[str]]:
    """Return each leg's amount (zero for legs merged away; they sum to ``req.amount``) and a
    note for every merge. Each kept leg clears the venue minimum at its own price and at the
    stop's, so every remainder the stop may have to close clears it too."""
    fractions = [leg.fraction for leg in req.config.legs]
    raw = [_round_to(req.amount * f, req.amount_step, ROUND_FLOOR) for f in fractions[:-1]]
    raw.append(req.amount - sum(raw, ZERO))  # >= amount·last fraction > 0, since floors only shrink
    minimum = [_leg_minimum(req, min(price, stop_price)) for price in prices]
    out, carry, notes = [ZERO] * len(raw), ZERO, []
    for i, amount in enumerate(raw):
        amount += carry
        if i < len(raw) - 1 and (amount <= ZERO or amount < minimum[i]):
            carry = amount  # too small to place: it rides with the next leg
            notes.append(f"TP{i + 1} ({amount}) merged into TP{i + 2}: below the minimum order")
            continue
        out[i], carry = amount, ZERO
    kept = [i for i in range(len(out) - 1) if out[i] > ZERO]
    if out[-1] < minimum[-1] and kept:
        notes.append(
            f"TP{len(out)} ({out[-1]}) merged into TP{kept[-1] + 1}: below the minimum order"
        )
        out[kept[-1]] += out[-1]
        out[-1] = ZERO
    return out, notes


def _anchor(req: PlanRequest, spec: LegSpec, prices: list[Decimal], i: int) -> Decimal | None:
    if spec.move_stop_to is StopAnchor.PREVIOUS_LEG:
        return prices[i - 1]
    be = req.config.break_even
    if spec.move_stop_to is StopAnchor.BREAK_EVEN and be.enabled:
        buffer = req.entry_price * be.fee_buffer_pct / HUNDRED
        return _round_stop(req, req.entry_price + _sign(req.side) * buffer)
    return None


def plan_stop(req: PlanRequest) -> Decimal:
    """Return the stop price ``plan_exits(req)`` would plan, refusing what it refuses.

    For sizing before the entry, where only the stop's distance matters: the targets are
    priced too (an entry whose ladder cannot be planned must be refused here as there), but
    no leg is split or made.
    """
    scales, stop_scale = _scales(req)
    notes: list[str] = []
    _tp_prices(req, scales, notes)
    return _stop_price(req, stop_scale, notes)


def plan_exits(req: PlanRequest) -> ExitPlan:
    """Return the take-profit ladder and stop for a freshly opened position.

    Levels the tick cannot tell apart are pushed one tick apart (``ExitPlan.notes`` says so).
    Raise ``PlanRefused`` when no plan fits at all (a tick coarser than half the stop's
    distance, no stop or target above zero at this tick: the position must not be opened),
    and ValueError for a configuration that cannot work (a price target on the wrong side, an
    ATR target without an ATR).
    """
    scales, stop_scale = _scales(req)
    notes: list[str] = []
    prices = _tp_prices(req, scales, notes)
    stop_price = _stop_price(req, stop_scale, notes)
    amounts, merged = _split_amount(req, prices, stop_price)
    notes += merged
    legs = tuple(
        TakeProfitLeg(
            name=f"TP{i + 1}",
            price=prices[i],
            amount=amounts[i],
            stop_after_fill=_anchor(req, spec, prices, i),
        )
        for i, spec in enumerate(req.config.legs)
        if amounts[i] > ZERO
    )
    return ExitPlan(
        side=req.side,
        entry_price=req.entry_price,
        amount=req.amount,
        legs=legs,
        stop=StopLeg(price=stop_price, amount=req.amount),
        initial_stop=stop_price,
        scale=scales[TargetKind.PERCENT],
        notes=tuple(notes),
    )


# --- transitions ------------------------------------------------------------------------------


def _tighter(side: PositionSide, current: Decimal, proposed: Decimal) -> Decimal:
    """Return the stop closer to the price: the stop never loosens."""
    return max(current, proposed) if side is PositionSide.LONG else min(current, proposed)


def _stop_action(stop: StopLeg) -> Action:
    if stop.mode is StopMode.BOT_SIDE:
        return BotSideStop(price=stop.price, amount=stop.amount, reason=stop.reason)
    return ReplaceStop(price=stop.price, amount=stop.amount, reason=stop.reason)


def _require_open(plan: ExitPlan, what: str) -> StopLeg:
    if plan.stop is None or plan.is_closed:
        raise InvariantViolation(
            f"{what} on a closed exit plan (entry {plan.entry_price}); reconcile"
        )
    return plan.stop


def _cancel_open_legs(plan: ExitPlan) -> tuple[tuple[TakeProfitLeg, ...], tuple[str, ...]]:
    names = tuple(leg.name for leg in plan.open_legs)
    legs = tuple(replace(leg, canceled=True) if leg.is_open else leg for leg in plan.legs)
    return legs, names


def _closed(plan: ExitPlan, cancel_stop: bool) -> ExitDecision:
    legs, names = _cancel_open_legs(plan)
    done = replace(plan, legs=legs, stop=None)
    return ExitDecision(plan=done, actions=(CloseAll(cancel_legs=names, cancel_stop=cancel_stop),))


def _on_stop_fill(plan: ExitPlan, stop: StopLeg, amount: Decimal) -> ExitDecision:
    if amount > stop.amount:
        raise InvariantViolation(f"stop filled {amount}, more than its {stop.amount}; reconcile")
    plan = replace(plan, stop_filled=plan.stop_filled + amount)
    if plan.is_closed:
        return _closed(plan, cancel_stop=False)
    # The market turned against us: take-profits go, the stop order works off the rest.
    legs, names = _cancel_open_legs(plan)
    plan = replace(plan, legs=legs, stop=replace(stop, amount=plan.remaining))
    return ExitDecision(plan=plan, actions=tuple(CancelLeg(name=n) for n in names))


def _leg_index(plan: ExitPlan, name: str, what: str) -> int:
    index = next((i for i, leg in enumerate(plan.legs) if leg.name == name), None)
    if index is None:
        raise InvariantViolation(f"{what} unknown exit leg {name!r}")
    return index


def _with_leg(plan: ExitPlan, index: int, leg: TakeProfitLeg) -> ExitPlan:
    return replace(plan, legs=(*plan.legs[:index], leg, *plan.legs[index + 1 :]))


def on_fill(plan: ExitPlan, fill: LegFill) -> ExitDecision:
    """Apply a (partial) fill of a take-profit leg or of the stop and say what to change.

    A fill on a leg we already cancelled (it raced the cancel) is real and is accepted. Raise
    InvariantViolation for an unknown leg, a fill larger than the leg or the position, or a
    closed plan.
    """
    stop = _require_open(plan, f"fill of {fill.leg_name}")
    if fill.leg_name == STOP_NAME:
        return _on_stop_fill(plan, stop, fill.amount)
    index = _leg_index(plan, fill.leg_name, "fill for")
    leg = plan.legs[index]
    unfilled = min(leg.amount - leg.filled, plan.remaining)
    if fill.amount > unfilled:
        raise InvariantViolation(
            f"{leg.name} filled {fill.amount} but only {unfilled} was unfilled; reconcile"
        )
    leg = replace(leg, filled=leg.filled + fill.amount)
    plan = _with_leg(plan, index, leg)
    if plan.is_closed:
        return _closed(plan, cancel_stop=True)
    price = stop.price
    if leg.filled == leg.amount and leg.stop_after_fill is not None:
        price = _tighter(plan.side, price, leg.stop_after_fill)
    # A stop the ladder moves is the ladder's (TSL); one it leaves keeps its reason.
    reason = stop.reason if price == stop.price else ""
    moved = replace(stop, price=price, amount=plan.remaining, reason=reason)
    plan = replace(plan, stop=moved)
    if stop.mode is StopMode.MARKET:
        # The market exit is already sent; being reduce-only, it closes just what is left.
        return ExitDecision(plan=plan, actions=())
    return ExitDecision(plan=plan, actions=(_stop_action(moved),))


def exit_at_market(plan: ExitPlan, reason: str = "") -> ExitDecision:
    """Cancel the take-profits and close the remaining position at market (idempotent); the
    market exit is named ``reason`` (an Exit Brain move's; "" for the executor's own)."""
    stop = _require_open(plan, "market exit")
    if stop.mode is StopMode.MARKET:
        return ExitDecision(plan=plan, actions=())
    legs, names = _cancel_open_legs(plan)
    plan = replace(plan, legs=legs, stop=replace(stop, mode=StopMode.MARKET))
    actions: tuple[Action, ...] = (
        *(CancelLeg(name=n) for n in names),
        MarketExit(amount=stop.amount, reason=reason),
    )
    return ExitDecision(plan=plan, actions=actions)


def on_stop_rejected(plan: ExitPlan, fallback: StopFallback | str) -> ExitDecision:
    """Fall back when the exchange refuses the stop: watch the price, or exit at market."""
    stop = _require_open(plan, "stop rejection")
    if StopFallback(fallback) is StopFallback.MARKET_EXIT:
        return exit_at_market(plan)
    if stop.mode is StopMode.MARKET:
        return ExitDecision(plan=plan, actions=())
    watched = replace(stop, mode=StopMode.BOT_SIDE)
    return ExitDecision(plan=replace(plan, stop=watched), actions=(_stop_action(watched),))


def on_venue_cancel(plan: ExitPlan, leg_name: str) -> ExitDecision:
    """The venue ended a working exit order on its own (expired, maintenance, canceled in its
    UI): say what keeps the position protected.

    ``leg_name`` is a take-profit leg, ``STOP_NAME`` (the exchange stop) or
    ``MARKET_EXIT_NAME``. A take-profit is marked canceled and not sent again (the stop covers
    the whole remaining position anyway). The stop is placed again at its price, so the
    position is never left without one. A canceled market exit is sent again for what remains.
    Nothing happens on a closed plan (the cancel only confirms it) or for a leg already done.
    """
    stop = plan.stop
    if stop is None or plan.is_closed:
        return ExitDecision(plan=plan, actions=())
    if leg_name == MARKET_EXIT_NAME:
        return ExitDecision(plan=plan, actions=(MarketExit(amount=plan.remaining),))
    if leg_name == STOP_NAME:
        if stop.mode is not StopMode.EXCHANGE:
            return ExitDecision(plan=plan, actions=())  # the bot watches it, or exits at market
        again = replace(stop, amount=plan.remaining)
        return ExitDecision(plan=replace(plan, stop=again), actions=(_stop_action(again),))
    index = _leg_index(plan, leg_name, "venue cancel of")
    leg = plan.legs[index]
    if not leg.is_open:
        return ExitDecision(plan=plan, actions=())
    return ExitDecision(plan=_with_leg(plan, index, replace(leg, canceled=True)), actions=())


def bot_side_stop_hit(
    plan: ExitPlan, candle_low: Decimal | float, candle_high: Decimal | float
) -> bool:
    """Return True when this candle touched a bot-side stop (then call ``exit_at_market``)."""
    stop = plan.stop
    if stop is None or stop.mode is not StopMode.BOT_SIDE:
        return False
    if plan.side is PositionSide.LONG:
        return candle_low <= stop.price
    return candle_high >= stop.price
