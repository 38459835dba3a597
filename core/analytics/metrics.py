"""Backtest metrics: one pure function from a ``BacktestInput`` to a frozen ``BacktestMetrics``.

Conventions (the numbers mean exactly this):

- Units: money in the quote currency as float64; every ``*_pct`` field is in percent (21.0 means
  21 %); durations and timestamps in ms (UTC). ``ClosedTrade.pnl_pct`` is read as a fraction.
- Profit: ``total_profit_abs`` = last equity sample - starting balance; ``total_profit_pct`` is
  that over the starting balance. Open positions count at their last mark (the curve's value).
- Periods: a curve sample is taken at a candle's close and belongs to the UTC day and month the
  candle opened in (``BacktestInput.timeframe`` gives the candle length); the first sample is
  the opening mark. So 1d candles from 2022-01-01 to 2025-12-31 are 1,461 days.
- Daily returns: the curve is resampled to UTC day ends (the last candle of each UTC day; a day
  with no candle carries the previous day end). Day returns compare consecutive day ends; the first
  day compares with the starting balance (so a curve that starts mid-day has a partial first
  day). A day that opens at equity <= 0 has a return of 0.
- Sharpe = mean / sample std (ddof=1) of daily returns * sqrt(365); risk-free rate 0; crypto trades
  every day, hence 365. Sortino = mean / downside deviation * sqrt(365), where downside deviation
  = sqrt(mean(min(r, 0)^2)) over all days. Omega = sum of positive daily returns / -sum of
  negative ones (threshold 0). Daily VaR and ES are historical at 95 %: with k = ceil(n * 5 / 100)
  worst days, VaR is the k-th worst day's loss and ES the mean loss of the k worst days, in percent
  of equity, positive meaning a loss. All of these need at least 2 daily returns.
- Best / worst day: largest / smallest change of day-end equity (absolute, includes open marks).
- CAGR over the calendar span of the curve (last ts - first ts, 365-day years), from the starting
  balance to the last equity; None for spans under one day. Calmar = CAGR / max drawdown (both in
  percent, so it is the plain ratio).
- Max drawdown: the largest fall from a running peak as a percent of that peak, over the curve
  samples; the absolute figure is peak - trough of that same drawdown (see ``DrawdownStats``).
- Trades: win pnl > 0, loss pnl < 0, draw == 0 (net of fees). Profit factor = gross profit /
  gross loss. Expectancy = mean trade pnl (abs), which equals Freqtrade's
  win_rate * avg_win - loss_rate * avg_loss. Expectancy ratio = ((1 + avg_win / avg_loss) *
  win_rate) - 1 (Freqtrade's ``calculate_expectancy``). SQN = sqrt(n) * mean(pnl) / std(pnl,
  ddof=1). Streaks run over trades in close-time order; a draw breaks both streaks.
- Pairs: one row per symbol the backtest ran on (``BacktestInput.symbols``), those without
  trades last with 0 trades. Best pair = the pair with the largest positive total pnl (abs),
  None when no pair made money; worst pair = the largest loss, None when no pair lost.
- Market change (buy and hold): mean over the benchmark symbols of last / first close - 1.

Undefined figures are None (no trades, fewer than 2 days, 0 / 0, flat equity for Sharpe); a
positive number over a zero denominator (profit factor or expectancy ratio with no losing trade,
Sortino or Omega with no losing day, Calmar with no drawdown) is ``math.inf``; reports render it
as "inf" (the JSON file holds the string "inf").
"""

from __future__ import annotations

from dataclasses import dataclass

from core.analytics.benchmark import market_change_pct
from core.analytics.breakdowns import (
    ExitReasonRow,
    PairRow,
    best_and_worst_pair,
    per_exit_reason,
    per_pair,
)
from core.analytics.drawdown import DrawdownStats, drawdown_stats
from core.analytics.inputs import BacktestInput
from core.analytics.periods import MonthRow, daily_series, monthly_table
from core.analytics.returns import cagr_pct, omega, ratio_or_inf, sharpe, sortino, var_es
from core.analytics.trades import TradeArrays, TradeStats, trade_stats
from core.domain.market import timeframe_to_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestMetrics:
    """The summary of one backtest (see the module docstring for every convention)."""

    start_ms: int
    end_ms: int
    timeframe: str
    days: int  # UTC calendar days the curve touches = number of daily returns
    starting_balance: float
    final_balance: float
    total_profit_abs: float
    total_profit_pct: float
    cagr_pct: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    omega: float | None
    daily_var_95_pct: float | None
    daily_es_95_pct: float | None
    best_day_abs: float
    worst_day_abs: float
    winning_days: int
    losing_days: int
    flat_days: int
    market_change_pct: float | None
    fees_paid: float
    funding: float | None  # received > 0, paid < 0; None when not modelled (no data)
    best_pair: str | None
    best_pair_profit_abs: float | None
    worst_pair: str | None
    worst_pair_profit_abs: float | None
    drawdown: DrawdownStats
    trades: TradeStats
    per_pair: tuple[PairRow, ...]
    exit_reasons: tuple[ExitReasonRow, ...]
    monthly: tuple[MonthRow, ...]


def compute_metrics(inp: BacktestInput) -> BacktestMetrics:
    """Compute every backtest metric from the equity curve, the trades and the benchmarks."""
    curve = inp.curve
    start_balance = float(inp.starting_balance)
    final = float(curve.equity[-1])
    candle_ms = timeframe_to_ms(inp.timeframe)
    daily = daily_series(curve, start_balance, candle_ms)
    arr = TradeArrays.from_trades(inp.trades)
    dd = drawdown_stats(curve)
    cagr = cagr_pct(start_balance, final, int(curve.ts_ms[-1] - curve.ts_ms[0]))
    calmar = None if cagr is None else ratio_or_inf(cagr, dd.max_drawdown_pct)
    var, es = var_es(daily.returns)
    pairs = per_pair(arr, inp.symbols)
    best, worst = best_and_worst_pair(pairs)
    return BacktestMetrics(
        start_ms=int(curve.ts_ms[0]),
        end_ms=int(curve.ts_ms[-1]),
        timeframe=inp.timeframe,
        days=len(daily.returns),
        starting_balance=start_balance,
        final_balance=final,
        total_profit_abs=final - start_balance,
        total_profit_pct=(final / start_balance - 1.0) * 100.0,
        cagr_pct=cagr,
        sharpe=sharpe(daily.returns),
        sortino=sortino(daily.returns),
        calmar=calmar,
        omega=omega(daily.returns),
        daily_var_95_pct=var,
        daily_es_95_pct=es,
        best_day_abs=float(daily.change_abs.max()),
        worst_day_abs=float(daily.change_abs.min()),
        winning_days=int((daily.change_abs > 0).sum()),
        losing_days=int((daily.change_abs < 0).sum()),
        flat_days=int((daily.change_abs == 0).sum()),
        market_change_pct=market_change_pct(inp.benchmarks),
        fees_paid=float(inp.fees_paid),
        funding=None if inp.funding is None else float(inp.funding),
        best_pair=None if best is None else best.symbol,
        best_pair_profit_abs=None if best is None else best.total_profit_abs,
        worst_pair=None if worst is None else worst.symbol,
        worst_pair_profit_abs=None if worst is None else worst.total_profit_abs,
        drawdown=dd,
        trades=trade_stats(arr),
        per_pair=pairs,
        exit_reasons=per_exit_reason(inp.trades),
        monthly=monthly_table(curve, start_balance, arr.closed_ms, candle_ms),
    )
