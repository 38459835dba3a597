"""Breakdown tables: per pair and per exit reason."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.analytics.trades import TradeArrays
from core.domain.trades import ClosedTrade


@dataclass(frozen=True, slots=True, kw_only=True)
class PairRow:
    """Closed trades of one symbol; the averages are None for a symbol without trades."""

    symbol: str
    trades: int
    wins: int
    win_rate_pct: float | None
    avg_profit_pct: float | None
    total_profit_abs: float
    avg_duration_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitReasonRow:
    """Exit legs with one reason, and how many trades that reason closed.

    ``legs``/``pnl_abs``/``avg_pnl_abs`` count every ``ExitLeg`` (a TP1 partial exit counts once
    per trade); ``trades_closed`` counts trades whose final leg had this reason.
    """

    reason: str
    legs: int
    pnl_abs: float
    avg_pnl_abs: float | None  # None when the reason only appears as a final reason with no legs
    trades_closed: int


def per_pair(arr: TradeArrays, symbols: Sequence[str] = ()) -> tuple[PairRow, ...]:
    """Return one row per symbol, best total profit first (then by symbol), then a row for each
    of ``symbols`` without trades: a pair that never traded is a result too, not a gap."""
    idle = tuple(
        PairRow(
            symbol=symbol,
            trades=0,
            wins=0,
            win_rate_pct=None,
            avg_profit_pct=None,
            total_profit_abs=0.0,
            avg_duration_ms=None,
        )
        for symbol in sorted(set(symbols) - set(arr.symbol))
    )
    return _traded_pairs(arr) + idle


def best_and_worst_pair(rows: Sequence[PairRow]) -> tuple[PairRow | None, PairRow | None]:
    """Return the pair that made the most and the pair that lost the most.

    Best is None when no pair made money, worst None when none lost: a losing pair is never
    "best" because the others lost more or did not trade.
    """
    best = max(rows, key=lambda r: r.total_profit_abs, default=None)
    worst = min(rows, key=lambda r: r.total_profit_abs, default=None)
    return (
        best if best is not None and best.total_profit_abs > 0 else None,
        worst if worst is not None and worst.total_profit_abs < 0 else None,
    )


def _traded_pairs(arr: TradeArrays) -> tuple[PairRow, ...]:
    if not arr.symbol:
        return ()
    symbols, code = np.unique(np.array(arr.symbol), return_inverse=True)
    count = np.bincount(code)
    wins = np.bincount(code, weights=(arr.pnl > 0).astype(np.float64))
    pnl = np.bincount(code, weights=arr.pnl)
    pct = np.bincount(code, weights=arr.pnl_pct)
    dur = np.bincount(code, weights=arr.duration_ms.astype(np.float64))
    rows = [
        PairRow(
            symbol=str(symbols[i]),
            trades=int(count[i]),
            wins=int(wins[i]),
            win_rate_pct=float(wins[i] / count[i] * 100.0),
            avg_profit_pct=float(pct[i] / count[i]),
            total_profit_abs=float(pnl[i]),
            avg_duration_ms=round(float(dur[i] / count[i])),
        )
        for i in range(len(symbols))
    ]
    return tuple(sorted(rows, key=lambda r: (-r.total_profit_abs, r.symbol)))


def per_exit_reason(trades: Sequence[ClosedTrade]) -> tuple[ExitReasonRow, ...]:
    """Return a row per reason seen on a leg or as a trade's final reason, most legs first."""
    legs: Counter[str] = Counter()
    pnl: defaultdict[str, float] = defaultdict(float)
    for trade in trades:
        for leg in trade.legs:
            legs[leg.reason] += 1
            pnl[leg.reason] += float(leg.pnl)
    closed = Counter(t.exit_reason for t in trades)
    rows = [
        ExitReasonRow(
            reason=reason,
            legs=legs[reason],
            pnl_abs=pnl[reason],
            avg_pnl_abs=pnl[reason] / legs[reason] if legs[reason] else None,
            trades_closed=closed[reason],
        )
        for reason in set(legs) | set(closed)
    ]
    return tuple(sorted(rows, key=lambda r: (-r.legs, -r.trades_closed, r.reason)))
