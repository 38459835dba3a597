"""Trade statistics over closed trades: counts, edge, streaks, durations, per pair, per exit reason.

A win has pnl > 0, a loss pnl < 0, a draw pnl == 0 (pnl is net of fees). ``ClosedTrade.pnl_pct``
is read as a fraction of the entry notional (0.05 = 5 %) and shown here in percent. Trades are
ordered by close time (then open time, then id) for streaks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from core.analytics.returns import ratio_or_inf
from core.domain.market import FloatArray, IntArray
from core.domain.trades import ClosedTrade
from core.values import value_class


@value_class(frozen=True, slots=True, kw_only=True)
class TradeArrays:
    """Closed trades as columns, sorted by close time."""

    symbol: tuple[str, ...]
    pnl: FloatArray
    pnl_pct: FloatArray  # percent
    duration_ms: IntArray
    closed_ms: IntArray

    @classmethod
    def from_trades(cls, trades: Sequence[ClosedTrade]) -> TradeArrays:
        """Sort ``trades`` by close time and convert their figures to float64 / int64 columns."""
        ordered = sorted(trades, key=lambda t: (t.closed_ms, t.opened_ms, t.trade_id))
        return cls(
            symbol=tuple(t.symbol for t in ordered),
            pnl=np.array([float(t.pnl) for t in ordered], dtype=np.float64),
            pnl_pct=np.array([t.pnl_pct for t in ordered], dtype=np.float64) * 100.0,
            duration_ms=np.array([t.duration_ms for t in ordered], dtype=np.int64),
            closed_ms=np.array([t.closed_ms for t in ordered], dtype=np.int64),
        )


@value_class(frozen=True, slots=True, kw_only=True)
class TradeStats:
    """Summary of the closed trades; None where a figure is undefined (see the module docs)."""

    total: int
    wins: int
    losses: int
    draws: int
    win_rate_pct: float | None
    gross_profit_abs: float
    gross_loss_abs: float  # positive
    profit_factor: float | None  # inf with no losses
    expectancy_abs: float | None  # mean trade pnl
    expectancy_ratio: float | None  # inf with no losses
    sqn: float | None
    avg_profit_pct: float | None
    avg_duration_ms: int | None
    avg_duration_winners_ms: int | None
    avg_duration_losers_ms: int | None
    max_consecutive_wins: int
    max_consecutive_losses: int
    best_trade_pct: float | None
    best_trade_pair: str | None
    worst_trade_pct: float | None
    worst_trade_pair: str | None


def _mean_ms(values: IntArray) -> int | None:
    return round(float(np.mean(values))) if len(values) else None


def max_run(mask: np.ndarray) -> int:
    """Return the length of the longest run of True in ``mask``."""
    if not mask.any():
        return 0
    edges = np.diff(np.concatenate(([False], mask, [False])).astype(np.int8))
    return int(np.max(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)))


def sqn(pnl: FloatArray) -> float | None:
    """Return sqrt(n) * mean(pnl) / std(pnl, ddof=1); None for n < 2 or identical pnls."""
    if len(pnl) < 2:
        return None
    std = float(np.std(pnl, ddof=1))
    if std == 0:
        return None
    return math.sqrt(len(pnl)) * float(np.mean(pnl)) / std


def expectancy_ratio(pnl: FloatArray) -> float | None:
    """Return Freqtrade's ((1 + avg win / avg loss) * win rate) - 1; inf with wins but no loss."""
    if len(pnl) == 0:
        return None
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    if len(losses) == 0:
        return math.inf if len(wins) else None
    avg_win = float(wins.mean()) if len(wins) else 0.0
    avg_loss = float(-losses.mean())
    return (1.0 + avg_win / avg_loss) * (len(wins) / len(pnl)) - 1.0


def trade_stats(arr: TradeArrays) -> TradeStats:
    """Summarise the trades."""
    pnl, n = arr.pnl, len(arr.pnl)
    win, loss = pnl > 0, pnl < 0
    gross_profit = float(pnl[win].sum())
    gross_loss = float(-pnl[loss].sum())
    best = int(np.argmax(arr.pnl_pct)) if n else None
    worst = int(np.argmin(arr.pnl_pct)) if n else None
    return TradeStats(
        total=n,
        wins=int(win.sum()),
        losses=int(loss.sum()),
        draws=int(n - win.sum() - loss.sum()),
        win_rate_pct=float(win.mean()) * 100.0 if n else None,
        gross_profit_abs=gross_profit,
        gross_loss_abs=gross_loss,
        profit_factor=ratio_or_inf(gross_profit, gross_loss),
        expectancy_abs=float(pnl.mean()) if n else None,
        expectancy_ratio=expectancy_ratio(pnl),
        sqn=sqn(pnl),
        avg_profit_pct=float(arr.pnl_pct.mean()) if n else None,
        avg_duration_ms=_mean_ms(arr.duration_ms),
        avg_duration_winners_ms=_mean_ms(arr.duration_ms[win]),
        avg_duration_losers_ms=_mean_ms(arr.duration_ms[loss]),
        max_consecutive_wins=max_run(win),
        max_consecutive_losses=max_run(loss),
        best_trade_pct=float(arr.pnl_pct[best]) if best is not None else None,
        best_trade_pair=arr.symbol[best] if best is not None else None,
        worst_trade_pct=float(arr.pnl_pct[worst]) if worst is not None else None,
        worst_trade_pair=arr.symbol[worst] if worst is not None else None,
    )
