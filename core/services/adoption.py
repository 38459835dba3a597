"""Adopting a venue position the bot did not open (``QT__TRADING__UNKNOWN_POSITIONS=adopt``).

The engine takes the position over as its own trade: its side, its amount and the venue's
entry price, provider ``adopted``. Its exit plan is the Exit Brain's for an entry at that price
(the symbol's ATR now, a neutral confidence, the default ladder), except that a stop the price
has already passed would fire at once: it is then put the plan's stop distance beyond the
current price instead; and take-profits the price has passed would all fill at once: the plan
is then the one of an entry at the current price. ``Engine.adopt`` keeps the trade only once
the venue holds that stop (``ExitExecutor.adopt_plan``); from then on it is stored, shown and
managed like any other.
Until then it is stored as being adopted (``OpenTrade.adopting``): a restart that finds it so
gives it up, its orders canceled, and the position is unknown again. Orders an earlier
adoption of the symbol left at the venue (a-prefixed ids of ours no trade holds) are
canceled before a new one places its own.
"""

from __future__ import annotations

import dataclasses
import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from core.brains.exits import ExitPlan, PlanRefused, plan_exits
from core.domain.enums import PositionSide
from core.domain.portfolio import Position
from core.services.flatten import adopted_trade
from core.services.open_trade import OpenTrade
from core.services.order_plans import OrderPlanner

ADOPT_PROVIDER = "adopted"  # the provider of a trade adopted from the venue at start
NEUTRAL_CONFIDENCE = 0.5  # no signal stands behind it: neither stretched nor shrunk exits


def adopted_position_trade(position: Position, now_ms: int, atr: float) -> OpenTrade:
    """Return the trade the engine keeps for ``position`` from now on, its entry filled and
    its exit plan to come (``adoption_plan``)."""
    return adopted_trade(
        position,
        now_ms,
        provider=ADOPT_PROVIDER,
        confidence=NEUTRAL_CONFIDENCE,
        atr=atr if math.isfinite(atr) and atr > 0 else 0.0,  # 0: none (in warm-up)
    )


def adoption_plan(planner: OrderPlanner, trade: OpenTrade, price: Decimal | None) -> ExitPlan:
    """Return the exit plan of an adopted ``trade``: the Exit Brain's from its entry price, the
    stop moved to the same distance beyond ``price`` (the current one, None: unknown) when
    the price is at or past it already; planned from ``price`` instead when the price is past
    a take-profit already (its reduce-only limits would all fill at once: adopting would close
    the position it means to manage). Raise ``PlanRefused`` or ``ValueError`` as
    ``plan_exits`` does (no plan: the position is not adopted)."""
    plan = _plan_from(planner, trade, trade.entry_price)
    sign = Decimal(1) if trade.side is PositionSide.LONG else Decimal(-1)
    if price is not None and any((price - leg.price) * sign >= 0 for leg in plan.legs):
        plan = _plan_from(planner, trade, price)  # as if entered now: targets ahead of it
    stop = plan.stop
    if stop is None:
        raise PlanRefused("the exit plan has no stop")
    if price is None or (price - stop.price) * sign > 0:
        return _inside_liquidation(plan, trade, sign)  # still on the safe side of the stop
    distance = (trade.entry_price - stop.price) * sign
    tick = planner.rules(trade.symbol).price_tick
    wider = ROUND_FLOOR if trade.side is PositionSide.LONG else ROUND_CEILING
    moved = ((price - sign * distance) / tick).to_integral_value(rounding=wider) * tick
    if moved <= 0:
        raise PlanRefused(f"no stop fits {distance} below the price {price}")
    # The plan's risk unit (initial_stop, for the candle moves) stays the planned distance.
    moved_plan = dataclasses.replace(plan, stop=dataclasses.replace(stop, price=moved))
    return _inside_liquidation(moved_plan, trade, sign)


def _plan_from(planner: OrderPlanner, trade: OpenTrade, price: Decimal) -> ExitPlan:
    return plan_exits(
        planner.plan_request(
            trade.symbol,
            trade.side,
            price,
            trade.amount,
            trade.atr,
            trade.confidence,
            trade.exit_profile,
        )
    )


def _inside_liquidation(plan: ExitPlan, trade: OpenTrade, sign: Decimal) -> ExitPlan:
    """Return ``plan`` if its stop fires before the venue's liquidation (perps), else refuse:
    a stop beyond it protects nothing."""
    liquidation = trade.liquidation_price
    stop = plan.stop
    if liquidation is not None and stop is not None and (stop.price - liquidation) * sign <= 0:
        raise PlanRefused(
            f"its stop {stop.price} would sit beyond the venue's liquidation price {liquidation}"
        )
    return plan
