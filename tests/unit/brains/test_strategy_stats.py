"""The Strategy Brain's statistics against hand-computed values."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from core.brains.strategy_stats import (
    Prediction,
    member_stats,
    per_trade_sharpe,
    rank_lead,
    trade_edge,
)
from tests.unit.brains.strategy_builders import HOUR_MS, T0_MS, trade


def test_per_trade_sharpe_is_mean_over_sample_std_not_annualised() -> None:
    returns = [0.01, -0.01, 0.02, 0.005]
    expected = statistics.mean(returns) / statistics.stdev(returns)
    assert per_trade_sharpe(np.array(returns)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("returns", "expected"),
    [([0.01, 0.01], math.inf), ([-0.01, -0.01], -math.inf), ([0.0, 0.0], None), ([0.3], None)],
)
def test_per_trade_sharpe_of_a_flat_or_single_record(
    returns: list[float], expected: float | None
) -> None:
    assert per_trade_sharpe(np.array(returns)) == expected


def test_trade_edge_counts_in_close_order_and_draws_down_both_ways() -> None:
    # +10 %, -20 %, +5 %: index 1 -> 1.1 -> 0.88 -> 0.924: worst fall 0.22 / 1.1 = 20 %;
    # pnl 100, -200, 50: sum 0 -> 100 -> -100 -> -50: worst fall 200. Given out of order.
    ts = [trade(0.05, i=2), trade(0.10, i=0), trade(-0.20, i=1)]
    edge = trade_edge(ts)
    assert (edge.trades, edge.wins) == (3, 2)
    assert edge.win_rate_pct == pytest.approx(200 / 3)
    assert edge.profit_factor == pytest.approx(150 / 200)
    assert edge.total_pnl == pytest.approx(-50.0)
    assert edge.mean_return_pct == pytest.approx((10 - 20 + 5) / 3)
    assert edge.max_drawdown_pct == pytest.approx(20.0)
    assert edge.max_drawdown_abs == pytest.approx(200.0)


def test_trade_edge_of_no_trades_is_undefined_not_zero() -> None:
    edge = trade_edge([])
    assert edge.trades == 0
    assert edge.win_rate_pct is None and edge.profit_factor is None and edge.sharpe is None
    assert edge.max_drawdown_pct == 0.0


def test_a_loss_of_the_whole_stake_draws_down_100_percent() -> None:
    assert trade_edge([trade(0.5, i=0), trade(-1.0, i=1)]).max_drawdown_pct == pytest.approx(100.0)


def test_member_stats_accuracy_confidence_and_economic_win_rate() -> None:
    preds = [
        Prediction(ts_ms=T0_MS, p_up=0.7, up=True, traded=True, pnl=12.0, ret=0.012),
        Prediction(ts_ms=T0_MS + HOUR_MS, p_up=0.8, up=False, traded=True, pnl=-5.0, ret=-0.005),
        Prediction(ts_ms=T0_MS + 2 * HOUR_MS, p_up=0.3, up=False, regime="range_low_vol"),
        Prediction(ts_ms=T0_MS + 3 * HOUR_MS, p_up=0.4, up=True, regime="range_low_vol"),
    ]
    s = member_stats("xgb", preds, last_retrain_ms=T0_MS - 1)
    assert s.predictions == 4
    assert s.accuracy == pytest.approx(0.5)  # right on rows 0 and 2
    assert s.avg_confidence == pytest.approx((0.7 + 0.8 + 0.7 + 0.6) / 4)
    expected_loss = -(math.log(0.7) + math.log(0.2) + math.log(0.7) + math.log(0.4)) / 4
    assert s.log_loss == pytest.approx(expected_loss)
    assert s.economic_win_rate_pct == pytest.approx(50.0)
    assert s.edge.trades == 2 and s.edge.profit_factor == pytest.approx(12 / 5)
    assert s.last_retrain_ms == T0_MS - 1
    by_regime = {r.regime: r for r in s.regimes}
    assert by_regime["range_low_vol"].predictions == 2
    assert by_regime["range_low_vol"].accuracy == pytest.approx(0.5)
    assert by_regime["range_low_vol"].log_loss == pytest.approx(
        -(math.log(0.7) + math.log(0.4)) / 2
    )
    assert by_regime["unknown"].predictions == 2 and by_regime["unknown"].accuracy == 0.5


def test_member_without_predictions_has_no_figures() -> None:
    s = member_stats("lgbm", [], None)
    assert s.predictions == 0
    assert s.accuracy is None and s.log_loss is None and s.economic_win_rate_pct is None


def test_rank_lead_with_infinite_and_missing_sharpes() -> None:
    assert rank_lead(0.5, 0.2) == pytest.approx(0.3)
    assert rank_lead(None, 0.2) == pytest.approx(-0.2)
    assert rank_lead(math.inf, math.inf) == 0.0
    assert rank_lead(math.inf, 3.0) == math.inf
