"""A backtest's closed trades as RL sizing candidates: each unit outcome is the engine's P&L
for that trade over the equity at its decision, and no feature reads a candle or an
assessment after the decision."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.backtest import BacktestResult, run_backtest
from core.domain.events import RiskAssessed
from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles
from core.ml.rl.from_trades import TradeCandidates, candidates_from_trades
from core.services.execution import client_order_id
from tests.integration.scripted import settings_with

HOUR_MS = 3_600_000
N = 1_500


@pytest.fixture
async def result(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> BacktestResult:
    settings = settings_with(
        monkeypatch,
        tmp_path,
        QT__BRAINS__ENABLED="true",
        QT__BRAINS__MC_PATHS="20000",
        QT__RISK__MAX_CORRELATION="1",
        QT__STRATEGY__EMA_FAST="5",
        QT__STRATEGY__EMA_SLOW="12",
    )
    markets = {
        s: generate_candles(s, "1h", N, seed=5, trend_scale=4.0) for s in ("BTC/USDT", "ETH/USDT")
    }
    out = await run_backtest(settings, markets, start_ms=int(markets["BTC/USDT"].ts_ms[300]))
    assert len(out.trades) >= 10, "the scenario must trade to prove anything"
    return out


def _assessed(result: BacktestResult) -> list[RiskAssessed]:
    return [e for e in result.brain_events if isinstance(e, RiskAssessed)]


def _candidates(result: BacktestResult) -> TradeCandidates:
    return candidates_from_trades(result.trades, result.curve, result.window, _assessed(result))


async def test_the_unit_outcome_is_the_engines_pnl_over_the_equity_at_the_decision(
    result: BacktestResult,
) -> None:
    tc = _candidates(result)
    c = tc.candidates
    trades = {t.trade_id: t for t in result.trades}
    assert len(c) == len(trades) and set(tc.trade_ids) == set(trades)
    for i, trade_id in enumerate(tc.trade_ids):
        trade, decision = trades[trade_id], int(c.decision_ms[i])
        # The decision is the close of the candle the entry was decided on (its id says
        # which), before the entry filled; the outcome is known once the exit's candle closed.
        assert client_order_id(trade.symbol, decision - HOUR_MS, "e") == trade_id
        assert decision <= trade.opened_ms < decision + HOUR_MS
        assert trade.closed_ms < int(c.close_ms[i]) <= trade.closed_ms + HOUR_MS
        # The equity there is the curve's sample at that very close.
        at = np.flatnonzero(result.curve.ts_ms == decision)
        assert len(at) == 1
        equity = float(result.curve.equity[at[0]])
        assert tc.equity[i] == equity
        assert c.unit_outcome[i] * equity == pytest.approx(float(trade.pnl), rel=1e-12)
        assert tc.notional[i] == pytest.approx(
            float(trade.entry_price * trade.amount) / equity, rel=1e-12
        )
    # The P&Ls are net of every cost: with nothing left open they add up to the account's
    # change, fees and slippage included.
    assert result.open_positions == 0
    start = float(result.curve.equity[0])
    assert tc.pnl.sum() == pytest.approx(float(result.curve.equity[-1]) - start, rel=1e-9)
    assert (c.decision_ms[1:] >= c.decision_ms[:-1]).all()


async def test_features_are_those_known_at_the_decision(result: BacktestResult) -> None:
    tc = _candidates(result)
    c = tc.candidates
    names = c.feature_names
    # ema_rsi explains nothing: no confidence or agreement; the brains assessed: risk is in.
    assert "confidence" not in names and {"realised_vol", "risk_score", "risk_level"} <= set(names)
    vol = c.features[:, names.index("realised_vol")]
    assert (vol > 0).all()
    regimes = c.features[:, [i for i, n in enumerate(names) if n.startswith("regime_")]]
    assert set(regimes.sum(axis=1)) <= {0.0, 1.0}  # one-hot, or none in the warm-up
    risk = c.features[:, names.index("risk_score")]
    assert ((risk >= 0) & (risk <= 1)).all() and risk.max() > 0


def _scrambled_from(series: CandleSeries, from_ms: int, seed: int) -> CandleSeries:
    """Return ``series`` with every candle opening at ``from_ms`` or later moved by a random
    factor (open, high, low and close alike: still valid candles)."""
    later = series.ts_ms >= from_ms
    factor = np.where(later, np.random.default_rng(seed).uniform(0.5, 1.5, len(series)), 1.0)
    return CandleSeries.from_columns(
        series.symbol,
        series.timeframe,
        series.ts_ms,
        series.open * factor,
        series.high * factor,
        series.low * factor,
        series.close * factor,
        series.volume,
    )


async def test_no_feature_changes_when_later_candles_and_assessments_do(
    result: BacktestResult,
) -> None:
    tc = _candidates(result)
    c = tc.candidates
    for k in (len(c) // 3, 2 * len(c) // 3):
        decision = int(c.decision_ms[k])
        window = {s: _scrambled_from(ser, decision, k) for s, ser in result.window.items()}
        assessed = [
            replace(a, score=99.0, level="CRITICAL") if a.ts_ms > decision else a
            for a in _assessed(result)
        ]
        altered = candidates_from_trades(result.trades, result.curve, window, assessed)
        known = c.decision_ms <= decision
        np.testing.assert_array_equal(altered.candidates.features[known], c.features[known])
        # The alteration is real: the candidates decided later do see it.
        assert not np.array_equal(altered.candidates.features[~known], c.features[~known])
