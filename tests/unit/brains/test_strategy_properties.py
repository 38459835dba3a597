"""Properties of the Strategy Brain over random records: the weights stay inside their bounds
and sum to 1, the choices are consistent, and the review fed its own output moves nothing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.brains.strategy import review_strategies
from core.brains.strategy_input import StrategyReviewConfig, StrategyState
from core.brains.strategy_weights import relaxed_bounds, with_hysteresis
from core.ml.ensemble_weights import bounded_softmax
from tests.unit.brains.strategy_builders import again, member, predictions, review_input, trade

PROVIDERS = ("ema_rsi", "mean_reversion", "ensemble")
REGIMES = ("trend_low_vol", "range_high_vol", "")
MEMBERS = ("xgb", "lgbm", "nhits", "patchtst")
TOL = 1e-9

bounds = st.tuples(st.floats(0.0, 0.5, allow_nan=False), st.floats(0.0, 1.0, allow_nan=False)).map(
    lambda b: (min(b), max(b))
)


def _weights(logits: list[float], lo: float, hi: float) -> dict[str, float]:
    """Return valid weights of len(logits) members (the ensemble's rule)."""
    k = len(logits)
    w = bounded_softmax(
        np.array([logits]), np.ones((1, k), dtype=np.bool_), min_weight=lo, max_weight=hi
    )[0]
    return {MEMBERS[i]: float(w[i]) for i in range(k)}


def _assert_bounded(weights: dict[str, float], lo: float, hi: float) -> None:
    rlo, rhi = relaxed_bounds(len(weights), lo, hi)
    assert all(rlo - TOL <= w <= rhi + TOL for w in weights.values()), (weights, rlo, rhi)
    assert abs(sum(weights.values()) - 1.0) <= TOL


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda k: st.tuples(
            st.lists(st.floats(-20, 20), min_size=k, max_size=k),
            st.lists(st.floats(-20, 20), min_size=k, max_size=k),
        )
    ),
    bounds,
    st.floats(0.0, 0.5),
)
def test_hysteresis_stays_bounded_and_is_a_fixed_point(
    logits: tuple[list[float], list[float]], b: tuple[float, float], band: float
) -> None:
    lo, hi = b
    target, current = _weights(logits[0], lo, hi), _weights(logits[1], lo, hi)
    new, moved = with_hysteresis(target, current, band=band, min_weight=lo, max_weight=hi)
    _assert_bounded(new, lo, hi)
    for m in new:  # a member within the band of its target never moves
        if abs(target[m] - current[m]) <= band and m in moved:
            assert abs(new[m] - current[m]) <= 1e-6  # only the renormalisation's float noise
    again_new, again_moved = with_hysteresis(target, new, band=band, min_weight=lo, max_weight=hi)
    assert again_new == new and again_moved == ()


records = st.lists(
    st.tuples(
        st.sampled_from(PROVIDERS),
        st.sampled_from(REGIMES),
        st.integers(-50, 50).map(lambda x: x / 1000),  # ties and draws too
    ),
    max_size=120,
)
member_records = st.lists(
    st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), min_size=0, max_size=80),
    min_size=0,
    max_size=4,
)
states = st.builds(
    StrategyState,
    primary=st.sampled_from((None, *PROVIDERS)),
    fallback=st.sampled_from((None, *PROVIDERS)),
    disabled=st.sampled_from(((), ("mean_reversion",), ("ensemble", "ema_rsi"))),
)


@settings(max_examples=150, deadline=None)
@given(records, member_records, states, bounds, st.floats(0.0, 0.3))
def test_review_is_consistent_bounded_and_its_own_fixed_point(
    recs: list[tuple[str, str, float]],
    members_p: list[list[tuple[float, bool]]],
    state: StrategyState,
    b: tuple[float, float],
    band: float,
) -> None:
    cfg = StrategyReviewConfig(
        min_trades=5,
        regime_min_trades=3,
        disable_min_trades=8,
        min_predictions=10,
        min_weight=b[0],
        max_weight=b[1],
        hysteresis=band,
    )
    ts = [trade(r, provider=p, regime=g, i=i) for i, (p, g, r) in enumerate(recs)]
    ms = [
        member(MEMBERS[j], predictions([p for p, _ in ps], [u for _, u in ps]))
        for j, ps in enumerate(members_p)
    ]
    inp = review_input(ts, members=ms, providers=PROVIDERS, current=state, config=cfg)
    first = review_strategies(inp)
    s = first.state
    if s.weights:  # none: the ensemble weighs by its own record
        _assert_bounded(dict(s.weights), cfg.min_weight, cfg.max_weight)
    assert s.primary not in s.disabled and s.fallback not in s.disabled
    assert s.primary is None or s.primary != s.fallback
    assert all(p not in s.disabled for _, p in s.regime_providers)
    assert all(r.reason for r in first.recommendations)
    second = review_strategies(again(inp, s))
    assert second.state == s
    assert not second.changed, [r for r in second.recommendations if r.changed]
