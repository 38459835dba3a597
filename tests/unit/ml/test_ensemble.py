"""The ensemble provider: weights from resolved out-of-sample labels, exclusions, causality."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from core.domain.market import CandleSeries
from core.errors import DataError, FeatureMismatch
from core.market.synthetic import generate_candles
from core.ml.ensemble import EnsembleConfig, EnsembleFrame, EnsembleMember, EnsembleProvider
from core.ml.features import feature_set

HASH = feature_set().hash


@dataclass
class Fake:
    """A member whose P(up) is ``level`` nudged by the 1-candle return: causal, like a model."""

    level: float
    spread: float = 0.02
    feature_set_hash: str = HASH

    def predict_proba(
        self, x: npt.NDArray[np.float64], *, columns: Sequence[str], feature_set_hash: str
    ) -> npt.NDArray[np.float64]:
        if feature_set_hash != self.feature_set_hash:
            raise FeatureMismatch(f"fake refuses feature set {feature_set_hash!r}")
        ret = x[:, list(columns).index("ret_1")]
        return np.clip(self.level + self.spread * np.tanh(100 * ret), 0.0, 1.0)


def series(n: int = 1500, seed: int = 4) -> CandleSeries:
    return generate_candles("BTC/USDT", "1h", n, seed=seed)


def ensemble(*members: tuple[str, Fake], **config: object) -> EnsembleProvider:
    start = int(series().ts_ms[0])
    return EnsembleProvider(
        [EnsembleMember(name=n, member=m, trained_until_ms=start) for n, m in members],  # type: ignore[arg-type]
        EnsembleConfig(**config),  # type: ignore[arg-type]
    )


def test_weights_move_to_the_member_with_the_lower_recent_log_loss() -> None:
    s = series()
    # About a third of the labels are TP1-first: 0.35 is honest, 0.9 is confidently wrong.
    provider = ensemble(
        ("good", Fake(0.35)), ("bad", Fake(0.9)), min_weight=0.1, max_weight=0.9, min_labels=100
    )

    frame = provider.compute(s)

    first = int(np.argmax(frame.weights.sum(axis=1) > 0))  # features and health warmed up
    assert np.allclose(frame.weights[first], [0.5, 0.5])  # < 100 labels resolved: equal
    assert np.allclose(frame.weights[-200:], [0.9, 0.1])  # bounded at the limits
    late = frame.p_up[-200:]
    assert np.allclose(late, 0.9 * frame.member_p[-200:, 0] + 0.1 * frame.member_p[-200:, 1])
    assert provider.exclusions == {}


def test_labels_count_only_from_the_member_s_training_end_on() -> None:
    s = series()
    start = int(s.ts_ms[0])
    late_end = int(s.ts_ms[-300])  # "bad" was trained until near the end: little record
    provider = EnsembleProvider(
        [
            EnsembleMember(name="good", member=Fake(0.35), trained_until_ms=start),  # type: ignore[arg-type]
            EnsembleMember(name="bad", member=Fake(0.9), trained_until_ms=late_end),  # type: ignore[arg-type]
        ],
        EnsembleConfig(min_labels=24),
    )

    frame = provider.compute(s)

    before = s.ts_ms < late_end
    active = frame.weights.sum(axis=1) > 0
    assert np.allclose(frame.weights[before & active], 0.5)  # bad has no record yet: equal
    assert np.allclose(frame.weights[-100:], [0.9, 0.1])


def test_a_degenerate_member_is_left_out_and_reported() -> None:
    s = series()
    provider = ensemble(("good", Fake(0.35)), ("stuck", Fake(0.615, spread=0.0)))

    frame = provider.compute(s)

    assert (frame.weights[:, 1] == 0).all()
    known = np.isfinite(frame.p_up)
    assert known.sum() > 1000
    assert np.allclose(frame.p_up[known], frame.member_p[known, 0])
    assert "near-constant" in provider.exclusions["stuck"]
    assert frame.excluded == provider.exclusions
    assert provider.excluded("BTC/USDT") == {"stuck": provider.exclusions["stuck"]}
    assert provider.excluded("ETH/USDT") == {}  # not computed for ETH


def test_a_member_of_another_feature_set_or_disabled_is_left_out_with_the_reason() -> None:
    provider = ensemble(
        ("good", Fake(0.35)),
        ("other", Fake(0.4, feature_set_hash="another")),
        ("off", Fake(0.4)),
        disabled=("off",),
    )

    frame = provider.compute(series())

    assert "refuses feature set" in provider.exclusions["other"]
    assert "disabled" in provider.exclusions["off"]
    assert (frame.weights[:, 1:] == 0).all()


def test_entries_follow_the_threshold_and_shorts_only_when_allowed() -> None:
    s = series()
    longs = ensemble(("up", Fake(0.7, spread=0.05)), threshold=0.7).compute(s)
    shorts = ensemble(("down", Fake(0.3, spread=0.05)), threshold=0.7, allow_short=True)
    no_shorts = ensemble(("down", Fake(0.3, spread=0.05)), threshold=0.7).compute(s)
    frame = shorts.compute(s)

    known = np.isfinite(longs.p_up)
    assert ((longs.entry == 1) == (known & (longs.p_up >= 0.7))).all()
    assert (longs.confidence[longs.entry == 1] == longs.p_up[longs.entry == 1]).all()
    assert ((frame.entry == -1) == (known & (1 - frame.p_up >= 0.7))).all()
    assert np.allclose(frame.confidence[frame.entry == -1], 1 - frame.p_up[frame.entry == -1])
    assert (no_shorts.entry == 0).all()
    assert (frame.entry == -1).sum() > 100


def _rows(frame: EnsembleFrame, stop: int) -> list[np.ndarray]:
    return [
        a[:stop]
        for a in (
            frame.entry,
            frame.confidence,
            frame.p_up,
            frame.member_p,
            frame.weights,
            frame.exit_long,
            frame.atr,
        )
    ]


def test_predictions_at_t_do_not_change_when_later_candles_change() -> None:
    s = series(1200)
    provider = ensemble(("good", Fake(0.35)), ("bad", Fake(0.9)), min_labels=5)
    full = provider.compute(s)
    t = 900
    cut = provider.compute(s.slice(0, t + 1))
    other_tail = generate_candles("BTC/USDT", "1h", 1200, seed=99, start_price=float(s.close[t]))
    altered = CandleSeries.from_columns(
        s.symbol,
        s.timeframe,
        s.ts_ms,
        np.concatenate([s.open[: t + 1], other_tail.open[t + 1 :]]),
        np.concatenate([s.high[: t + 1], other_tail.high[t + 1 :]]),
        np.concatenate([s.low[: t + 1], other_tail.low[t + 1 :]]),
        np.concatenate([s.close[: t + 1], other_tail.close[t + 1 :]]),
        np.concatenate([s.volume[: t + 1], other_tail.volume[t + 1 :]]),
    )
    changed = provider.compute(altered)

    assert not np.allclose(full.weights[900:], changed.weights[900:])  # the future did change
    for a, b, c in zip(_rows(full, t + 1), _rows(cut, t + 1), _rows(changed, t + 1), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_trading_before_a_member_s_training_end_is_refused_as_in_sample() -> None:
    s = series()
    end = int(s.ts_ms[24])  # 2024-01-02 00:00
    provider = EnsembleProvider(
        [EnsembleMember(name="xgb", member=Fake(0.35), trained_until_ms=end, version_id="xgb-1")]  # type: ignore[arg-type]
    )

    with pytest.raises(DataError, match=r"\(xgb-1\) were trained on candles up to .* in sample"):
        provider.refuse_in_sample(end - 3_600_000)
    with pytest.raises(DataError, match=r"--timerange 20240102-"):  # midnight: that day
        provider.refuse_in_sample(0)
    provider.refuse_in_sample(end)  # from the end on: out of sample


def test_the_config_refuses_a_threshold_that_lets_both_sides_fire() -> None:
    with pytest.raises(ValueError, match="threshold must be in"):
        EnsembleConfig(threshold=0.5)


def _walk_forward(s: CandleSeries, sets: Sequence[tuple[int, float]]) -> EnsembleProvider:
    """An ensemble retrained at each (row, level): that set serves rows closing after it."""
    provider = EnsembleProvider([], EnsembleConfig(min_labels=5), walk_forward=True)
    for row, level in sets:
        at_ms = int(s.ts_ms[row])
        member = EnsembleMember(name="m", member=Fake(level), trained_until_ms=at_ms)  # type: ignore[arg-type]
        provider.add_set([member], at_ms)
    return provider


def test_each_row_is_predicted_by_the_newest_set_active_at_its_close() -> None:
    s = series(1200)
    provider = _walk_forward(s, [(400, 0.35), (800, 0.9)])
    frame = provider.compute(s)
    # Set k is active from the open of row r_k, i.e. the close of row r_k - 1: rows r_k on.
    assert np.isnan(frame.p_up[:400]).all() and not frame.entry[:400].any()  # no set yet
    alone = [EnsembleProvider([m], EnsembleConfig(min_labels=5)) for m in provider.sets[0].members]
    alone += [EnsembleProvider([m], EnsembleConfig(min_labels=5)) for m in provider.sets[1].members]
    mid, late = (a.compute(s) for a in alone)
    # Past warm-up, each row's P(up) is that of its set's member (one member: weight 1).
    np.testing.assert_array_equal(frame.member_p[400:800], mid.member_p[400:800])
    np.testing.assert_array_equal(frame.member_p[800:], late.member_p[800:])
    healthy = np.isfinite(frame.p_up[800 + 48 :])
    assert healthy.all() and (frame.entry[800 + 48 :] == 1).any()  # 0.9 enters long


def test_adding_a_set_never_changes_a_row_that_closed_by_its_activation() -> None:
    s = series(1200)
    before = _walk_forward(s, [(400, 0.35)]).compute(s)
    after = _walk_forward(s, [(400, 0.35), (800, 0.9)]).compute(s)
    for a, b in zip(_rows(before, 800), _rows(after, 800), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(before.p_up[800:], after.p_up[800:], equal_nan=True)


def test_a_walk_forward_ensemble_stays_causal() -> None:
    s = series(1200)
    provider = _walk_forward(s, [(300, 0.35), (600, 0.9), (900, 0.4)])
    full = provider.compute(s)
    for t in (350, 650, 1000):
        cut = provider.compute(s.slice(0, t + 1))
        for a, b in zip(_rows(full, t + 1), _rows(cut, t + 1), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_set_trained_past_its_activation_or_out_of_order_is_refused() -> None:
    s = series(100)
    provider = _walk_forward(s, [(50, 0.35)])
    member = EnsembleMember(name="m", member=Fake(0.4), trained_until_ms=int(s.ts_ms[60]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trained past"):
        provider.add_set([member], int(s.ts_ms[59]))
    with pytest.raises(ValueError, match="time order"):
        provider.add_set([member], int(s.ts_ms[40]))
    provider.refuse_in_sample(0)  # walk-forward sets are never in sample


def test_a_recompute_after_a_new_set_reuses_nothing_it_should_not() -> None:
    s = series(1200)
    provider = _walk_forward(s, [(300, 0.35), (600, 0.9)])
    provider.compute(s)  # cached: the features, labels and both sets' rows of this series
    provider.add_set(
        [EnsembleMember(name="m", member=Fake(0.4), trained_until_ms=int(s.ts_ms[900]))],  # type: ignore[arg-type]
        int(s.ts_ms[900]),
    )
    again = provider.compute(s)
    fresh = _walk_forward(s, [(300, 0.35), (600, 0.9), (900, 0.4)]).compute(s)
    for a, b in zip(_rows(again, len(s)), _rows(fresh, len(s)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_consecutive_window_member_predicts_each_row_from_its_full_window() -> None:
    from core.ml.features import compute_features
    from core.ml.members import MEMBERS
    from core.ml.training import TrainConfig, fit_member, prepare
    from tests.unit.ml.test_training import TINY_TORCH

    s = series(1500)
    trained = s.slice(0, 900)
    fit = fit_member("nhits", prepare([trained], TrainConfig()), TINY_TORCH)
    nhits = MEMBERS["nhits"].from_files(fit.files)
    end = int(trained.ts_ms[-1]) + 3_600_000
    # a short health look-back: the set's rows begin a row after the first one it predicts
    provider = EnsembleProvider([], EnsembleConfig(health_window=2), walk_forward=True)
    provider.add_set([EnsembleMember(name="nhits", member=nhits, trained_until_ms=end)], end)

    frame = provider.compute(s)

    fm = compute_features(s)
    whole = nhits.predict_proba(fm.values, columns=fm.columns, feature_set_hash=fm.set_hash)
    rows = np.flatnonzero(np.isfinite(frame.member_p[:, 0]))
    assert rows[0] == 900 and rows[-1] == len(s) - 1
    # each row from its own window over the candles before it, not over the valid rows only
    # or a window cut short where the set's rows begin
    assert np.allclose(frame.member_p[rows, 0], whole[rows], rtol=0, atol=1e-6)


@dataclass
class Counting(Fake):
    """A Fake that counts the rows it was asked to predict."""

    rows: int = 0

    def predict_proba(
        self, x: npt.NDArray[np.float64], *, columns: Sequence[str], feature_set_hash: str
    ) -> npt.NDArray[np.float64]:
        self.rows += len(x)
        return super().predict_proba(x, columns=columns, feature_set_hash=feature_set_hash)


def test_a_history_grown_by_a_candle_predicts_its_row_only_and_equals_a_full_compute() -> None:
    from core.ml.members import MEMBERS
    from core.ml.training import TrainConfig, fit_member, prepare
    from tests.unit.ml.test_training import TINY_TORCH

    s = series(1300)
    fit = fit_member("nhits", prepare([s.slice(0, 800)], TrainConfig()), TINY_TORCH)
    end = int(s.ts_ms[799]) + 3_600_000
    counting = Counting(0.4)

    def members(fake: Fake) -> list[EnsembleMember]:
        return [
            EnsembleMember(name="fake", member=fake, trained_until_ms=end),  # type: ignore[arg-type]
            EnsembleMember(
                name="nhits", member=MEMBERS["nhits"].from_files(fit.files), trained_until_ms=end
            ),
        ]

    live = EnsembleProvider(members(counting), EnsembleConfig(min_labels=24))
    live.compute(s.slice(0, 1200))
    for k in range(1201, 1206):  # qt run: a new history object per candle
        before = counting.rows
        grown = live.compute(s.slice(0, k))
        assert counting.rows - before == 1  # the new candle's row only

        full = EnsembleProvider(members(Fake(0.4)), EnsembleConfig(min_labels=24)).compute(
            s.slice(0, k)
        )
        assert np.array_equal(grown.entry, full.entry)
        for a, b in ((grown.member_p, full.member_p), (grown.weights, full.weights)):
            assert np.allclose(a, b, rtol=0, atol=1e-6, equal_nan=True)
        assert np.allclose(grown.p_up, full.p_up, rtol=0, atol=1e-6, equal_nan=True)
        assert np.array_equal(grown.member_p[:, 0], full.member_p[:, 0], equal_nan=True)

    before = counting.rows
    live.compute(s.slice(1, 1206))  # the history rolled over: features differ, all again
    assert counting.rows - before > 1000


def test_a_set_s_rows_are_those_it_would_give_serving_the_whole_series() -> None:
    # Each set computes only the rows its own rows look back on (the health window, its
    # out-of-sample record): on them it agrees to the bit with the same members serving every
    # row of the series, weights included.
    s = series(2000)
    rows = (300, 900, 1500)
    provider = EnsembleProvider([], EnsembleConfig(min_labels=5), walk_forward=True)
    for k, row in enumerate(rows):
        at_ms = int(s.ts_ms[row])
        members = [
            EnsembleMember(name="a", member=Fake(0.3 + 0.1 * k), trained_until_ms=at_ms - 7200_000),  # type: ignore[arg-type]
            EnsembleMember(name="b", member=Fake(0.8 - 0.1 * k), trained_until_ms=at_ms),  # type: ignore[arg-type]
        ]
        provider.add_set(members, at_ms)
    frame = provider.compute(s)
    for k, (lo, hi) in enumerate(zip(rows, (*rows[1:], len(s)), strict=True)):
        whole = EnsembleProvider(list(provider.sets[k].members), EnsembleConfig(min_labels=5))
        alone = whole.compute(s)
        np.testing.assert_array_equal(frame.p_up[lo:hi], alone.p_up[lo:hi])
        np.testing.assert_array_equal(frame.member_p[lo:hi], alone.member_p[lo:hi])
        np.testing.assert_array_equal(frame.weights[lo:hi], alone.weights[lo:hi])
        assert len(np.unique(alone.weights[lo + 100 : hi, 0])) > 1  # the weights moved
