"""The torch forecasters (N-HiTS, PatchTST): learning, calibration, files, determinism."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import DataError, FeatureMismatch
from core.ml.health import health
from core.ml.members import MEMBERS
from core.ml.members.forecaster import WEIGHTS_FILE, ForecastMember
from tests.unit.ml.forecast_data import COLUMNS, HASH, HORIZON, seasonal
from tests.unit.ml.synthetic import FORECASTERS, tiny_forecaster

KW = {"columns": COLUMNS, "feature_set_hash": HASH}
WINDOW = 32
FEATURES = {"returns_column": "ret_1", "feature_columns": ("vol_ratio",)}
Member = ForecastMember[Any]


@pytest.fixture(params=FORECASTERS)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(name: str, seed: int = 0, **kw: object) -> Member:
    return tiny_forecaster(name, seed, **{**FEATURES, **kw})


def fit(member: Member, seed: int = 0, flip_train: bool = False) -> Member:
    x, y = seasonal(3000, seed=seed)
    xv, yv = seasonal(600, seed=seed + 100)
    member.fit(x, 1 - y if flip_train else y, eval_set=(xv, yv), **KW)
    return member


_CACHE: dict[str, Member] = {}


def trained(name: str) -> Member:
    """Return the member fitted with the default seed (once per test session)."""
    if name not in _CACHE:
        _CACHE[name] = fit(make(name))
    return _CACHE[name]


def test_learns_the_planted_seasonality_out_of_sample(name: str) -> None:
    x, y = seasonal(2000, seed=7)

    p = trained(name).predict_proba(x, **KW)

    assert p.shape == (2000,) and p.dtype == np.float64 and ((p >= 0) & (p <= 1)).all()
    scored = slice(WINDOW - 1, -HORIZON)  # a full window, a known label
    assert ((p[scored] > 0.5) == y[scored]).mean() > 0.62  # chance is 0.5
    assert health(p[scored]).ok


def test_the_forecast_is_a_return_over_the_horizon(name: str) -> None:
    x, _ = seasonal(1000, seed=7)
    ahead = sum(np.roll(x[:, 0], -h) for h in range(1, HORIZON + 1))[WINDOW:-HORIZON]

    forecast = trained(name).forecast(x, **KW)[WINDOW:-HORIZON]

    assert np.corrcoef(forecast, ahead)[0, 1] > 0.25
    assert 0.2 < forecast.std() / ahead.std() < 2  # in log-return units, not normalised


def test_row_t_depends_on_rows_up_to_t_only(name: str) -> None:
    member = trained(name)
    x, _ = seasonal(300, seed=3)
    base = member.predict_proba(x, **KW)
    altered = x.copy()
    altered[200:] = np.random.default_rng(1).normal(size=altered[200:].shape)

    assert np.array_equal(member.predict_proba(altered, **KW)[:200], base[:200])
    assert np.array_equal(member.predict_proba(x[:200], **KW), base[:200])
    assert not np.array_equal(member.predict_proba(altered, **KW)[200:], base[200:])


def test_a_live_decision_predicts_the_newest_row_alone(name: str) -> None:
    member = trained(name)
    x, _ = seasonal(500, seed=6)

    newest = member.predict_newest(x, **KW)

    assert newest == pytest.approx(member.predict_proba(x, **KW)[-1], abs=1e-6)
    assert newest == member.predict_newest(x[-WINDOW:], **KW)  # the window is all it reads


def test_save_and_load_give_identical_predictions(name: str, tmp_path: Path) -> None:
    member = trained(name)
    x, _ = seasonal(500, seed=2)

    written = member.save(tmp_path)
    loaded = MEMBERS[name].load(tmp_path)

    assert sorted(p.name for p in written) == sorted(MEMBERS[name].files)
    assert np.array_equal(member.predict_proba(x, **KW), loaded.predict_proba(x, **KW))
    assert loaded.features == member.features and loaded.params == member.params


def test_weights_are_tensors_only_read_without_pickle(name: str, tmp_path: Path) -> None:
    import torch

    trained(name).save(tmp_path)
    state = torch.load(io.BytesIO((tmp_path / WEIGHTS_FILE).read_bytes()), weights_only=True)

    assert type(state) is dict and all(isinstance(v, torch.Tensor) for v in state.values())


def test_calibration_is_fitted_on_the_eval_set_only(name: str) -> None:
    x, y = seasonal(3000)
    xv, yv = seasonal(600, seed=100)
    plain = trained(name)
    # The training labels are not used: flipping them changes nothing.
    flipped = fit(make(name), flip_train=True)
    # Other validation labels give another calibration of the same forecast.
    relabelled = make(name)
    relabelled.fit(x, y, eval_set=(xv, 1 - yv), **KW)
    assert plain.calibration is not None and relabelled.calibration is not None

    xt, _ = seasonal(400, seed=5)
    assert np.array_equal(plain.predict_proba(xt, **KW), flipped.predict_proba(xt, **KW))
    assert np.array_equal(plain.forecast(xt, **KW), relabelled.forecast(xt, **KW))
    assert plain.calibration.rows == 600 - (WINDOW - 1)  # the eval rows with a full window
    assert plain.calibration.a > 0 > relabelled.calibration.a  # learned from yv, not y
    assert plain.fit_info["calibration"] == plain.calibration.to_json()


def test_fit_without_an_eval_set_is_refused(name: str) -> None:
    x, y = seasonal(500)
    with pytest.raises(DataError, match=r"needs an eval_set.*validation rows only"):
        make(name).fit(x, y, **KW)
    with pytest.raises(DataError, match="at least 20 needed to calibrate"):
        make(name).fit(x, y, eval_set=(x[:40], y[:40]), **KW)
    with pytest.raises(DataError, match="no column ret_1"):
        make(name).fit(
            x, y, columns=("r", "vol_ratio", "noise"), feature_set_hash=HASH, eval_set=(x, y)
        )


def test_another_feature_set_or_columns_are_refused(name: str) -> None:
    x, _ = seasonal(100)
    member = trained(name)

    with pytest.raises(FeatureMismatch, match=rf"{name} refuses.*'fs-other'.*'{HASH}'"):
        member.predict_proba(x, columns=COLUMNS, feature_set_hash="fs-other")
    with pytest.raises(FeatureMismatch, match="missing: noise"):
        member.predict_proba(x[:, :2], columns=COLUMNS[:2], feature_set_hash=HASH)


def test_same_data_and_seed_give_the_same_model(name: str, tmp_path: Path) -> None:
    one, two, other = trained(name), fit(make(name)), fit(make(name, seed=1))
    for folder, member in (("one", one), ("two", two), ("other", other)):
        (tmp_path / folder).mkdir()
        member.save(tmp_path / folder)
    weights = [(tmp_path / f / WEIGHTS_FILE).read_bytes() for f in ("one", "two", "other")]
    x, _ = seasonal(300, seed=3)

    assert weights[0] == weights[1] != weights[2]
    assert np.array_equal(one.predict_proba(x, **KW), two.predict_proba(x, **KW))


def test_a_warm_start_continues_from_the_previous_weights(name: str) -> None:
    previous = trained(name)
    x, y = seasonal(1500, seed=11)
    xv, yv = seasonal(400, seed=12)
    # With a learning rate of 0 the weights cannot move: the forecast is the previous one's.
    frozen = make(name, learning_rate=0.0)
    frozen.fit(x, y, eval_set=(xv, yv), warm_start=previous, **KW)
    resumed = make(name)
    resumed.fit(x, y, eval_set=(xv, yv), warm_start=previous, **KW)

    xt, _ = seasonal(300, seed=13)
    np.testing.assert_allclose(frozen.forecast(xt, **KW), previous.forecast(xt, **KW), rtol=1e-6)
    assert resumed.fit_info["warm_start"] and resumed.fit_info["epochs"] <= 2  # warm_epochs
    assert not np.array_equal(resumed.forecast(xt, **KW), previous.forecast(xt, **KW))
    with pytest.raises(DataError, match="another architecture"):
        make(name, window=24).fit(x, y, eval_set=(xv, yv), warm_start=previous, **KW)
    with pytest.raises(DataError, match="needs a fitted"):
        make(name).fit(x, y, eval_set=(xv, yv), warm_start=make(name), **KW)


def test_a_collapsed_network_is_flagged_by_health(name: str, tmp_path: Path) -> None:
    # The old PatchTST said 0.615 for every candle and nobody noticed.
    import torch

    trained(name).save(tmp_path)
    path = tmp_path / WEIGHTS_FILE
    state = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
    buffer = io.BytesIO()
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, buffer)
    path.write_bytes(buffer.getvalue())
    x, _ = seasonal(500, seed=4)

    verdict = health(MEMBERS[name].load(tmp_path).predict_proba(x, **KW))

    assert not verdict.ok and "near-constant" in verdict.reason


def test_missing_values_are_missing_not_fatal(name: str) -> None:
    x, y = seasonal(1500)
    xv, yv = seasonal(300, seed=100)
    x[:100, 1] = np.nan  # an indicator still warming up
    x[700, 0] = np.nan  # a return that could not be computed: the rows it touches drop out
    member = make(name)

    member.fit(x, y, eval_set=(xv, yv), **KW)

    assert np.isfinite(member.predict_proba(x, **KW)).all()
    assert member.fit_info["train_rows"] < 1500 - (WINDOW - 1) - HORIZON


def test_a_failed_refit_leaves_the_member_as_it_was(name: str) -> None:
    member = trained(name)
    x, y = seasonal(300, seed=8)
    before = member.predict_proba(x, **KW)

    with pytest.raises(DataError, match="calibrate"):
        member.fit(
            x,
            y,
            columns=("ret_1", "vol_ratio", "other"),
            feature_set_hash="fs-new",
            eval_set=(x[:40], y[:40]),
        )

    assert np.array_equal(member.predict_proba(x, **KW), before)
