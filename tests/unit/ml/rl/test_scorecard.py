"""The sizing scorecard: a compounding account booked at each close from the equity at the
decision, its figures, the methods as the Deflated Sharpe's trials and the control not."""

from __future__ import annotations

import numpy as np
import pytest

from core.analytics.deflated_sharpe import (
    deflated_sharpe,
    probabilistic_sharpe,
    sharpe_moments,
    trial_variance,
)
from core.errors import DataError
from core.ml.rl.candidates import Candidates
from core.ml.rl.scorecard import (
    MIN_TRADES_TO_JUDGE,
    beats_baseline,
    daily_returns,
    score_methods,
    sized_curve,
)
from tests.unit.ml.rl.synthetic import candidates

DAY_MS = 86_400_000
T0 = 1_700_006_400_000  # a UTC midnight


def _three() -> Candidates:
    # A wins 10 % (decided day 0, closes day 2); B, decided day 1 while A is open, loses 5 %
    # (closes day 3); C, decided day 3 after both closed, wins 20 % (closes day 4, 12:00).
    return Candidates(
        decision_ms=np.array([T0, T0 + DAY_MS, T0 + 3 * DAY_MS + 1]),
        close_ms=np.array([T0 + 2 * DAY_MS, T0 + 3 * DAY_MS, T0 + 4 * DAY_MS + DAY_MS // 2]),
        features=np.zeros((3, 1)),
        feature_names=("x",),
        unit_outcome=np.array([0.10, -0.05, 0.20]),
    )


def test_the_account_compounds_on_the_equity_realised_by_each_decision() -> None:
    curve = sized_curve(_three(), np.array([1.0, 2.0, 0.5]))
    # A: +0.10 of 1. B was sized on 1 (A still open): -0.05 x 2 x 1 = -0.10. C on 1.00:
    # +0.20 x 0.5 x 1.0 = +0.10.
    np.testing.assert_allclose(curve.equity, [1.0, 1.1, 1.0, 1.1])
    assert list(curve.ts_ms) == [T0, T0 + 2 * DAY_MS, T0 + 3 * DAY_MS, T0 + 4 * DAY_MS + 43_200_000]
    # Day ends: day 0 flat; A's close at day 2's midnight ends day 1 (+10 %); B's ends day 2
    # (-0.1 / 1.1); day 3 has no close; C's is in day 4 (+10 %).
    np.testing.assert_allclose(daily_returns(curve), [0.0, 0.1, -0.1 / 1.1, 0.0, 0.1])


def test_skipping_books_nothing_and_bad_multipliers_are_refused() -> None:
    c = _three()
    np.testing.assert_allclose(sized_curve(c, np.zeros(3)).equity, [1.0, 1.0, 1.0, 1.0])
    for bad in (np.array([1.0, -0.5, 1.0]), np.array([1.0, np.nan, 1.0]), np.ones(2)):
        with pytest.raises(DataError):
            sized_curve(c, bad)


def test_scores_match_their_definitions_and_the_control_is_no_trial() -> None:
    c = candidates(300, seed=7)
    notional = np.full(len(c), 0.4)
    rng = np.random.default_rng(0)
    sizes = {
        "fixed": np.ones(len(c)),
        "double": np.full(len(c), 2.0),
        "random": rng.uniform(0, 1.5, len(c)),
        "control": rng.uniform(0, 1.5, len(c)),
    }
    scores = {
        s.method: s
        for s in score_methods(
            c, notional, sizes, baseline="fixed", controls=frozenset({"control"})
        )
    }
    years = (int(c.close_ms.max()) - int(c.decision_ms[0])) / (365 * DAY_MS)
    fixed = scores["fixed"]
    assert fixed.turnover == pytest.approx(0.4 * 2 * len(c) / years)
    assert scores["double"].turnover == pytest.approx(2 * fixed.turnover)
    assert fixed.final_equity == pytest.approx(sized_curve(c, sizes["fixed"]).equity[-1])
    assert fixed.calmar == pytest.approx(fixed.cagr_pct / fixed.max_drawdown_pct)
    assert scores["double"].max_drawdown_pct > fixed.max_drawdown_pct
    # The trials are the three methods; the control has no DSR.
    moments = {m: sharpe_moments(daily_returns(sized_curve(c, v))) for m, v in sizes.items()}
    variance = trial_variance([moments[m].sharpe for m in ("fixed", "double", "random")])
    assert scores["random"].dsr == pytest.approx(deflated_sharpe(moments["random"], 3, variance))
    assert scores["control"].dsr is None and not scores["fixed"].control
    # Against the baseline: PSR with its Sharpe as the benchmark; a constant size is about a
    # coin flip (compounding a double size differs a little, no more).
    assert fixed.above_baseline is None
    assert scores["random"].above_baseline == pytest.approx(
        probabilistic_sharpe(moments["random"], moments["fixed"].sharpe)
    )
    assert 0.4 < scores["double"].above_baseline < 0.6
    assert scores["random"].trades == int((sizes["random"] > 0).sum())
    # The edge per unit of size: fixed sizing's mean outcome for any constant size.
    assert fixed.edge_pct == pytest.approx(c.unit_outcome.mean() * 100)
    assert scores["double"].edge_pct == pytest.approx(fixed.edge_pct)
    r = sizes["random"]
    assert scores["random"].edge_pct == pytest.approx((r * c.unit_outcome).sum() / r.sum() * 100)


def test_a_method_with_few_trades_is_not_judged_against_the_baseline() -> None:
    # Two lucky winners over months of flat days would read as a near-certain edge.
    c = candidates(300, seed=9)
    best = np.argsort(c.unit_outcome)[-MIN_TRADES_TO_JUDGE + 1 :]
    few = np.zeros(len(c))
    few[best] = 1.0
    sizes = {"fixed": np.ones(len(c)), "few": few}
    scores = {s.method: s for s in score_methods(c, np.ones(len(c)), sizes, baseline="fixed")}
    assert scores["few"].trades == MIN_TRADES_TO_JUDGE - 1 and scores["few"].sharpe is not None
    assert scores["few"].above_baseline is None and not beats_baseline(scores["few"])
    few[np.argsort(c.unit_outcome)[-MIN_TRADES_TO_JUDGE]] = 1.0  # one more: judged
    again = score_methods(c, np.ones(len(c)), sizes, baseline="fixed")[1]
    assert again.above_baseline is not None and beats_baseline(again)


def test_a_method_that_never_trades_is_flat_and_counts_as_a_sharpe_of_zero() -> None:
    c = candidates(200, seed=8)
    sizes = {"fixed": np.ones(len(c)), "never": np.zeros(len(c))}
    scores = {s.method: s for s in score_methods(c, np.ones(len(c)), sizes, baseline="fixed")}
    never = scores["never"]
    assert never.final_equity == 1.0 and never.max_drawdown_pct == 0.0
    assert never.sharpe is None and never.dsr is None and never.above_baseline is None
    assert never.calmar is None and never.trades == 0 and never.turnover == 0.0
    assert never.edge_pct is None
    fixed_m = sharpe_moments(daily_returns(sized_curve(c, sizes["fixed"])))
    assert scores["fixed"].dsr == pytest.approx(
        deflated_sharpe(fixed_m, 2, trial_variance([fixed_m.sharpe, 0.0]))
    )
    with pytest.raises(DataError, match="baseline"):
        score_methods(c, np.ones(len(c)), sizes, baseline="kelly")
