"""A stop the bot watches itself (the venue refused the stop order): did a candle reach it?

The same rule as the venue's for orders placed on a fill (``core.exchange.sim``): a stop watched
from before the candle, or set on the entry fill at its open, sees the whole candle; one moved
to after a fill inside the candle sees only the move to its close, and the stop it replaced
still answers for the part before the move (the worst case: the low came first).
"""

from __future__ import annotations

from decimal import Decimal

from core.brains.exits import ExitPlan, StopMode, bot_side_stop_hit
from core.domain.enums import PositionSide
from core.domain.market import Candle
from core.services.open_trade import OpenTrade


def watched_stop_hit(trade: OpenTrade, plan: ExitPlan, candle: Candle) -> Decimal | None:
    """Return the price of the watched stop ``candle`` reached, or None (module docstring);
    forget the replaced stop's price, which answers for one candle only."""
    before, trade.bot_stop_before = trade.bot_stop_before, None
    stop = plan.stop
    if stop is None or stop.mode is not StopMode.BOT_SIDE:
        return None
    since = trade.bot_stop_since_ms
    moved_inside = since is not None and since >= candle.ts_ms and not trade.bot_stop_whole_candle
    if moved_inside and before is not None and _crossed(plan.side, before, candle):
        return before
    low, high = (candle.close, candle.close) if moved_inside else (candle.low, candle.high)
    return stop.price if bot_side_stop_hit(plan, low, high) else None


def _crossed(side: PositionSide, level: Decimal, candle: Candle) -> bool:
    return candle.low <= level if side is PositionSide.LONG else candle.high >= level
