"""The Strategy Brain's statistics: the record of a signal provider, of a provider in a regime,
and of a model member. Pure.

Conventions (the numbers mean exactly this):

- A trade's return is ``ClosedTrade.pnl_pct`` (a fraction of the entry notional, net of fees);
  figures named ``*_pct`` are in percent. A win has pnl > 0 (``core.analytics.trades``).
- **Sharpe** is per trade and *not annualised*: mean / sample std (ddof=1) of the trade
  returns, risk-free rate 0. Trades are not evenly spaced in time, so an annualising factor
  would claim a frequency they do not have; per trade it ranks providers on the same footing.
  A flat record (std 0) is inf / -inf by the sign of its mean, None at 0 or with < 2 trades.
- **Max drawdown** is of the cumulative trade equity: each return compounded on an index that
  starts at 1 (``max_drawdown_pct``, of the running peak), and the largest fall of the running
  sum of pnl in the quote currency (``max_drawdown_abs``), both in close-time order.
- A model member's **accuracy** is the share of its predictions where P(up) >= 0.5 agrees with
  the realised label; **log-loss** the mean natural-log loss; **average confidence** the mean
  of max(P(up), 1 - P(up)); its **economic win rate** the share of its *traded* predictions
  whose trade made money; its edge figures (profit factor, Sharpe, drawdown) are those trades'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from core.analytics.drawdown import underwater_fraction
from core.analytics.trades import TradeArrays, trade_stats
from core.domain.market import FloatArray
from core.domain.trades import ClosedTrade
from core.ml.metrics import accuracy, log_losses
from core.values import value_class


@value_class(frozen=True, slots=True, kw_only=True)
class Prediction:
    """One resolved prediction of a model member; ``traded``: a trade was entered on it, whose
    net ``pnl`` (quote) and return (fraction of the entry notional) it then carries."""

    ts_ms: int
    p_up: float
    up: bool  # the realised label
    regime: str = ""  # the candle's regime label ("": not known, counted as unknown)
    traded: bool = False
    pnl: float | None = None
    ret: float | None = None


@value_class(frozen=True, slots=True, kw_only=True)
class EdgeStats:
    """What a set of trades earned (see the module docstring)."""

    trades: int
    wins: int
    win_rate_pct: float | None
    profit_factor: float | None  # inf with no losing trade, None with no trade or only draws
    total_pnl: float
    mean_return_pct: float | None
    sharpe: float | None  # per trade, not annualised
    max_drawdown_pct: float
    max_drawdown_abs: float


@value_class(frozen=True, slots=True, kw_only=True)
class ProviderStats:
    """A signal provider's record in the review window; ``judged``: enough trades to act on."""

    provider: str
    edge: EdgeStats
    judged: bool


@value_class(frozen=True, slots=True, kw_only=True)
class RegimeStats:
    """A provider's record in one regime (at the entry decision). ``score`` is the mean net
    return per trade in percent (the meta-strategy's own measure, here on real trades, after
    costs); ``compatible`` is whether it made money there, None below the minimum record."""

    provider: str
    regime: str
    edge: EdgeStats
    score: float | None
    compatible: bool | None


@value_class(frozen=True, slots=True, kw_only=True)
class MemberRegimeStats:
    """A member's predictions in one regime: how well it reads that market."""

    regime: str
    predictions: int
    accuracy: float
    log_loss: float


@value_class(frozen=True, slots=True, kw_only=True)
class MemberStats:
    """A model member's record in the review window (see the module docstring)."""

    member: str
    predictions: int
    accuracy: float | None
    log_loss: float | None
    avg_confidence: float | None
    economic_win_rate_pct: float | None  # of its traded predictions; None when none traded
    edge: EdgeStats  # of its traded predictions
    last_retrain_ms: int | None
    regimes: tuple[MemberRegimeStats, ...] = ()  # per regime label, in label order


