"""Candidates from a backtest's closed trades: the real trades an RL sizing comparison replays.

Each ``ClosedTrade`` becomes one candidate (``core.ml.rl.candidates``):

- **decision**: the close of the candle the entry was decided on. The engine decides at a
  candle's close and sends a market entry that fills in the next candle (at its open, or in a
  detail candle of it), so the decision is the open of the candle the entry fill is in.
- **close**: the close of the candle the trade's last exit filled in: the engine (and the
  equity curve) knows a fill at its candle's close, and it is always after the decision.
- **unit outcome**: the trade's net P&L (fees, slippage in its fill prices, funding) over the
  equity at the decision (the curve's sample at the decided candle's close, marked to market).
  The engine sized it fixed-fractional, so this is its outcome at multiplier 1.
- **features**, from what was known at the decision only: the ensemble's confidence on the
  trade's side and the members' weighted agreement with it (when every trade has its
  ``EntryExplanation``; otherwise both are left out), the regime at the entry (one-hot, the
  warm-up's ``unknown`` all zeros), the side, the forecast daily volatility of the candles
  closed by the decision (``core.brains.sizing.daily_vol_pct``, 0 when unmeasurable) and the
  newest Risk Brain assessment at or before it (score and level, when assessments are given).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.analytics.inputs import EquityCurve
from core.brains.regime import Regime
from core.brains.risk import RiskLevel
from core.brains.sizing import VOL_WINDOW, daily_vol_pct
from core.domain.enums import PositionSide
from core.domain.events import RiskAssessed
from core.domain.explanations import EntryExplanation
from core.domain.market import CandleSeries, grid_floor_ms, timeframe_to_ms
from core.domain.trades import ClosedTrade
from core.errors import DataError
from core.ml.rl.candidates import Candidates

FloatVector = npt.NDArray[np.float64]
DAY_MS = 86_400_000
REGIME_FEATURES = tuple(f"regime_{r.label}" for r in Regime if r is not Regime.UNKNOWN)
RISK_LEVELS = tuple(RiskLevel)  # LOW < MODERATE < HIGH < CRITICAL


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeCandidates:
    """The candidates and, row for row, the trades they came from."""

    candidates: Candidates
    trade_ids: tuple[str, ...]
    symbols: tuple[str, ...]
    equity: FloatVector  # quote currency at the decision
    pnl: FloatVector  # the trade's net P&L, quote currency
    notional: FloatVector  # entry notional over the equity at the decision (turnover)


def candidates_from_trades(
    trades: Sequence[ClosedTrade],
    curve: EquityCurve,
    window: Mapping[str, CandleSeries],
    assessments: Sequence[RiskAssessed] = (),
) -> TradeCandidates:
    """Return the candidates of ``trades`` in decision order (see module); ``window`` holds
    each traded symbol's candles, ``curve`` the run's equity at every candle close."""
    if not trades:
        raise DataError("no closed trades to make sizing candidates of")
    rows = sorted((_decision_ms(t, window), t.symbol, t.trade_id, t) for t in trades)
    explained = all(t.explanation is not None for t in trades)
    risk = _Assessments(assessments)
    names = _names(explained=explained, risk=bool(assessments))
    decision = np.array([r[0] for r in rows], dtype=np.int64)
    equity = _equity_at(curve, decision)
    features = np.array(
        [_features(t, d, window[t.symbol], explained, risk) for d, _, _, t in rows],
        dtype=np.float64,
    ).reshape(len(rows), len(names))
    pnl = np.array([float(r[3].pnl) for r in rows], dtype=np.float64)
    notional = np.array([float(r[3].entry_price * r[3].amount) for r in rows], dtype=np.float64)
    candidates = Candidates(
        decision_ms=decision,
        close_ms=np.array([_close_ms(r[3], window) for r in rows], dtype=np.int64),
        features=features,
        feature_names=names,
        unit_outcome=pnl / equity,
    )
    return TradeCandidates(
        candidates=candidates,
        trade_ids=tuple(r[2] for r in rows),
        symbols=tuple(r[1] for r in rows),
        equity=equity,
        pnl=pnl,
        notional=notional / equity,
    )


def _names(*, explained: bool, risk: bool) -> tuple[str, ...]:
    head = ("confidence", "agreement") if explained else ()
    tail = ("risk_score", "risk_level") if risk else ()
    return (*head, *REGIME_FEATURES, "long", "realised_vol", *tail)


def _series(window: Mapping[str, CandleSeries], trade: ClosedTrade) -> CandleSeries:
    series = window.get(trade.symbol)
    if series is None:
        raise DataError(f"trade {trade.trade_id}: no candles of {trade.symbol} in the window")
    return series


def _decision_ms(trade: ClosedTrade, window: Mapping[str, CandleSeries]) -> int:
    return grid_floor_ms(trade.opened_ms, _series(window, trade).timeframe)


def _close_ms(trade: ClosedTrade, window: Mapping[str, CandleSeries]) -> int:
    timeframe = _series(window, trade).timeframe
    return grid_floor_ms(trade.closed_ms, timeframe) + timeframe_to_ms(timeframe)


def _equity_at(curve: EquityCurve, decision_ms: npt.NDArray[np.int64]) -> FloatVector:
    at = np.searchsorted(curve.ts_ms, decision_ms, side="right") - 1
    if (at < 0).any():
        first = int(decision_ms[at < 0][0])
        raise DataError(f"a trade decided at {first} is before the equity curve starts")
    equity = curve.equity[at]
    if (equity <= 0).any():
        raise DataError("a trade was decided at an equity of 0 or less: no return to size")
    return np.asarray(equity, dtype=np.float64)


def _features(
    trade: ClosedTrade,
    decision_ms: int,
    series: CandleSeries,
    explained: bool,
    risk: _Assessments,
) -> list[float]:
    long = trade.side is PositionSide.LONG
    out: list[float] = []
    if explained and trade.explanation is not None:
        out += _explained(trade.explanation, long=long)
    out += [1.0 if trade.regime == label[len("regime_") :] else 0.0 for label in REGIME_FEATURES]
    out += [1.0 if long else 0.0, _vol_before(series, decision_ms)]
    if risk:
        out += risk.at(decision_ms)
    return out


class _Assessments:
    """The Risk Brain's assessments in time order, read as of a decision."""

    def __init__(self, assessments: Sequence[RiskAssessed]) -> None:
        ordered = sorted(assessments, key=lambda a: a.ts_ms)
        self._ts = [a.ts_ms for a in ordered]
        self._rows = [[a.score / 100.0, _level_rank(a.level)] for a in ordered]

    def __bool__(self) -> bool:
        return bool(self._ts)

    def at(self, decision_ms: int) -> list[float]:
        """Return the score (0-1) and level (0-1) of the newest assessment at or before
        ``decision_ms``; zeros before the first."""
        newest = bisect.bisect_right(self._ts, decision_ms) - 1
        return [0.0, 0.0] if newest < 0 else self._rows[newest]


