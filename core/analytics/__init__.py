"""Backtest analytics: pure numpy metrics over an equity curve and closed trades."""

from core.analytics.benchmark import (
    BenchmarkSeries,
    align_close,
    buy_and_hold_curve,
    market_change_pct,
)
from core.analytics.breakdowns import ExitReasonRow, PairRow
from core.analytics.drawdown import DrawdownStats, underwater_fraction
from core.analytics.inputs import BacktestInput, EquityCurve
from core.analytics.metrics import BacktestMetrics, compute_metrics
from core.analytics.periods import MonthRow
from core.analytics.trades import TradeStats

__all__ = [
    "BacktestInput",
    "BacktestMetrics",
    "BenchmarkSeries",
    "DrawdownStats",
    "EquityCurve",
    "ExitReasonRow",
    "MonthRow",
    "PairRow",
    "TradeStats",
    "align_close",
    "buy_and_hold_curve",
    "compute_metrics",
    "market_change_pct",
    "underwater_fraction",
]
