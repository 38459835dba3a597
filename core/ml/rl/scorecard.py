"""What each sizing method's multipliers make of the same candidates: equity and its figures.

The account compounds: a candidate sized ``m`` at its decision makes ``m * unit outcome *``
the realised equity then (the trades closed by the decision), booked when it closes, as a
fixed fraction of equity would. The curve is realised equity only (a trade moves it when it
closes, not while open), from the first candidate's decision at 1.0. From it: the final
equity, CAGR over the span to the last close (the same for every method), the maximum
drawdown, Calmar (CAGR over the drawdown), Sharpe of the daily returns (sqrt 365, days
without a close return 0), the Deflated Sharpe Ratio with the methods as the trials (the
control is not one: it is not a method anyone would choose), its PSR against the baseline's
daily Sharpe (``probabilistic_sharpe`` with that benchmark: how likely its true
Sharpe beats it, given its days, skewness and kurtosis; scale-free, so a constant multiplier
scores about 0.5; none under ``MIN_TRADES_TO_JUDGE`` trades), the edge per unit of size
(``sum(m u) / sum(m)``: what the sizing selected, the same as fixed sizing's mean for any
constant) and turnover: the notional entered and exited per year, in equity.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.analytics.deflated_sharpe import (
    SharpeMoments,
    deflated_sharpe,
    probabilistic_sharpe,
    sharpe_moments,
    trial_variance,
)
from core.analytics.drawdown import drawdown_stats
from core.analytics.inputs import EquityCurve
from core.analytics.periods import DAY_MS, changes_from, period_ends
from core.analytics.returns import YEAR_MS, cagr_pct, sharpe
from core.errors import DataError
from core.ml.rl.candidates import Candidates

FloatVector = npt.NDArray[np.float64]
# The simple sizers every comparison scores, simplest first
SIMPLE_METHODS = ("fixed", "vol_target", "kelly")
# A method beats the baseline when its true Sharpe is above the baseline's this likely (PSR
# against it): a one-sided 5 % test. The shuffled-reward control must not.
BEYOND_NOISE = 0.95
# A PSR needs returns to judge: a method that took fewer out-of-sample trades gets none (two
# lucky winners over years of flat days would read as a near-certain edge).
MIN_TRADES_TO_JUDGE = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodScore:
    """One method's figures on the out-of-sample candidates (see module)."""

    method: str
    control: bool  # the shuffled-reward control: shown, never a trial
    final_equity: float  # in starting equity
    cagr_pct: float | None
    max_drawdown_pct: float
    calmar: float | None  # None without a drawdown or a CAGR
    sharpe: float | None  # annualised; None when flat
    daily_sharpe: float | None
    dsr: float | None  # None for the control or a flat curve
    # PSR against the baseline's daily Sharpe: P(its true Sharpe is above the baseline's
    # estimate). None for the baseline itself, a flat curve or too few trades.
    above_baseline: float | None
    edge_pct: float | None  # sum(m * u) / sum(m): the mean unit outcome per unit of size
    turnover: float  # notional traded (in and out) per year, in equity
    mean_multiplier: float
    trades: int  # candidates sized above 0


def sized_curve(candidates: Candidates, multipliers: FloatVector) -> EquityCurve:
    """Return the realised equity of sizing ``candidates`` by ``multipliers`` (see module)."""
    m = np.asarray(multipliers, dtype=np.float64)
    if m.shape != (len(candidates),) or not np.isfinite(m).all() or (m < 0).any():
        raise DataError(f"need {len(candidates)} finite multipliers >= 0, were shape {m.shape}")
    equity = 1.0
    booked: list[tuple[int, float]] = []  # (close_ms, equity after it)
    open_: list[tuple[int, int, float]] = []  # (close_ms, seq, pnl): a heap by close
    for i in range(len(candidates)):
        decision = int(candidates.decision_ms[i])
        while open_ and open_[0][0] <= decision:
            close, _, pnl = heapq.heappop(open_)
            equity += pnl
            booked.append((close, equity))
        pnl = m[i] * float(candidates.unit_outcome[i]) * equity
        heapq.heappush(open_, (int(candidates.close_ms[i]), i, pnl))
    while open_:
        close, _, pnl = heapq.heappop(open_)
        equity += pnl
        booked.append((close, equity))
    ts = np.array([int(candidates.decision_ms[0])] + [t for t, _ in booked], dtype=np.int64)
    values = np.array([1.0] + [e for _, e in booked], dtype=np.float64)
    last = np.append(ts[1:] != ts[:-1], True)  # several closes at one time: the last equity
    return EquityCurve(ts_ms=ts[last], equity=values[last])