def per_trade_sharpe(returns: FloatArray) -> float | None:
    """Return mean / std (ddof=1) of per-trade returns, not annualised (module docstring)."""
    if len(returns) < 2:
        return None
    mean = float(np.mean(returns))
    std = float(np.std(returns, ddof=1))
    if std < 1e-12:  # identical returns: numerical noise, not risk
        return math.copysign(math.inf, mean) if mean != 0 else None
    return mean / std


def _max_drawdowns(arr: TradeArrays) -> tuple[float, float]:
    """Return the max drawdown in percent of the compounded index and in quote of the pnl sum."""
    if not len(arr.pnl):
        return 0.0, 0.0
    index = np.concatenate(([1.0], np.cumprod(1.0 + arr.pnl_pct / 100.0)))
    pct = float(underwater_fraction(index).max()) * 100.0
    cum = np.concatenate(([0.0], np.cumsum(arr.pnl)))
    return pct, float((np.maximum.accumulate(cum) - cum).max())


def edge_stats(arr: TradeArrays) -> EdgeStats:
    """Summarise trades already in close-time order (``TradeArrays``)."""
    base = trade_stats(arr)
    n = base.total
    dd_pct, dd_abs = _max_drawdowns(arr)
    return EdgeStats(
        trades=n,
        wins=base.wins,
        win_rate_pct=base.win_rate_pct,
        profit_factor=base.profit_factor,
        total_pnl=float(arr.pnl.sum()),
        mean_return_pct=base.avg_profit_pct,
        sharpe=per_trade_sharpe(arr.pnl_pct / 100.0),
        max_drawdown_pct=dd_pct,
        max_drawdown_abs=dd_abs,
    )


def trade_edge(trades: Sequence[ClosedTrade]) -> EdgeStats:
    """Summarise closed trades (any order)."""
    return edge_stats(TradeArrays.from_trades(trades))


def member_stats(
    member: str, predictions: Sequence[Prediction], last_retrain_ms: int | None
) -> MemberStats:
    """Summarise one member's predictions (any order)."""
    ordered = sorted(predictions, key=lambda p: p.ts_ms)
    n = len(ordered)
    p = np.array([x.p_up for x in ordered], dtype=np.float64)
    y = np.array([x.up for x in ordered], dtype=np.float64)
    traded = [x for x in ordered if x.traded]
    pnl = np.array([x.pnl or 0.0 for x in traded], dtype=np.float64)
    arr = TradeArrays(
        symbol=tuple(member for _ in traded),
        pnl=pnl,
        pnl_pct=np.array([(x.ret or 0.0) * 100.0 for x in traded], dtype=np.float64),
        duration_ms=np.zeros(len(traded), dtype=np.int64),
        closed_ms=np.array([x.ts_ms for x in traded], dtype=np.int64),
    )
    return MemberStats(
        member=member,
        predictions=n,
        accuracy=accuracy(p, y) if n else None,
        log_loss=float(log_losses(p, y).mean()) if n else None,
        avg_confidence=float(np.maximum(p, 1.0 - p).mean()) if n else None,
        economic_win_rate_pct=float((pnl > 0).mean()) * 100.0 if len(traded) else None,
        edge=edge_stats(arr),
        last_retrain_ms=last_retrain_ms,
        regimes=_member_regimes(ordered, p, y),
    )


def _member_regimes(
    ordered: Sequence[Prediction], p: FloatArray, y: FloatArray
) -> tuple[MemberRegimeStats, ...]:
    labels = np.array([x.regime or "unknown" for x in ordered], dtype=object)
    rows = []
    for regime in sorted(set(labels.tolist())):
        at = labels == regime
        rows.append(
            MemberRegimeStats(
                regime=str(regime),
                predictions=int(at.sum()),
                accuracy=accuracy(p[at], y[at]),
                log_loss=float(log_losses(p[at], y[at]).mean()),
            )
        )
    return tuple(rows)


def rank_lead(a: float | None, b: float | None) -> float:
    """Return how far Sharpe ``a`` leads ``b`` (None counts as 0; inf - inf leads by 0)."""
    x, y = a or 0.0, b or 0.0
    if math.isinf(x) or math.isinf(y):
        return 0.0 if x == y else (math.inf if x > y else -math.inf)
    return x - y
