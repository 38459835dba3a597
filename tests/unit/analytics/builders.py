"""Builders for synthetic closed trades and equity curves used by the analytics and report tests."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import numpy as np

from core.analytics import BacktestInput, BenchmarkSeries, EquityCurve
from core.domain.enums import MarketType, PositionSide
from core.domain.trades import ClosedTrade, ExitLeg

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
T0_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def trade(
    pnl: float | str,
    *,
    trade_id: str = "t",
    symbol: str = "BTC/USDT",
    opened_ms: int = T0_MS,
    duration_ms: int = HOUR_MS,
    pnl_pct: float | None = None,
    reason: str = "SIGNAL",
    legs: Sequence[tuple[str, str]] | None = None,
) -> ClosedTrade:
    """Return a long spot trade with net ``pnl``; ``legs`` are (reason, pnl) pairs."""
    closed_ms = opened_ms + duration_ms
    pnl_dec = Decimal(str(pnl))
    leg_specs = legs if legs is not None else [(reason, str(pnl))]
    return ClosedTrade(
        trade_id=trade_id,
        symbol=symbol,
        side=PositionSide.LONG,
        market_type=MarketType.SPOT,
        leverage=1,
        opened_ms=opened_ms,
        closed_ms=closed_ms,
        amount=Decimal("1"),
        entry_price=Decimal("100"),
        exit_price=Decimal("100") + pnl_dec,
        fees=Decimal("0.1"),
        pnl=pnl_dec,
        pnl_pct=float(pnl_dec) / 100.0 if pnl_pct is None else pnl_pct,
        exit_reason=leg_specs[-1][0],
        legs=tuple(
            ExitLeg(
                reason=r,
                ts_ms=closed_ms,
                price=Decimal("100"),
                amount=Decimal("1") / len(leg_specs),
                fee=Decimal("0.05"),
                pnl=Decimal(p),
            )
            for r, p in leg_specs
        ),
    )


def curve(ts_ms: Sequence[int], equity: Sequence[float]) -> EquityCurve:
    """Return an equity curve from plain lists."""
    return EquityCurve.from_columns(ts_ms, equity)


def daily_curve(equity: Sequence[float], *, hour: int = 12) -> EquityCurve:
    """Return one sample per UTC day (at ``hour``:00), starting 2024-01-01."""
    ts = [T0_MS + i * DAY_MS + hour * HOUR_MS for i in range(len(equity))]
    return curve(ts, equity)


def make_input(
    eq: EquityCurve,
    *,
    start: float = 100.0,
    trades: Sequence[ClosedTrade] = (),
    benchmarks: Sequence[BenchmarkSeries] = (),
    fees: str = "0",
    symbols: Sequence[str] = (),
) -> BacktestInput:
    """Return a BacktestInput with the 1h timeframe."""
    return BacktestInput(
        curve=eq,
        starting_balance=Decimal(str(start)),
        trades=list(trades),
        fees_paid=Decimal(fees),
        timeframe="1h",
        benchmarks=tuple(benchmarks),
        symbols=tuple(symbols),
    )


def bench(symbol: str, closes: Sequence[float]) -> BenchmarkSeries:
    """Return a benchmark series from plain floats (use float('nan') for missing)."""
    return BenchmarkSeries(symbol=symbol, close=np.asarray(closes, dtype=np.float64))
