"""Builders of closed trades and member predictions for the Strategy Brain's tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from decimal import Decimal

from core.brains.strategy_input import (
    MemberRecord,
    StrategyReviewConfig,
    StrategyReviewInput,
    StrategyState,
)
from core.brains.strategy_stats import Prediction
from core.domain.enums import MarketType, PositionSide
from core.domain.trades import ClosedTrade

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
T0_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC
NOTIONAL = 1_000.0  # every trade's entry notional: pnl = return * NOTIONAL


def trade(
    ret: float,
    *,
    provider: str = "ema_rsi",
    regime: str = "trend_low_vol",
    i: int = 0,
    side: PositionSide = PositionSide.LONG,
    symbol: str = "BTC/USDT",
    opened_ms: int | None = None,
) -> ClosedTrade:
    """Return trade number ``i`` (opened an hour after the previous, held 30 min) returning
    ``ret`` of its notional (a short's pnl is its return too: the sign is the trade's)."""
    opened = T0_MS + i * HOUR_MS if opened_ms is None else opened_ms
    return ClosedTrade(
        trade_id=f"{provider}-{i}",
        symbol=symbol,
        side=side,
        market_type=MarketType.SPOT if side is PositionSide.LONG else MarketType.PERP,
        leverage=1,
        opened_ms=opened,
        closed_ms=opened + HOUR_MS // 2,
        amount=Decimal(10),
        entry_price=Decimal(100),
        exit_price=Decimal(100),
        fees=Decimal("0.1"),
        pnl=Decimal(str(round(ret * NOTIONAL, 9))),
        pnl_pct=ret,
        exit_reason="TP1",
        legs=(),
        provider=provider,
        regime=regime,
    )


def trades(
    returns: Sequence[float], *, provider: str, regime: str = "trend_low_vol", start: int = 0
) -> list[ClosedTrade]:
    """Return one trade per return, numbered from ``start``."""
    return [trade(r, provider=provider, regime=regime, i=start + k) for k, r in enumerate(returns)]


def predictions(
    p_up: Sequence[float], up: Sequence[bool], *, start: int = 0
) -> tuple[Prediction, ...]:
    """Return untraded predictions, one an hour."""
    return tuple(
        Prediction(ts_ms=T0_MS + (start + k) * HOUR_MS, p_up=p, up=u)
        for k, (p, u) in enumerate(zip(p_up, up, strict=True))
    )


def member(
    name: str, preds: Sequence[Prediction], last_retrain_ms: int | None = None
) -> MemberRecord:
    """Return a member's record."""
    return MemberRecord(member=name, predictions=tuple(preds), last_retrain_ms=last_retrain_ms)


def review_input(
    all_trades: Sequence[ClosedTrade] = (),
    *,
    members: Sequence[MemberRecord] = (),
    providers: Sequence[str] = (),
    current: StrategyState | None = None,
    config: StrategyReviewConfig | None = None,
    as_of_ms: int | None = None,
) -> StrategyReviewInput:
    """Return an input reviewed just after the newest trade (or at T0 + 30 days)."""
    newest = max((t.closed_ms for t in all_trades), default=T0_MS)
    newest = max([newest, *(p.ts_ms for m in members for p in m.predictions)])
    return StrategyReviewInput(
        as_of_ms=newest + 1 if as_of_ms is None else as_of_ms,
        trades=tuple(all_trades),
        members=tuple(members),
        providers=tuple(providers),
        current=current or StrategyState(),
        config=config or StrategyReviewConfig(),
    )


def again(inp: StrategyReviewInput, state: StrategyState) -> StrategyReviewInput:
    """Return the same input with ``state`` as the choices in force."""
    return dataclasses.replace(inp, current=state)
