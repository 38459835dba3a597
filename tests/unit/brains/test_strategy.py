"""The Strategy Brain's decisions: disable, primary and fallback, per regime, ensemble weights,
each with its reason; too little record changes nothing; bad input is one clear error."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import pytest

from core.brains.strategy import (
    Recommendation,
    RecommendationKind,
    StrategyReview,
    review_strategies,
)
from core.brains.strategy_input import StrategyReviewConfig, StrategyState
from core.brains.strategy_stats import Prediction
from core.domain.enums import PositionSide
from core.errors import DataError
from tests.unit.brains.strategy_builders import (
    DAY_MS,
    HOUR_MS,
    T0_MS,
    again,
    member,
    predictions,
    review_input,
    trade,
    trades,
)

WIN_LOSE = [0.02, -0.01]  # profit factor 2
LOSING = [0.01, -0.02]  # profit factor 0.5


def rec(
    review: StrategyReview, kind: RecommendationKind, subject: str | None = None
) -> Recommendation:
    found = [
        r
        for r in review.recommendations
        if r.kind is kind and (subject is None or r.subject == subject)
    ]
    assert len(found) == 1, review.recommendations
    return found[0]


def test_a_consistent_loser_is_disabled_with_its_profit_factor() -> None:
    ts = trades(LOSING * 20, provider="mean_reversion") + trades(
        WIN_LOSE * 20, provider="ema_rsi", start=40
    )
    review = review_strategies(review_input(ts))
    assert review.state.disabled == ("mean_reversion",)
    r = rec(review, RecommendationKind.DISABLE, "mean_reversion")
    assert r.changed
    assert "profit factor 0.50 over 40 trades, below 0.80" in r.reason
    assert review.state.primary == "ema_rsi"
    assert review.state.fallback is None  # the only other one is disabled


def test_a_disabled_primary_is_replaced_and_the_reason_says_so() -> None:
    ts = trades(LOSING * 20, provider="mean_reversion") + trades(
        WIN_LOSE * 20, provider="ema_rsi", start=40
    )
    cur = StrategyState(primary="mean_reversion", fallback="ema_rsi")
    review = review_strategies(review_input(ts, current=cur))
    assert (review.state.primary, review.state.fallback) == ("ema_rsi", None)
    r = rec(review, RecommendationKind.PRIMARY)
    assert r.changed and "mean_reversion is replaced (it is disabled)" in r.reason
    f = rec(review, RecommendationKind.FALLBACK)
    assert f.changed and "ema_rsi is replaced (it is the primary now)" in f.reason


def test_too_few_trades_change_nothing_and_say_so() -> None:
    ts = trades(LOSING * 4, provider="mean_reversion") + trades(
        WIN_LOSE * 4, provider="ema_rsi", start=8
    )
    cur = StrategyState(
        primary="mean_reversion",
        fallback="ema_rsi",
        regime_providers=(("trend_low_vol", "mean_reversion"),),
    )
    review = review_strategies(review_input(ts, current=cur))
    assert review.state == cur
    assert not review.changed
    assert "no enabled provider has 20 trades in the window (most: ema_rsi with 8): unchanged" in (
        rec(review, RecommendationKind.PRIMARY).reason
    )
    assert "no enabled provider has 10 trades in trend_low_vol: unchanged" in (
        rec(review, RecommendationKind.REGIME, "trend_low_vol").reason
    )
    assert not [r for r in review.recommendations if r.kind is RecommendationKind.DISABLE]
    # a better-judged challenger does not unseat a primary too young to judge
    more = ts + trades(WIN_LOSE * 8, provider="ema_rsi", start=16)
    review = review_strategies(review_input(more, current=cur))
    assert review.state.primary == "mean_reversion"
    assert "mean_reversion has 8 trades in the window, needs 20 to be judged: unchanged" in (
        rec(review, RecommendationKind.PRIMARY).reason
    )


def test_empty_input_recommends_nothing_new() -> None:
    review = review_strategies(review_input())
    assert review.providers == () and review.regimes == () and review.members == ()
    assert review.state == StrategyState()
    assert not review.changed
    assert "no enabled provider has 20 trades in the window: none" in (
        rec(review, RecommendationKind.PRIMARY).reason
    )


def test_a_disabled_provider_needs_the_enable_profit_factor_to_return() -> None:
    cur = StrategyState(disabled=("mean_reversion",))
    # profit factor 0.9: above the disable line (0.8), below the enable line (1.0)
    middling = trades([0.009, -0.01] * 15, provider="mean_reversion")
    review = review_strategies(review_input(middling, current=cur))
    assert review.state.disabled == ("mean_reversion",)
    assert "stays disabled: profit factor 0.90 over 30 trades, needs 1.00" in (
        rec(review, RecommendationKind.DISABLE).reason
    )
    good = trades(WIN_LOSE * 15, provider="mean_reversion")
    review = review_strategies(review_input(good, current=cur))
    assert review.state.disabled == ()
    r = rec(review, RecommendationKind.ENABLE, "mean_reversion")
    assert r.changed and "enabled again" in r.reason
    # and the never-disabled at 0.9 stays enabled: between the lines nothing flips
    review = review_strategies(review_input(middling))
    assert review.state.disabled == ()


def test_a_disabled_provider_returns_on_probation_once_its_trades_left_the_window() -> None:
    cur = StrategyState(disabled=("ensemble",))
    providers = ("ema_rsi", "ensemble")
    # still some of its trades in the window: it stays out
    few = trades(WIN_LOSE * 2, provider="ensemble")
    review = review_strategies(review_input(few, current=cur, providers=providers))
    assert review.state.disabled == ("ensemble",)
    assert "stays disabled: 4 trades in the window, needs 30" in (
        rec(review, RecommendationKind.DISABLE).reason
    )
    # none left: the verdict aged out, it trades again
    review = review_strategies(review_input([], current=cur, providers=providers))
    assert review.state.disabled == ()
    r = rec(review, RecommendationKind.ENABLE, "ensemble")
    assert r.changed and "on probation" in r.reason


def test_every_provider_may_be_disabled_standing_aside() -> None:
    losing = trades([0.005, -0.01] * 15, provider="ema_rsi")  # profit factor 0.5
    worse = trades([0.002, -0.01] * 15, provider="ensemble", start=30)
    both = ("ema_rsi", "ensemble")
    review = review_strategies(review_input(losing + worse, providers=both))
    assert review.state.disabled == ("ema_rsi", "ensemble")  # the engine enters nothing
    assert review.state.primary is None


def test_a_restart_is_not_taken_for_a_window_without_trades() -> None:
    cur = StrategyState(disabled=("ensemble",))
    providers = ("ema_rsi", "ensemble")
    window = StrategyReviewConfig().window_ms
    now = T0_MS + 100 * HOUR_MS
    # the process started an hour ago: it knows no trade before, the window is not covered
    inp = review_input([], current=cur, providers=providers)
    started = dataclasses.replace(inp, as_of_ms=now, record_from_ms=now - HOUR_MS)
    review = review_strategies(started)
    assert review.state.disabled == ("ensemble",)
    # a whole window after the start with none of its trades: on probation
    later = dataclasses.replace(started, as_of_ms=now - HOUR_MS + window)
    assert review_strategies(later).state.disabled == ()


def test_the_primary_stays_unless_beaten_by_more_than_the_margin() -> None:
    # ema_rsi: per-trade Sharpe of [0.02, -0.01] * n; mean_reversion slightly better
    a = trades(WIN_LOSE * 15, provider="ema_rsi")
    slightly = trades([0.021, -0.01] * 15, provider="mean_reversion", start=30)
    cur = StrategyState(primary="ema_rsi")
    review = review_strategies(review_input(a + slightly, current=cur))
    assert review.state.primary == "ema_rsi"
    r = rec(review, RecommendationKind.PRIMARY)
    assert not r.changed and "ema_rsi stays: mean_reversion leads by 0.0" in r.reason
    assert review.state.fallback == "mean_reversion"
    much = trades([0.03, -0.005] * 15, provider="mean_reversion", start=30)
    review = review_strategies(review_input(a + much, current=cur))
    assert (review.state.primary, review.state.fallback) == ("mean_reversion", "ema_rsi")
    assert "mean_reversion (per-trade Sharpe" in rec(review, RecommendationKind.PRIMARY).reason


def test_trades_before_the_window_do_not_count() -> None:
    cfg = StrategyReviewConfig(window_ms=7 * DAY_MS)
    old = trades(LOSING * 20, provider="mean_reversion")  # the first 40 hours
    recent = [
        trade(r, provider="mean_reversion", i=k, opened_ms=T0_MS + 20 * DAY_MS + k * 3_600_000)
        for k, r in enumerate(WIN_LOSE * 15)
    ]
    review = review_strategies(review_input(old + recent, config=cfg))
    assert review.window_start_ms == review.as_of_ms - 7 * DAY_MS
    assert review.providers[0].edge.trades == 30
    assert review.state.disabled == ()
    review = review_strategies(
        review_input(old + recent, config=dataclasses.replace(cfg, window_ms=0))
    )
    assert review.providers[0].edge.trades == 70


def test_per_regime_preference_and_standing_aside_where_all_lose() -> None:
    ts = (
        trades([0.01, -0.005] * 10, provider="ema_rsi", regime="trend_low_vol")
        + trades([0.004, -0.003] * 10, provider="mean_reversion", regime="trend_low_vol", start=20)
        + trades([0.004, -0.008] * 10, provider="ema_rsi", regime="range_high_vol", start=40)
        + trades([0.002, -0.004] * 10, provider="mean_reversion", regime="range_high_vol", start=60)
        + trades([0.05] * 12, provider="ema_rsi", regime="", start=80)
    )
    review = review_strategies(review_input(ts))
    assert review.state.regime_providers == (("trend_low_vol", "ema_rsi"),)
    r = rec(review, RecommendationKind.REGIME, "range_high_vol")
    assert r.value == "" and "no enabled provider made money in range_high_vol" in r.reason
    compat = {(x.provider, x.regime): x.compatible for x in review.regimes}
    assert compat[("ema_rsi", "trend_low_vol")] is True
    assert compat[("mean_reversion", "range_high_vol")] is False
    assert compat[("ema_rsi", "unknown")] is True  # shown, but no preference for the warm-up
    assert not [r for r in review.recommendations if r.subject == "unknown"]


def test_shorts_count_by_their_own_sign() -> None:
    shorts = [
        trade(r, provider="ema_rsi", i=k, side=PositionSide.SHORT)
        for k, r in enumerate(WIN_LOSE * 10)
    ]
    review = review_strategies(review_input(shorts))
    assert review.providers[0].edge.profit_factor == pytest.approx(2.0)
    assert review.state.primary == "ema_rsi"


def test_weights_follow_the_log_loss_within_bounds() -> None:
    n = 60
    up = [k % 2 == 0 for k in range(n)]
    sharp = predictions([0.7 if u else 0.3 for u in up], up)
    dull = predictions([0.5] * n, up)
    review = review_strategies(review_input(members=[member("xgb", sharp), member("lgbm", dull)]))
    w = dict(review.state.weights)
    assert w["xgb"] > w["lgbm"]
    assert sum(w.values()) == pytest.approx(1.0)
    assert all(0.05 - 1e-12 <= x <= 0.6 + 1e-12 for x in w.values())
    r = rec(review, RecommendationKind.WEIGHTS)
    assert r.changed and "no valid current weights" in r.reason and "log-loss" in r.reason


def test_too_few_predictions_keep_the_weights_or_leave_the_ensembles_own() -> None:
    few = predictions([0.6] * 10, [True] * 10)
    cur = StrategyState(weights=(("lgbm", 0.3), ("xgb", 0.7)))
    cfg = StrategyReviewConfig(max_weight=0.7)
    inp = review_input(members=[member("xgb", few), member("lgbm", few)], current=cur, config=cfg)
    review = review_strategies(inp)
    assert review.state.weights == (("lgbm", 0.3), ("xgb", 0.7))
    r = rec(review, RecommendationKind.WEIGHTS)
    assert not r.changed and "lgbm has 10, xgb has 10; needs 50): unchanged" in r.reason
    # a member added since: the current weights no longer fit; none until judged (the
    # ensemble then weighs by its own record, not by a guess)
    grown = dataclasses.replace(inp, members=(*inp.members, member("nhits", few)))
    review = review_strategies(grown)
    assert review.state.weights == ()
    r = rec(review, RecommendationKind.WEIGHTS)
    assert r.changed and "the ensemble's own weights until they are judged" in r.reason


def test_the_hysteresis_band_holds_small_moves() -> None:
    n = 60
    up = [k % 2 == 0 for k in range(n)]
    a = predictions([0.62 if u else 0.38 for u in up], up)
    b = predictions([0.6 if u else 0.4 for u in up], up)
    cfg = StrategyReviewConfig(hysteresis=0.2)
    inp = review_input(
        members=[member("a", a), member("b", b)],
        current=StrategyState(weights=(("a", 0.5), ("b", 0.5))),
        config=cfg,
    )
    review = review_strategies(inp)
    assert review.state.weights == (("a", 0.5), ("b", 0.5))
    assert "every target within the band 0.20: unchanged" in (
        rec(review, RecommendationKind.WEIGHTS).reason
    )


def test_own_output_fed_back_changes_nothing() -> None:
    ts = (
        trades(LOSING * 20, provider="mean_reversion")
        + trades(WIN_LOSE * 20, provider="ema_rsi", start=40, regime="range_low_vol")
        + trades([0.015, -0.01] * 20, provider="ensemble", start=80)
    )
    up = [k % 3 != 0 for k in range(80)]
    members = [
        member("xgb", predictions([0.65 if u else 0.45 for u in up], up), T0_MS),
        member("lgbm", predictions([0.55] * 80, up)),
    ]
    inp = review_input(ts, members=members)
    first = review_strategies(inp)
    assert first.changed
    second = review_strategies(again(inp, first.state))
    third = review_strategies(again(inp, second.state))
    assert second.state == first.state == third.state
    assert not second.changed and not third.changed


def test_nan_pnl_is_one_clear_error() -> None:
    bad = dataclasses.replace(trade(0.01, i=3), pnl=Decimal("NaN"))
    with pytest.raises(DataError, match=r"trade ema_rsi-3 has pnl NaN .* must be finite"):
        review_input([bad])
    bad = dataclasses.replace(trade(0.01, i=4), pnl_pct=math.nan)
    with pytest.raises(DataError, match=r"trade ema_rsi-4 .* must be finite"):
        review_input([bad])


@pytest.mark.parametrize(
    ("prediction", "message"),
    [
        (Prediction(ts_ms=T0_MS, p_up=1.5, up=True), r"xgb P\(up\) at .* was 1.5, not in \[0, 1\]"),
        (Prediction(ts_ms=T0_MS, p_up=math.nan, up=True), r"was nan"),
        (Prediction(ts_ms=T0_MS, p_up=0.6, up=True, traded=True), r"traded prediction .* finite"),
    ],
)
def test_bad_predictions_are_one_clear_error(prediction: Prediction, message: str) -> None:
    with pytest.raises(DataError, match=message):
        review_input(members=[member("xgb", [prediction])])


def test_other_bad_input_is_rejected() -> None:
    with pytest.raises(DataError, match="by the review time"):
        review_input([trade(0.01)], as_of_ms=T0_MS)
    with pytest.raises(DataError, match="has no provider"):
        review_input([trade(0.01, provider="")])
    with pytest.raises(DataError, match="member names must be distinct"):
        review_input(members=[member("xgb", []), member("xgb", [])])
    with pytest.raises(DataError, match="current weight of xgb was nan"):
        review_input(current=StrategyState(weights=(("xgb", math.nan),)))


@pytest.mark.parametrize(
    "change",
    [
        {"min_trades": 1},
        {"min_weight": 0.7, "max_weight": 0.6},
        {"disable_profit_factor": 1.2, "enable_profit_factor": 1.0},
        {"hysteresis": -0.1},
        {"temperature": 0.0},
        {"window_ms": -1},
    ],
)
def test_config_rejects_what_could_never_work(change: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="strategy review"):
        StrategyReviewConfig(**change)
