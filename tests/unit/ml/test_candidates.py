"""A candidate fitted beside its champion: both predict the same validation rows, the rows
the champion was trained on are NaN, and a champion that cannot be compared gives None."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles
from core.ml.features import compute_features
from core.ml.members import MEMBERS
from core.ml.training import (
    CandidateFit,
    FitResult,
    TrainConfig,
    TrainingSet,
    fit_candidate,
    fit_member,
    prepare,
)
from tests.unit.ml.synthetic import fitted
from tests.unit.ml.test_training import TINY_TORCH

SMALL = {"n_estimators": 10, "n_jobs": 1}
SYMBOLS = ("BTC/USDT", "ETH/USDT")
CUT = 1100  # the champion was trained on the candles before this one


def candles(symbol: str, n: int = 1200) -> CandleSeries:
    return generate_candles(symbol, "1h", n, seed=2)


@pytest.fixture(scope="module")
def data() -> TrainingSet:
    return prepare([candles(s) for s in SYMBOLS], TrainConfig())


@pytest.fixture(scope="module")
def before() -> TrainingSet:
    return prepare([candles(s, CUT) for s in SYMBOLS], TrainConfig())


@pytest.fixture(scope="module")
def champion(before: TrainingSet) -> FitResult:
    return fit_member("xgb", before, {**SMALL, "seed": 1})


def rebuilt_p(files: dict[str, bytes], data: TrainingSet) -> np.ndarray:
    member = MEMBERS["xgb"].from_files(files)
    return member.predict_proba(data.x_valid, columns=data.columns, feature_set_hash=data.set_hash)


def test_candidate_and_champion_predict_the_same_rows_the_champion_s_seen_ones_nan(
    data: TrainingSet, before: TrainingSet, champion: FitResult
) -> None:
    cand = fit_candidate("xgb", data, SMALL, None, champion.files, before.end_ms)

    rows = len(data.y_valid)
    assert len(cand.symbol) == len(cand.ts_ms) == len(cand.y) == len(cand.p) == rows
    assert cand.champion_p is not None and len(cand.champion_p) == rows
    assert np.array_equal(cand.y, data.y_valid) and np.array_equal(cand.symbol, data.valid_symbol)
    assert (cand.ts_ms >= data.valid_start_ms).all() and (cand.ts_ms < data.end_ms).all()
    seen = cand.ts_ms < before.end_ms
    assert seen.any() and not seen.all()  # the champion's window reaches into the holdout
    assert np.array_equal(np.isnan(cand.champion_p), seen)
    # the champion's own predictions of x_valid, row for row; the candidate's likewise
    assert np.allclose(cand.champion_p[~seen], rebuilt_p(champion.files, data)[~seen], atol=1e-9)
    assert np.allclose(cand.p, rebuilt_p(cand.fit.files, data), atol=1e-9)
    assert cand.fit.metrics == fit_member("xgb", data, SMALL).metrics  # fit_member's one path
    assert (
        cand.note == f"{int(seen.sum())} of {rows} rows are in the champion's training window: NaN"
    )


def test_a_champion_trained_past_every_row_is_all_nan_and_one_before_them_none_nan(
    data: TrainingSet, champion: FitResult
) -> None:
    late = fit_candidate("xgb", data, SMALL, None, champion.files, data.end_ms)
    early = fit_candidate("xgb", data, SMALL, None, champion.files, data.valid_start_ms)

    assert late.champion_p is not None and np.isnan(late.champion_p).all()
    assert "every validation row" in late.note
    assert early.champion_p is not None and np.isfinite(early.champion_p).all()
    assert early.note == ""


def test_without_a_champion_there_is_nothing_to_compare(data: TrainingSet) -> None:
    cand = fit_candidate("xgb", data, SMALL, None, None, None)

    assert cand.champion_p is None and cand.note == "no champion given"
    assert len(cand.p) == len(data.y_valid)


def test_a_champion_of_another_feature_set_is_not_compared(
    data: TrainingSet, tmp_path: Path
) -> None:
    other = fitted("xgb")  # six planted columns of a test feature set
    files = {path.name: path.read_bytes() for path in other.save(tmp_path)}

    cand = fit_candidate("xgb", data, SMALL, None, files, data.valid_start_ms)

    assert cand.champion_p is None
    assert "the champion was trained on feature set fs-test-0001 (6 columns)" in cand.note
    assert f"the candidate on {data.set_hash[:12]} ({len(data.columns)} columns)" in cand.note


@pytest.mark.parametrize(
    ("files", "until", "note"),
    [
        ({"model.json": b"{not json"}, 0, "the champion's files are unreadable"),
        ({}, 0, "the champion's files are unreadable"),
        (None, 0, "no champion given"),
    ],
)
def test_an_unreadable_champion_is_not_compared_and_the_candidate_is_kept(
    data: TrainingSet, files: dict[str, bytes] | None, until: int, note: str
) -> None:
    cand = fit_candidate("xgb", data, SMALL, None, files, until)

    assert cand.champion_p is None and cand.note.startswith(note)
    assert cand.fit.files and len(cand.p) == len(data.y_valid)


def test_a_champion_without_its_training_end_is_not_compared(
    data: TrainingSet, champion: FitResult
) -> None:
    cand = fit_candidate("xgb", data, SMALL, None, champion.files, None)

    assert cand.champion_p is None and "training end was not given" in cand.note


def test_rows_of_different_lengths_are_refused(data: TrainingSet, champion: FitResult) -> None:
    cand = fit_candidate("xgb", data, SMALL, None, None, None)
    with pytest.raises(ValueError, match="xgb: the rows' arrays differ in length"):
        CandidateFit(
            fit=cand.fit,
            symbol=cand.symbol,
            ts_ms=cand.ts_ms,
            y=cand.y,
            p=cand.p,
            champion_p=cand.p[:-1],
        )


def test_a_forecaster_and_its_champion_score_the_same_segment_rows() -> None:
    series = candles("BTC/USDT")
    data = prepare([series], TrainConfig())
    before = prepare([candles("BTC/USDT", CUT)], TrainConfig())
    champion = fit_member("nhits", before, TINY_TORCH)

    cand = fit_candidate("nhits", data, TINY_TORCH, champion.files, champion.files, before.end_ms)

    rows = len(data.y_valid)
    assert len(cand.ts_ms) == len(cand.p) == len(cand.y) == rows
    assert cand.champion_p is not None and len(cand.champion_p) == rows
    # the same rows as the pooled members', here in the segments' order (one symbol: in time)
    assert np.array_equal(cand.ts_ms, data.valid_ts_ms) and set(cand.symbol) == {"BTC/USDT"}
    seen = cand.ts_ms < before.end_ms
    assert seen.any() and not seen.all()
    assert np.array_equal(np.isnan(cand.champion_p), seen)
    # the champion asked about the whole series, each row from its full window: the same P(up)
    fm = compute_features(series)
    member = MEMBERS["nhits"].from_files(champion.files)
    p_all = member.predict_proba(fm.values, columns=fm.columns, feature_set_hash=fm.set_hash)
    at = np.searchsorted(series.ts_ms, cand.ts_ms[~seen])
    assert np.allclose(cand.champion_p[~seen], p_all[at], atol=1e-6)
    assert np.array_equal(cand.y, data.y_valid)