def _explained(explanation: EntryExplanation, *, long: bool) -> list[float]:
    """Return the confidence on the trade's side and the members' weighted agreement."""
    confidence = explanation.p_up if long else 1.0 - explanation.p_up
    votes = [m for m in explanation.members if m.p_up is not None]
    weights = [m.weight for m in votes]
    if not votes:
        return [confidence, 0.5]
    if sum(weights) <= 0:
        weights = [1.0] * len(votes)  # all left out of the blend: count them alike
    agree = sum(w for m, w in zip(votes, weights, strict=True) if ((m.p_up or 0.0) > 0.5) == long)
    return [confidence, agree / sum(weights)]


def _vol_before(series: CandleSeries, decision_ms: int) -> float:
    """Return the daily volatility (percent) of the candles closed by ``decision_ms``."""
    tf_ms = timeframe_to_ms(series.timeframe)
    closed = int(np.searchsorted(series.ts_ms, decision_ms - tf_ms, side="right"))
    closes = series.close[max(0, closed - VOL_WINDOW - 1) : closed]
    vol = daily_vol_pct(np.asarray(closes, dtype=np.float64), max(1, DAY_MS // tf_ms))
    return vol if math.isfinite(vol) else 0.0


def _level_rank(level: str) -> float:
    """Return the level as 0 (LOW) ... 1 (CRITICAL); an unknown level is refused."""
    try:
        return RISK_LEVELS.index(RiskLevel(level)) / (len(RISK_LEVELS) - 1)
    except ValueError as exc:
        raise DataError(f"unknown risk level {level!r}") from exc
