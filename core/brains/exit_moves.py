"""Exit brain, on candle closes: maximum holding time, ATR trailing stop, profit lock, and the
Risk Brain's stop-tightening factor.

Pure functions over the plan of ``core.brains.exits`` (the same ``ExitDecision`` and actions the
executor already carries out). Conventions, and why:

* They run once per closed candle, after its fills: a level the candle's extreme sets applies
  from the next candle (inside one candle the order of high and low is unknown). When the close
  is already at or through the new level (a gap or a reversal inside the candle) a stop there
  would be refused or fill at once: the remainder exits at market under that level's reason.
* Every move goes through ``_tighter``: a stop never loosens. A move that would not tighten is
  no move (no order is replaced).
* The trail follows ``ExitPlan.best_price`` (the best high of a long, low of a short since the
  trail started, from the candle of the fill that started it on) at ``best - k * f * ATR``,
  ``f = max(min_factor, 1 - profit_r * step_per_r)``, where ``profit_r`` is the best move over
  the initial stop distance (1 R): the trail tightens as the profit grows. The ATR is the
  signal's at the entry, so the level is a function of the best price alone: the same after a
  restart, and in a fast replay that skips quiet candles.
* The profit lock fires on the first candle whose extreme reaches the trigger (``trigger_pct``
  in favour of the entry) and moves the stop to ``lock_pct`` of profit.
* The trail starts once ``after_tp`` take-profit legs are completely filled (0: all but the
  last). With the default ladder that is after TP2: the 40 % left trails while TP3 still
  stands as its cap, which is what a trader running a ladder with a runner expects (README).
* ``tighten_stop`` multiplies the distance between the price and the stop by
  ``factor / stop_factor`` (the part of the factor not applied yet), floored to the tick away
  from the price, and records the factor: repeating it, or a restart, tightens nothing more.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from core.brains.exit_config import HUNDRED, ONE, ZERO, ExitConfig, require_decimal
from core.brains.exits import (
    ExitDecision,
    ExitPlan,
    StopLeg,
    StopMode,
    _round_to,
    _sign,
    _stop_action,
    _tighter,
    exit_at_market,
)
from core.domain.enums import PositionSide
from core.values import value_class

MAX_HOLD = "MAX_HOLD"
TRAILING_STOP = "TRAILING_STOP"
PROFIT_LOCK = "PROFIT_LOCK"
TIGHTENED_STOP = "TIGHTENED_STOP"
HOUR_MS = 3_600_000


@value_class(frozen=True, slots=True, kw_only=True)
class CandleClose:
    """A closed candle over an open trade, and what the moves need to know about the trade.

    ``held_ms`` is market time from the entry fill to the candle's close (None: not known);
    ``atr`` the signal's ATR at the entry in price units (None: no trailing).
    """

    high: Decimal
    low: Decimal
    close: Decimal
    price_tick: Decimal
    config: ExitConfig
    held_ms: int | None = None
    atr: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("high", "low", "close", "price_tick"):
            require_decimal(name, getattr(self, name))
        if not self.low <= self.close <= self.high:
            raise ValueError(
                f"candle needs low <= close <= high, was {self.low}/{self.close}/{self.high}"
            )
        if self.price_tick <= ZERO:
            raise ValueError(f"price_tick must be > 0, was {self.price_tick}")
        if self.atr is not None and (not self.atr.is_finite() or self.atr <= ZERO):
            raise ValueError(f"atr must be > 0 when given, was {self.atr}")


def _moving(plan: ExitPlan) -> StopLeg | None:
    """Return the stop a move may change: None when closed or already exiting at market."""
    stop = plan.stop
    if stop is None or plan.is_closed or stop.mode is StopMode.MARKET:
        return None
    return stop


def _stop_on_tick(side: PositionSide, price: Decimal, tick: Decimal) -> Decimal:
    # Toward the profit side, as planned stops are (up for a long, down for a short).
    mode = ROUND_CEILING if side is PositionSide.LONG else ROUND_FLOOR
    return _round_to(price, tick, mode)


def _beyond(side: PositionSide, level: Decimal, price: Decimal) -> bool:
    """Return True when a stop at ``level`` is at or through ``price`` (it would fill now)."""
    return level >= price if side is PositionSide.LONG else level <= price


def _extreme(side: PositionSide, candle: CandleClose) -> Decimal:
    return candle.high if side is PositionSide.LONG else candle.low


def _best(plan: ExitPlan, candle: CandleClose) -> Decimal:
    extreme = _extreme(plan.side, candle)
    if plan.best_price is None:
        return extreme
    if plan.side is PositionSide.LONG:
        return max(plan.best_price, extreme)
    return min(plan.best_price, extreme)


def _filled_legs(plan: ExitPlan) -> int:
    return sum(1 for leg in plan.legs if leg.filled == leg.amount)


def trailing_active(plan: ExitPlan, config: ExitConfig, atr: Decimal | None) -> bool:
    """Return True when the trailing stop follows the best price (see module docstring)."""
    trail = config.trailing
    if not trail.enabled or atr is None or _moving(plan) is None:
        return False
    last_but_one = max(len(plan.legs) - 1, 0)
    need = min(trail.after_tp, last_but_one) if trail.after_tp > 0 else last_but_one
    return _filled_legs(plan) >= need


def _trail_level(plan: ExitPlan, best: Decimal, config: ExitConfig, atr: Decimal) -> Decimal:
    trail, sign = config.trailing, _sign(plan.side)
    profit_r = ZERO
    if plan.initial_stop is not None and plan.initial_stop != plan.entry_price:
        risk = abs(plan.entry_price - plan.initial_stop)
        profit_r = max(ZERO, (best - plan.entry_price) * sign / risk)
    factor = max(trail.min_factor, ONE - profit_r * trail.step_per_r)
    return best - sign * trail.atr_multiple * factor * atr


def _from_entry(plan: ExitPlan, pct: Decimal) -> Decimal:
    """Return the price ``pct`` % from the entry on the profit side."""
    return plan.entry_price + _sign(plan.side) * plan.entry_price * pct / HUNDRED


def on_candle(plan: ExitPlan, candle: CandleClose) -> ExitDecision:
    """Apply the maximum holding time, the profit lock and the trailing stop at a candle's
    close; return the new plan (its best price noted) and the orders to change."""
    stop = _moving(plan)
    if stop is None:
        return ExitDecision(plan=plan, actions=())
    cfg, side = candle.config, plan.side
    hold = cfg.max_hold_hours
    if hold > ZERO and candle.held_ms is not None and candle.held_ms >= hold * HOUR_MS:
        return exit_at_market(plan, MAX_HOLD)
    proposals: list[tuple[Decimal, str]] = []
    if cfg.profit_lock.enabled and _beyond(
        side, _extreme(side, candle), _from_entry(plan, cfg.profit_lock.trigger_pct)
    ):
        proposals.append((_from_entry(plan, cfg.profit_lock.lock_pct), PROFIT_LOCK))
    if candle.atr is not None and trailing_active(plan, cfg, candle.atr):
        best = _best(plan, candle)
        plan = replace(plan, best_price=best)
        proposals.append((_trail_level(plan, best, cfg, candle.atr), TRAILING_STOP))
    price, reason = stop.price, ""
    for raw, why in proposals:
        level = _stop_on_tick(side, raw, candle.price_tick)
        if _tighter(side, price, level) != price:  # strictly tighter than the best so far
            price, reason = level, why
    if not reason:
        return ExitDecision(plan=plan, actions=())
    if _beyond(side, price, candle.close):
        return exit_at_market(plan, reason)
    moved = replace(stop, price=price, reason=reason)
    return ExitDecision(plan=replace(plan, stop=moved), actions=(_stop_action(moved),))


def watch_level(
    plan: ExitPlan, config: ExitConfig, atr: Decimal | None, price_tick: Decimal
) -> Decimal | None:
    """Return the price a candle must reach (high for a long, low for a short) for
    ``on_candle`` to move the stop, or None when no price can (a fast replay skips the rest)."""
    stop = _moving(plan)
    if stop is None:
        return None
    levels: list[Decimal] = []
    if config.profit_lock.enabled:
        lock = _stop_on_tick(plan.side, _from_entry(plan, config.profit_lock.lock_pct), price_tick)
        if _tighter(plan.side, stop.price, lock) != stop.price:
            levels.append(_from_entry(plan, config.profit_lock.trigger_pct))  # not locked yet
    if trailing_active(plan, config, atr):
        # A new best moves the trail (none yet: any candle may start it).
        levels.append(plan.best_price if plan.best_price is not None else plan.entry_price)
    if not levels:
        return None
    return min(levels) if plan.side is PositionSide.LONG else max(levels)


def hold_ends_ms(config: ExitConfig, opened_ms: int | None) -> int | None:
    """Return the market time from which a trade opened at ``opened_ms`` exits (MAX_HOLD)."""
    if config.max_hold_hours <= ZERO or opened_ms is None:
        return None
    return opened_ms + int(config.max_hold_hours * HOUR_MS)


def check_factor(factor: Decimal) -> Decimal:
    """Return ``factor`` if it is a valid stop-tightening factor (0 < f <= 1), else raise."""
    require_decimal("stop tightening factor", factor)
    if not ZERO < factor <= ONE:
        raise ValueError(f"stop tightening factor must be in (0, 1], was {factor}")
    return factor


def tighten_stop(
    plan: ExitPlan, factor: Decimal, price: Decimal, price_tick: Decimal
) -> ExitDecision:
    """Move the stop toward ``price`` so its distance is ``factor`` (0 < f <= 1) of the
    untightened one: never loosening, never at or past the price, on the tick.

    Only the part of ``factor`` beyond ``plan.stop_factor`` (what was applied already) moves
    the stop, and the plan records ``factor``: a factor of 1, or one applied before, is a no-op.
    """
    check_factor(factor)
    require_decimal("price", price)
    stop = _moving(plan)
    if stop is None or factor >= plan.stop_factor:
        return ExitDecision(plan=plan, actions=())
    sign = _sign(plan.side)
    distance = (price - stop.price) * sign
    if distance <= ZERO:
        return ExitDecision(plan=plan, actions=())  # at or through the stop: it fills now
    raw = price - sign * distance * factor / plan.stop_factor
    # Away from the price, so rounding never puts the stop at or past it.
    level = _round_to(raw, price_tick, ROUND_FLOOR if sign > 0 else ROUND_CEILING)
    plan = replace(plan, stop_factor=factor)
    if _tighter(plan.side, stop.price, level) == stop.price or _beyond(plan.side, level, price):
        return ExitDecision(plan=plan, actions=())  # the tick leaves no room to move
    moved = replace(stop, price=level, reason=TIGHTENED_STOP)
    return ExitDecision(plan=replace(plan, stop=moved), actions=(_stop_action(moved),))
