"""Trade statistics and breakdown tables from a handful of trades computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.analytics.breakdowns import per_exit_reason, per_pair
from core.analytics.trades import TradeArrays, max_run, trade_stats
from tests.unit.analytics.builders import HOUR_MS, T0_MS, trade

# Close order: +10, +20, -5, 0, -5, -5, +10 (listed shuffled: stats must sort by close time).
# Durations (h): winners 1, 2, 3 -> 2; losers 1, 1, 4 -> 2; the draw 7; all 19 / 7.
SPECS = [  # (close slot, pnl, duration h, symbol, pnl_pct)
    (6, "10", 3, "ETH/USDT", 0.10),
    (0, "10", 1, "BTC/USDT", 0.10),
    (2, "-5", 1, "BTC/USDT", -0.05),
    (1, "20", 2, "ETH/USDT", 0.20),
    (3, "0", 7, "SOL/USDT", 0.0),
    (5, "-5", 4, "SOL/USDT", -0.08),
    (4, "-5", 1, "BTC/USDT", -0.05),
]


def _trades():
    return [
        trade(
            pnl,
            trade_id=f"t{slot}",
            symbol=symbol,
            opened_ms=T0_MS + slot * 10 * HOUR_MS - hours * HOUR_MS,
            duration_ms=hours * HOUR_MS,
            pnl_pct=pct,
        )
        for slot, pnl, hours, symbol, pct in SPECS
    ]


def test_counts_edge_and_sqn() -> None:
    s = trade_stats(TradeArrays.from_trades(_trades()))
    assert (s.total, s.wins, s.losses, s.draws) == (7, 3, 3, 1)
    assert s.win_rate_pct == pytest.approx(300 / 7)
    assert (s.gross_profit_abs, s.gross_loss_abs) == (40.0, 15.0)
    assert s.profit_factor == pytest.approx(40 / 15)
    assert s.expectancy_abs == pytest.approx(25 / 7)
    # avg win 40/3, avg loss 5: (1 + 8/3) * 3/7 - 1 = 11/7 - 1 = 4/7.
    assert s.expectancy_ratio == pytest.approx(4 / 7)
    # Sum of squares 675, n * mean^2 = 625/7, sample variance = (675 - 625/7) / 6.
    assert s.sqn == pytest.approx(math.sqrt(7) * (25 / 7) / math.sqrt((675 - 625 / 7) / 6))
    assert s.avg_profit_pct == pytest.approx((10 + 10 - 5 + 20 + 0 - 8 - 5) / 7)


def test_streaks_durations_best_and_worst() -> None:
    s = trade_stats(TradeArrays.from_trades(_trades()))
    assert (s.max_consecutive_wins, s.max_consecutive_losses) == (2, 2)  # the draw breaks -5s
    assert s.avg_duration_ms == round(19 / 7 * HOUR_MS)
    assert s.avg_duration_winners_ms == 2 * HOUR_MS
    assert s.avg_duration_losers_ms == 2 * HOUR_MS
    assert (s.best_trade_pct, s.best_trade_pair) == (pytest.approx(20.0), "ETH/USDT")
    assert (s.worst_trade_pct, s.worst_trade_pair) == (pytest.approx(-8.0), "SOL/USDT")


def test_per_pair_rows() -> None:
    rows = {r.symbol: r for r in per_pair(TradeArrays.from_trades(_trades()))}
    assert [r.symbol for r in per_pair(TradeArrays.from_trades(_trades()))] == [
        "ETH/USDT",  # +30
        "BTC/USDT",  # 0
        "SOL/USDT",  # -5
    ]
    btc = rows["BTC/USDT"]
    assert (btc.trades, btc.wins, btc.total_profit_abs) == (3, 1, 0.0)
    assert btc.win_rate_pct == pytest.approx(100 / 3)
    assert btc.avg_profit_pct == pytest.approx(0.0)
    assert btc.avg_duration_ms == HOUR_MS
    sol = rows["SOL/USDT"]
    assert (sol.trades, sol.wins, sol.total_profit_abs) == (2, 0, -5.0)
    assert sol.avg_profit_pct == pytest.approx(-4.0)
    assert sol.avg_duration_ms == round(5.5 * HOUR_MS)


def test_exit_reasons_count_legs_and_final_reasons() -> None:
    trades = [
        trade("6", legs=[("TP1", "2"), ("TP2", "4")]),
        trade("-1", legs=[("TP1", "1"), ("SL", "-2")]),
        trade("-3", legs=[("SL", "-3")]),
    ]
    rows = {r.reason: r for r in per_exit_reason(trades)}
    assert set(rows) == {"TP1", "TP2", "SL"}
    assert (rows["TP1"].legs, rows["TP1"].pnl_abs, rows["TP1"].trades_closed) == (2, 3.0, 0)
    assert rows["TP1"].avg_pnl_abs == pytest.approx(1.5)
    assert (rows["SL"].legs, rows["SL"].pnl_abs, rows["SL"].trades_closed) == (2, -5.0, 2)
    assert (rows["TP2"].legs, rows["TP2"].pnl_abs, rows["TP2"].trades_closed) == (1, 4.0, 1)
    assert [r.reason for r in per_exit_reason(trades)] == ["SL", "TP1", "TP2"]


def test_no_trades() -> None:
    arr = TradeArrays.from_trades([])
    s = trade_stats(arr)
    assert (s.total, s.wins, s.losses, s.draws) == (0, 0, 0, 0)
    assert s.win_rate_pct is None and s.profit_factor is None
    assert s.expectancy_abs is None and s.expectancy_ratio is None and s.sqn is None
    assert s.avg_duration_ms is None and s.best_trade_pct is None and s.best_trade_pair is None
    assert (s.max_consecutive_wins, s.max_consecutive_losses) == (0, 0)
    assert per_pair(arr) == () and per_exit_reason([]) == ()


def test_all_wins_and_all_draws() -> None:
    wins = trade_stats(TradeArrays.from_trades([trade("1"), trade("3")]))
    assert wins.profit_factor == math.inf
    assert wins.expectancy_ratio == math.inf
    assert wins.win_rate_pct == 100.0
    assert wins.avg_duration_losers_ms is None
    draws = trade_stats(TradeArrays.from_trades([trade("0"), trade("0")]))
    assert draws.profit_factor is None and draws.expectancy_ratio is None
    assert draws.sqn is None  # identical pnls: std 0


def test_max_run() -> None:
    assert max_run(np.array([True, True, False, True, True, True, False])) == 3
    assert max_run(np.array([False, False])) == 0
