"""An ensemble entry explained: each member's P(up) and weight, the regime at the candle, and
each tree member's largest native contributions on that row (which, with the bias, add up to
its log-odds)."""

from __future__ import annotations

import numpy as np
import pytest

from core.brains.regime import Regime, detect_regimes
from core.market.synthetic import generate_candles
from core.ml.ensemble import EXPLAIN_TOP_K, EnsembleConfig, EnsembleMember, EnsembleProvider
from core.ml.features import compute_features
from core.ml.members import MEMBERS
from core.ml.training import TrainConfig, fit_member, prepare


@pytest.fixture(scope="module")
def trained() -> tuple[EnsembleProvider, object]:
    candles = generate_candles("BTC/USDT", "1h", 1900, seed=7, trend_scale=6.0)
    history = candles.slice(0, 1500)
    data = prepare([history], TrainConfig(params={"n_estimators": 15, "n_jobs": 1}))
    members = [
        EnsembleMember(
            name=name,
            member=MEMBERS[name].from_files(fit_member(name, data, {"n_estimators": 15}).files),
            trained_until_ms=data.end_ms,
        )
        for name in ("lgbm", "xgb")
    ]
    return EnsembleProvider(members, EnsembleConfig()), candles


def test_an_entry_is_explained_by_its_row_of_the_frame(trained: tuple) -> None:
    provider, candles = trained
    frame = provider.compute(candles)
    # The most confident row after training (what makes it an entry is the threshold only).
    i = 1500 + int(np.nanargmax(frame.p_up[1500:]))
    why = provider.explain("BTC/USDT", int(candles.ts_ms[i]))
    assert why is not None and why.provider == "ensemble"
    assert why.p_up == pytest.approx(frame.p_up[i])
    assert [(m.member, m.p_up, m.weight) for m in why.members] == [
        (name, pytest.approx(frame.member_p[i, j]), pytest.approx(frame.weights[i, j]))
        for j, name in enumerate(frame.members)
    ]
    # The regime as the candle saw it: the same label on the history cut at that candle.
    assert why.regime == Regime(int(detect_regimes(candles.slice(0, i + 1))[-1])).label

    fm = compute_features(candles)
    for m in provider.members:
        pushes = [(f.feature, f.value) for f in why.top_features if f.member == m.name]
        contrib = m.member.contributions(  # type: ignore[attr-defined]
            fm.values[i : i + 1], columns=fm.columns, feature_set_hash=fm.set_hash
        )[0]
        order = np.argsort(-np.abs(contrib[:-1]), kind="stable")[:EXPLAIN_TOP_K]
        assert pushes == [(fm.columns[j], pytest.approx(contrib[j])) for j in order]
        # Contributions plus the bias are the member's margin: log-odds of its P(up).
        p = m.member.predict_proba(
            fm.values[i : i + 1], columns=fm.columns, feature_set_hash=fm.set_hash
        )[0]
        assert contrib.sum() == pytest.approx(np.log(p / (1 - p)), abs=1e-4)


def test_a_row_without_a_prediction_or_never_computed_has_no_explanation(trained: tuple) -> None:
    provider, candles = trained
    provider.compute(candles)
    assert provider.explain("BTC/USDT", int(candles.ts_ms[5])) is None  # features warming up
    assert provider.explain("ETH/USDT", int(candles.ts_ms[-1])) is None  # not computed


def test_a_member_left_out_is_explained_without_a_number_json_cannot_hold() -> None:
    import json

    from core.domain.events import jsonable
    from core.domain.explanations import EntryExplanation
    from tests.unit.ml.test_ensemble import Fake

    candles = generate_candles("BTC/USDT", "1h", 600, seed=4)
    start = int(candles.ts_ms[0])
    provider = EnsembleProvider(
        [
            EnsembleMember(name="a", member=Fake(0.7), trained_until_ms=start),  # type: ignore[arg-type]
            EnsembleMember(name="b", member=Fake(0.7), trained_until_ms=start),  # type: ignore[arg-type]
        ],
        EnsembleConfig(disabled=("b",)),  # b has no P(up) on any row
    )
    frame = provider.compute(candles)
    i = int(np.flatnonzero(frame.entry)[0])

    why = provider.explain("BTC/USDT", int(candles.ts_ms[i]))

    assert why is not None
    assert [(m.member, m.p_up, m.weight) for m in why.members] == [
        ("a", pytest.approx(frame.member_p[i, 0]), 1.0),
        ("b", None, 0.0),  # not NaN: the stored trade and the events are strict JSON
    ]
    text = json.dumps(jsonable(why), allow_nan=False)
    assert EntryExplanation.from_json(json.loads(text)) == why
    assert why.members_text() == f"a={frame.member_p[i, 0]:.2f}@1.00;b=-@0.00"