def daily_returns(curve: EquityCurve) -> FloatVector:
    """Return the curve's returns from one UTC day end to the next (a close at midnight is
    the day before's)."""
    day = (curve.ts_ms - 1) // DAY_MS
    day[0] = curve.ts_ms[0] // DAY_MS  # the opening mark starts the first day
    ends = period_ends(day, curve.equity, int(day[0]), int(day[-1]), 1.0)
    return changes_from(ends, 1.0)[1]


def score_methods(
    candidates: Candidates,
    notional: FloatVector,
    sizes: Mapping[str, FloatVector],
    *,
    baseline: str,
    controls: frozenset[str] = frozenset(),
) -> tuple[MethodScore, ...]:
    """Return each method's score on ``candidates`` (``notional``: each one's entry notional
    over equity at size 1), the methods named in ``controls`` not counted as trials, each
    method's Sharpe tested against ``baseline``'s on the same days."""
    if notional.shape != (len(candidates),):
        raise DataError(f"need {len(candidates)} notionals, were shape {notional.shape}")
    if baseline not in sizes:
        raise DataError(f"the baseline {baseline!r} is not among the methods {list(sizes)}")
    span_ms = int(candidates.close_ms.max()) - int(candidates.decision_ms[0])
    curves = {method: sized_curve(candidates, m) for method, m in sizes.items()}
    returns = {method: daily_returns(curve) for method, curve in curves.items()}
    moments = {method: sharpe_moments(r) for method, r in returns.items()}
    trials = [m for m in sizes if m not in controls]
    # A method that never traded (flat) counts as a Sharpe of 0, as in qt evaluate's ledger.
    variance = trial_variance([_sharpe_or_0(moments[m]) for m in trials])
    out = []
    for method, m in sizes.items():
        curve, mo, control = curves[method], moments[method], method in controls
        final = float(curve.equity[-1])
        cagr = cagr_pct(1.0, final, span_ms)
        drawdown = drawdown_stats(curve).max_drawdown_pct
        out.append(
            MethodScore(
                method=method,
                control=control,
                final_equity=final,
                cagr_pct=cagr,
                max_drawdown_pct=drawdown,
                calmar=None if cagr is None or drawdown <= 0 else cagr / drawdown,
                sharpe=sharpe(returns[method]),
                daily_sharpe=None if mo is None else mo.sharpe,
                dsr=None if control or mo is None else deflated_sharpe(mo, len(trials), variance),
                above_baseline=None
                if method == baseline or mo is None or (m > 0).sum() < MIN_TRADES_TO_JUDGE
                else probabilistic_sharpe(mo, _sharpe_or_0(moments[baseline])),
                edge_pct=float((m * candidates.unit_outcome).sum() / m.sum()) * 100.0
                if m.sum() > 0
                else None,
                turnover=float((m * notional).sum()) * 2.0 / (span_ms / YEAR_MS),
                mean_multiplier=float(m.mean()),
                trades=int((m > 0).sum()),
            )
        )
    return tuple(out)


def _sharpe_or_0(moments: SharpeMoments | None) -> float:
    return 0.0 if moments is None else moments.sharpe


def beats_baseline(score: MethodScore) -> bool:
    """Return whether ``score``'s Sharpe is above the baseline's beyond noise."""
    return score.above_baseline is not None and score.above_baseline > BEYOND_NOISE
