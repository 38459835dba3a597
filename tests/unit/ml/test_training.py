"""Training rows (purged holdout) and one member's fit, scored out of sample."""

from __future__ import annotations

import io

import numpy as np
import pytest

from core.domain.market import timeframe_to_ms
from core.errors import DataError
from core.market.synthetic import generate_candles
from core.ml.members import MEMBERS
from core.ml.metrics import roc_auc
from core.ml.training import TrainConfig, fit_member, make_member, prepare

H = timeframe_to_ms("1h")
SMALL = {"n_estimators": 10, "n_jobs": 1}


def candles(symbol: str = "BTC/USDT", n: int = 1200):
    return generate_candles(symbol, "1h", n, seed=2)


def test_the_holdout_is_the_most_recent_part_and_no_training_label_reaches_it() -> None:
    config = TrainConfig(embargo=24, validation_fraction=0.25)

    data = prepare([candles(), candles("ETH/USDT")], config)

    assert len(data.y_valid) > 0 and len(data.y_train) > 0
    assert data.symbols == ("BTC/USDT", "ETH/USDT")
    # rebuild the spans to check the purge: the trainer keeps only labels that ended an
    # embargo before the holdout's first decision candle
    from core.ml.dataset import build_dataset, pool
    from core.ml.features import compute_features
    from core.ml.labels import triple_barrier_labels

    ds = pool(
        [
            build_dataset(compute_features(s), triple_barrier_labels(s), s.symbol)
            for s in (candles(), candles("ETH/USDT"))
        ]
    )
    trained = ds.end_ms + 24 * H < data.valid_start_ms
    assert trained.sum() == len(data.y_train)
    assert (ds.start_ms >= data.valid_start_ms).sum() == len(data.y_valid)
    assert data.end_ms == int(ds.end_ms.max()) + H


def test_too_few_candles_is_one_clear_error() -> None:
    with pytest.raises(DataError, match=r"BTC/USDT: \d+ usable rows .* at least 200"):
        prepare([candles(n=400)], TrainConfig())


@pytest.mark.parametrize("name", ["lgbm", "xgb"])  # the trees `qt models train` fits (SMALL)
def test_a_fitted_member_comes_back_as_files_that_predict_the_same(name: str) -> None:
    data = prepare([candles()], TrainConfig())

    result = fit_member(name, data, SMALL)

    rebuilt = MEMBERS[name].from_files(result.files)
    p = rebuilt.predict_proba(data.x_valid, columns=data.columns, feature_set_hash=data.set_hash)
    assert result.metrics["rows_valid"] == len(data.y_valid)
    assert result.metrics["auc"] == pytest.approx(roc_auc(p, data.y_valid))
    assert rebuilt.params["n_estimators"] == 10 and rebuilt.params["n_jobs"] == 1
    assert {"log_loss", "log_loss_base", "accuracy", "base_rate", "healthy"} <= set(result.metrics)


def test_parameters_a_member_does_not_have_are_not_passed_to_it() -> None:
    member = make_member("xgb", {"n_estimators": 7, "max_steps": 3})
    assert member.params["n_estimators"] == 7
    with pytest.raises(DataError, match="unknown member 'nope'"):
        make_member("nope")


def test_roc_auc_counts_ties_half_and_needs_both_classes() -> None:
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert roc_auc(np.array([0.2, 0.3]), np.array([1, 1])) is None


# A tiny network, a few epochs: each torch fit below takes a fraction of a second.
TINY_TORCH = {
    "window": 32,
    "epochs": 2,
    "warm_epochs": 1,
    "batch_size": 128,
    "n_threads": 1,
    "pools": (4, 2, 1),
    "downsample": (2, 1, 1),
    "hidden": 16,
    "patch": 8,
    "stride": 8,
    "d_model": 8,
    "heads": 2,
    "layers": 1,
    "ff": 16,
}


def test_each_symbol_is_cut_into_consecutive_runs_at_the_same_holdout_and_purge() -> None:
    data = prepare([candles(), candles("ETH/USDT")], TrainConfig(embargo=24))

    assert [s.symbol for s in data.segments] == ["BTC/USDT", "ETH/USDT"]  # one run each
    from core.ml.features import compute_features

    for seg in data.segments:
        assert seg.valid_rows and seg.train_stop
        # the last training row, where the last forecast target ends: an embargo before the
        # holdout; the validation part starts at it
        fm = compute_features(candles(seg.symbol))
        rows = np.flatnonzero(fm.valid_rows())  # after the warm-up: every candle
        assert np.array_equal(seg.x, fm.values[rows])
        opens = fm.ts_ms[rows]
        assert opens[seg.train_stop - 1] + 24 * H < data.valid_start_ms
        assert opens[seg.train_stop] + 24 * H >= data.valid_start_ms
        assert opens[seg.valid_start] >= data.valid_start_ms > opens[seg.valid_start - 1]
        assert np.all(np.diff(opens) == H)  # consecutive candles
    assert sum(s.valid_rows for s in data.segments) == len(data.y_valid)


@pytest.mark.parametrize("name", ["nhits", "patchtst"])
def test_a_torch_member_fits_on_the_segments_and_warm_starts_from_its_files(name: str) -> None:
    data = prepare([candles(), candles("ETH/USDT")], TrainConfig())

    cold = fit_member(name, data, TINY_TORCH)
    warm = fit_member(name, data, TINY_TORCH, warm_files=cold.files)

    rebuilt = MEMBERS[name].from_files(cold.files)
    assert cold.metrics["rows_valid"] == len(data.y_valid)  # every symbol's holdout scored
    assert {"log_loss", "log_loss_base", "accuracy", "healthy"} <= set(cold.metrics)
    assert rebuilt.params["window"] == 32 and rebuilt.params["n_threads"] == 1
    cold_info = MEMBERS[name].from_files(cold.files).fit_info  # type: ignore[attr-defined]
    warm_info = MEMBERS[name].from_files(warm.files).fit_info  # type: ignore[attr-defined]
    assert (cold_info["warm_start"], cold_info["epochs"]) == (False, 2)
    assert (warm_info["warm_start"], warm_info["epochs"]) == (True, 1)  # fewer epochs


