"""What closing every position (``/halt flatten``, the CEO's EMERGENCY) needs beyond the exit path.

A position the engine holds no exit plan for (restored from the venue, opened by hand, or an
entry that filled before its plan was placed) is closed through the same path as any other: it
gets a plan that only waits on its market exit (``market_plan``), on an adopted trade when the
engine has none (``adopted_trade``), and the exit executor sends, tracks and books that exit.
``ExposureCut`` is what the cut reports: every symbol closed, and why the others were not.
"""

from __future__ import annotations

from decimal import Decimal

from core.brains.exits import ExitPlan, StopLeg, StopMode
from core.domain.enums import PositionSide
from core.domain.portfolio import Position
from core.services.execution import client_order_id
from core.services.open_trade import OpenTrade
from core.values import value_class

ADOPTED_PROVIDER = "unmanaged"  # the provider of a closed trade the engine did not open
ADOPTED_TAG = "a"  # the client-id tag of an adopted trade's id (its orders are a-prefixed)


@value_class(frozen=True, slots=True)
class ExposureCut:
    """What ``Engine.reduce_exposure`` did: the symbols it closed at market, largest first,
    and ``not_closed`` as ``"SYMBOL: why"`` for each it was asked to close but could not."""

    closed: tuple[str, ...] = ()
    not_closed: tuple[str, ...] = ()


def adoption_order(symbol: str, cid: str) -> bool:
    """Return True when ``cid`` is the client id of an order of ours for a trade taken over
    from the venue in ``symbol`` (its tag a-prefixed, ``adopted_trade``)."""
    parts, ours = cid.split("-"), client_order_id(symbol, 0, ADOPTED_TAG).split("-")
    return len(parts) == len(ours) and parts[:3] == ours[:3] and parts[-1].startswith(ADOPTED_TAG)


def market_plan(side: PositionSide, entry_price: Decimal, amount: Decimal) -> ExitPlan:
    """Return the plan of a position that leaves at market: no take-profits, and a stop in
    MARKET mode (never placed: the plan waits on its market exit, which ``ensure_plan`` sends
    again if the venue loses it)."""
    if amount <= 0:
        raise ValueError(f"a position to close must hold something, held {amount}")
    return ExitPlan(
        side=side,
        entry_price=entry_price,
        amount=amount,
        legs=(),
        stop=StopLeg(price=entry_price, amount=amount, mode=StopMode.MARKET),
    )


def adopted_trade(
    position: Position,
    now_ms: int,
    *,
    provider: str = ADOPTED_PROVIDER,
    confidence: float = 0.0,
    atr: float = 0.0,
    plan: ExitPlan | None = None,
) -> OpenTrade:
    """Return the trade the engine keeps for a venue position it did not open, its entry
    filled (its orders' tags are a-prefixed, so they never share an id with a trade decided on
    a candle that opened in the same second). By default until its market exit fills (its
    round trip is booked like any other, provider "unmanaged"); ``plan=None`` with another
    ``provider``: one it manages from now on (``core.services.adoption``), its plan to come."""
    cid = client_order_id(position.symbol, now_ms, ADOPTED_TAG)
    if plan is None and provider == ADOPTED_PROVIDER:
        plan = market_plan(position.side, position.entry_price, position.amount)
    return OpenTrade(
        trade_id=cid,
        symbol=position.symbol,
        side=position.side,
        decided_ms=now_ms,
        entry_cid=cid,  # never sent: the entry was not ours
        confidence=confidence,
        atr=atr,
        market_type=position.market_type,
        leverage=position.leverage,
        opened_ms=position.opened_ms,
        amount=position.amount,
        entry_cost=position.amount * position.entry_price,
        liquidation_price=position.liquidation_price,
        plan=plan,
        provider=provider,
        adopted=True,
    )
