"""Closed trades as sizing candidates, field by field: the ensemble's explanation becomes
confidence on the trade's side and the members' agreement, the regime a one-hot, the newest
assessment by the decision the risk; bad input is a ``DataError``."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from core.analytics.inputs import EquityCurve
from core.domain.enums import MarketType, PositionSide
from core.domain.events import RiskAssessed
from core.domain.explanations import EntryExplanation, MemberVote
from core.domain.trades import ClosedTrade
from core.errors import DataError
from core.market.synthetic import DEFAULT_START_MS, generate_candles
from core.ml.rl.from_trades import REGIME_FEATURES, candidates_from_trades

HOUR_MS = 3_600_000
SERIES = generate_candles("BTC/USDT", "1h", 400, seed=3)
WINDOW = {"BTC/USDT": SERIES}
# Equity at each candle close: 1,000 rising by 1 a candle (so each decision reads its own).
CURVE = EquityCurve.from_columns(
    DEFAULT_START_MS + HOUR_MS * np.arange(1, 401), 1_000.0 + np.arange(400)
)


def _explanation(p_up: float, votes: list[tuple[float | None, float]]) -> EntryExplanation:
    return EntryExplanation(
        provider="ensemble",
        p_up=p_up,
        members=tuple(
            MemberVote(member=f"m{i}", p_up=p, weight=w) for i, (p, w) in enumerate(votes)
        ),
        regime="trend_high_vol",
        top_features=(),
    )


def _trade(
    candle: int,
    pnl: str,
    *,
    side: PositionSide = PositionSide.LONG,
    explanation: EntryExplanation | None = None,
    regime: str = "trend_high_vol",
    hours: int = 5,
) -> ClosedTrade:
    """A trade decided on candle ``candle`` (filled 1 s after its close), closed ``hours``
    later."""
    opened = DEFAULT_START_MS + (candle + 1) * HOUR_MS + 1_000
    return ClosedTrade(
        trade_id=f"t{candle}",
        symbol="BTC/USDT",
        side=side,
        market_type=MarketType.SPOT,
        leverage=1,
        opened_ms=opened,
        closed_ms=opened + hours * HOUR_MS,
        amount=Decimal(2),
        entry_price=Decimal(100),
        exit_price=Decimal(101),
        fees=Decimal("0.4"),
        pnl=Decimal(pnl),
        pnl_pct=0.0,
        exit_reason="TP1",
        legs=(),
        regime=regime,
        explanation=explanation,
    )


def test_outcome_notional_and_times_of_each_trade() -> None:
    tc = candidates_from_trades([_trade(200, "12.5"), _trade(150, "-3")], CURVE, WINDOW)
    c = tc.candidates
    assert tc.trade_ids == ("t150", "t200")  # decision order
    decided = DEFAULT_START_MS + 151 * HOUR_MS
    assert c.decision_ms[0] == decided
    assert c.close_ms[0] == decided + 6 * HOUR_MS  # the exit's candle closes 6 h on
    # The equity at candle 150's close is 1,150.
    assert tc.equity[0] == 1_150.0 and c.unit_outcome[0] == pytest.approx(-3 / 1_150)
    assert c.unit_outcome[1] == pytest.approx(12.5 / 1_200)
    assert tc.notional[1] == pytest.approx(200 / 1_200)


def test_explanation_gives_confidence_on_the_side_and_weighted_agreement() -> None:
    votes = [(0.7, 0.5), (0.4, 0.25), (0.8, 0.25), (None, 1.0)]  # the None one is left out
    long = _trade(100, "1", explanation=_explanation(0.65, votes))
    short = _trade(120, "1", side=PositionSide.SHORT, explanation=_explanation(0.3, votes))
    unweighted = _trade(140, "1", explanation=_explanation(0.6, [(0.7, 0.0), (0.4, 0.0)]))
    tc = candidates_from_trades([long, short, unweighted], CURVE, WINDOW)
    c = tc.candidates
    assert c.feature_names[:2] == ("confidence", "agreement")
    np.testing.assert_allclose(c.features[:, 0], [0.65, 0.7, 0.6])
    np.testing.assert_allclose(c.features[:, 1], [0.75, 0.25, 0.5])
    assert c.features[:, c.feature_names.index("long")].tolist() == [1.0, 0.0, 1.0]


def test_without_every_explanation_there_is_no_confidence_feature() -> None:
    explained = _trade(100, "1", explanation=_explanation(0.65, [(0.7, 1.0)]))
    tc = candidates_from_trades([explained, _trade(120, "1")], CURVE, WINDOW)
    assert "confidence" not in tc.candidates.feature_names
    assert "risk_score" not in tc.candidates.feature_names  # no assessments given


def test_regime_is_one_hot_and_the_warm_up_none() -> None:
    trades = [_trade(100, "1", regime="range_low_vol"), _trade(120, "1", regime="unknown")]
    c = candidates_from_trades(trades, CURVE, WINDOW).candidates
    regime = c.features[:, [c.feature_names.index(n) for n in REGIME_FEATURES]]
    assert regime[0].tolist() == [
        1.0 if n == "regime_range_low_vol" else 0.0 for n in REGIME_FEATURES
    ]
    assert regime[1].tolist() == [0.0] * len(REGIME_FEATURES)


def _assessed(hour: int, score: float, level: str) -> RiskAssessed:
    return RiskAssessed(
        ts_ms=DEFAULT_START_MS + hour * HOUR_MS,
        score=score,
        level=level,
        var_99_daily=0.0,
        es_99_daily=0.0,
        drawdown=0.0,
        exposure_pct=0.0,
        tier=0,
        measures=(),
        notes=(),
    )


def test_risk_is_the_newest_assessment_at_or_before_the_decision() -> None:
    assessed = [
        _assessed(90, 10.0, "LOW"),
        _assessed(101, 60.0, "HIGH"),
        _assessed(102, 90.0, "CRITICAL"),
    ]
    trades = [_trade(50, "1"), _trade(100, "1"), _trade(120, "1")]
    c = candidates_from_trades(trades, CURVE, WINDOW, assessed).candidates
    risk = c.features[:, [c.feature_names.index("risk_score"), c.feature_names.index("risk_level")]]
    # Candle 100 is decided at hour 101: the assessment made then counts, the next does not.
    np.testing.assert_allclose(risk, [[0.0, 0.0], [0.6, 2 / 3], [0.9, 1.0]])


def test_realised_volatility_reads_the_candles_closed_by_the_decision() -> None:
    c = candidates_from_trades([_trade(5, "1"), _trade(200, "1")], CURVE, WINDOW).candidates
    vol = c.features[:, c.feature_names.index("realised_vol")]
    assert vol[0] == 0.0  # 6 closes: too few to measure, the fail-closed 0
    assert 0.0 < vol[1] < 50.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(DataError, match="no closed trades"):
        candidates_from_trades([], CURVE, WINDOW)
    with pytest.raises(DataError, match="no candles of ETH/USDT"):
        candidates_from_trades([replace(_trade(100, "1"), symbol="ETH/USDT")], CURVE, WINDOW)
    late_curve = EquityCurve.from_columns(CURVE.ts_ms[150:], CURVE.equity[150:])
    with pytest.raises(DataError, match="before the equity curve"):
        candidates_from_trades([_trade(100, "1")], late_curve, WINDOW)
    broke = EquityCurve.from_columns(CURVE.ts_ms, np.zeros(400))
    with pytest.raises(DataError, match="equity of 0"):
        candidates_from_trades([_trade(100, "1")], broke, WINDOW)
    with pytest.raises(DataError, match="loses the whole equity"):
        candidates_from_trades([_trade(100, "-5000")], CURVE, WINDOW)
    with pytest.raises(DataError, match="unknown risk level"):
        candidates_from_trades([_trade(100, "1")], CURVE, WINDOW, [_assessed(90, 1.0, "MILD")])