def test_a_warm_start_begins_from_the_previous_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from core.ml.members import torch_train

    data = prepare([candles()], TrainConfig())
    cold = fit_member("nhits", data, TINY_TORCH)
    previous = torch.load(io.BytesIO(cold.files["weights.pt"]), weights_only=True)
    seen: list[dict[str, torch.Tensor]] = []
    real = torch_train.fit_net

    def spy(net: torch.nn.Module, *args: object, **kw: object) -> object:
        seen.append({k: v.clone() for k, v in net.state_dict().items()})
        return real(net, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(torch_train, "fit_net", spy)
    fit_member("nhits", data, TINY_TORCH, warm_files=cold.files)
    fit_member("nhits", data, TINY_TORCH)

    warm_start, cold_start = seen
    assert all(torch.equal(warm_start[k], previous[k]) for k in previous)
    assert not all(torch.equal(cold_start[k], previous[k]) for k in previous)


def test_a_shuffle_seed_permutes_the_window_s_labels_and_nothing_else() -> None:
    series = [candles(), candles("ETH/USDT")]
    true = prepare(series, TrainConfig())
    shuffled = prepare(series, TrainConfig(shuffle_seed=3))
    again = prepare(series, TrainConfig(shuffle_seed=3))
    other = prepare(series, TrainConfig(shuffle_seed=4))

    assert np.array_equal(shuffled.x_train, true.x_train, equal_nan=True)
    assert np.array_equal(shuffled.x_valid, true.x_valid, equal_nan=True)
    assert not np.array_equal(shuffled.y_train, true.y_train)
    assert np.array_equal(shuffled.y_train, again.y_train)  # seeded
    assert np.array_equal(shuffled.y_valid, again.y_valid)
    assert not np.array_equal(shuffled.y_train, other.y_train)
    # A permutation of the rows' labels: about the same share of 1s, and no longer the truth
    # (agreement with the true labels as by chance: p^2 + (1 - p)^2).
    rate = true.y_train.mean()
    assert abs(shuffled.y_train.mean() - rate) < 0.05
    agree = (shuffled.y_train == true.y_train).mean()
    assert abs(agree - (rate**2 + (1 - rate) ** 2)) < 0.05
    with pytest.raises(ValueError, match="shuffle_seed must be >= 0"):
        TrainConfig(shuffle_seed=-1)


def test_the_leak_guard_refuses_a_future_column_naming_the_symbol() -> None:
    from core.ml.feature_set import FeatureMatrix
    from core.ml.features import compute_features
    from core.ml.labels import triple_barrier_labels
    from core.ml.training import guard_features

    s = candles()
    fm, labels = compute_features(s), triple_barrier_labels(s)
    guard_features(s, fm, labels)  # the feature set as it is passes
    ahead = np.full(len(s), np.nan)
    ahead[:-4] = np.log(s.close[4:] / s.close[:-4])  # the next 4 candles' return
    leaky = FeatureMatrix(
        ts_ms=fm.ts_ms,
        values=np.column_stack([fm.values, ahead]),
        columns=(*fm.columns, "peek"),
        set_hash=fm.set_hash,
        first_valid=fm.first_valid,
    )
    with pytest.raises(DataError, match=r"BTC/USDT: the leak guard refused .*'peek' leaks"):
        guard_features(s, leaky, labels)


def test_each_validation_row_is_named_by_its_symbol_and_decision_candle() -> None:
    from core.ml.features import compute_features

    series = {s: candles(s) for s in ("BTC/USDT", "ETH/USDT")}
    data = prepare(list(series.values()), TrainConfig())

    assert len(data.valid_ts_ms) == len(data.valid_symbol) == len(data.y_valid)
    assert data.valid_ts_ms.dtype == np.int64 and set(data.valid_symbol) == set(series)
    assert (np.diff(data.valid_ts_ms) >= 0).all()  # pooled in time order
    assert data.valid_ts_ms[0] == data.valid_start_ms
    for symbol, s in series.items():  # each row is that candle's features
        fm = compute_features(s)
        mine = data.valid_symbol == symbol
        at = np.searchsorted(fm.ts_ms, data.valid_ts_ms[mine])
        assert np.array_equal(fm.ts_ms[at], data.valid_ts_ms[mine])
        assert np.array_equal(data.x_valid[mine], fm.values[at])


def test_the_segments_name_the_same_validation_rows_as_the_pooled_ones() -> None:
    from core.ml.segments import validation_index, validation_labels

    data = prepare([candles(), candles("ETH/USDT")], TrainConfig())

    symbols, ts_ms = validation_index(data.segments)
    named = list(zip(symbols.tolist(), ts_ms.tolist(), strict=True))
    pooled = list(zip(data.valid_symbol.tolist(), data.valid_ts_ms.tolist(), strict=True))
    assert sorted(named) == sorted(pooled) and len(set(named)) == len(named)
    label_of = dict(zip(named, validation_labels(data.segments).tolist(), strict=True))
    assert [label_of[row] for row in pooled] == data.y_valid.tolist()  # the same labels
