"""The XGBoost and LightGBM members through the one Member interface (the torch
forecasters have their own tests: test_forecasters.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import DataError, FeatureMismatch, InvariantViolation
from core.ml.members import MEMBERS
from tests.unit.ml.synthetic import COLUMNS, GBDT, HASH, TREES, fitted, planted, small

NAMES = GBDT


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_learns_the_planted_signal_out_of_sample(name: str) -> None:
    member = fitted(name)
    x, y = planted(2000, seed=1)

    p = member.predict_proba(x, columns=COLUMNS, feature_set_hash=HASH)

    assert p.shape == (2000,) and p.dtype == np.float64
    assert ((p >= 0) & (p <= 1)).all()
    assert ((p > 0.5) == y).mean() > 0.75  # chance is 0.5; the noise caps it near 0.85


def test_learns_nothing_from_noise(name: str) -> None:
    member = small(name)
    x, _ = planted(1000)
    member.fit(
        x, np.random.default_rng(7).integers(0, 2, 1000), columns=COLUMNS, feature_set_hash=HASH
    )
    xt, _ = planted(4000, seed=1)
    yt = np.random.default_rng(8).integers(0, 2, 4000)

    accuracy = (
        (member.predict_proba(xt, columns=COLUMNS, feature_set_hash=HASH) > 0.5) == yt
    ).mean()

    assert abs(accuracy - 0.5) < 0.04


def test_save_and_load_give_identical_predictions(name: str, tmp_path: Path) -> None:
    member = fitted(name)
    x, _ = planted(500, seed=2)

    written = member.save(tmp_path)
    loaded = MEMBERS[name].load(tmp_path)

    assert sorted(p.name for p in written) == sorted(MEMBERS[name].files)
    kw = {"columns": COLUMNS, "feature_set_hash": HASH}
    assert np.array_equal(member.predict_proba(x, **kw), loaded.predict_proba(x, **kw))
    assert np.array_equal(member.contributions(x, **kw), loaded.contributions(x, **kw))
    assert loaded.features == member.features
    assert loaded.params == member.params


def test_same_data_and_seed_give_the_same_model(name: str, tmp_path: Path) -> None:
    # On two threads, as in production: the split search must not depend on thread timing.
    one, two, other = fitted(name, threads=2), fitted(name, threads=2), fitted(name, seed=1)
    for folder, member in (("one", one), ("two", two), ("other", other)):
        (tmp_path / folder).mkdir()
        member.save(tmp_path / folder)
    model = MEMBERS[name].model_file

    assert (tmp_path / "one" / model).read_bytes() == (tmp_path / "two" / model).read_bytes()
    # The seed is really used (row and column subsampling), so another seed is another model.
    assert (tmp_path / "one" / model).read_bytes() != (tmp_path / "other" / model).read_bytes()
    x, _ = planted(300, seed=3)
    kw = {"columns": COLUMNS, "feature_set_hash": HASH}
    assert np.array_equal(one.predict_proba(x, **kw), two.predict_proba(x, **kw))


def test_early_stopping_on_the_eval_set_keeps_the_best_trees(name: str, tmp_path: Path) -> None:
    member = small(name)
    x, y = planted(1200)
    member.fit(
        x[:800], y[:800], columns=COLUMNS, feature_set_hash=HASH, eval_set=(x[800:], y[800:])
    )
    info = member.fit_info

    assert info["trees"] == info["best_iteration"] + 1 <= TREES
    assert 0 < info["best_score"] < 0.69  # log-loss below chance's ln 2
    member.save(tmp_path)
    kw = {"columns": COLUMNS, "feature_set_hash": HASH}
    assert np.array_equal(
        member.predict_proba(x, **kw), MEMBERS[name].load(tmp_path).predict_proba(x, **kw)
    )


def test_an_eval_set_of_one_class_still_stops_early(name: str) -> None:
    x, y = planted(1000)
    xv, yv = planted(300, seed=1)
    ones = yv == 1
    member = small(name)

    member.fit(x, y, columns=COLUMNS, feature_set_hash=HASH, eval_set=(xv[ones], yv[ones]))

    assert member.fit_info["best_iteration"] is not None


def test_sample_weights_change_the_model(name: str) -> None:
    x, y = planted(1000)
    plain, weighted = small(name), small(name)
    plain.fit(x, y, columns=COLUMNS, feature_set_hash=HASH)
    weighted.fit(
        x, y, columns=COLUMNS, feature_set_hash=HASH, sample_weight=np.linspace(0.1, 2, 1000)
    )
    kw = {"columns": COLUMNS, "feature_set_hash": HASH}

    assert not np.array_equal(plain.predict_proba(x, **kw), weighted.predict_proba(x, **kw))


def test_contributions_explain_each_prediction(name: str) -> None:
    member = fitted(name)
    x, _ = planted(200, seed=4)
    kw = {"columns": COLUMNS, "feature_set_hash": HASH}

    contrib = member.contributions(x, **kw)
    p = member.predict_proba(x, **kw)

    assert contrib.shape == (200, len(COLUMNS) + 1)
    # A row's contributions (with the bias, last) add up to its log-odds.
    np.testing.assert_allclose(contrib.sum(axis=1), np.log(p / (1 - p)), atol=1e-4)
    strength = np.abs(contrib[:, :-1]).mean(axis=0)
    assert strength.argmax() == 0  # x0, the planted feature, explains most


def test_another_feature_set_hash_is_refused_naming_both(name: str) -> None:
    member = fitted(name)
    x, _ = planted(10)

    with pytest.raises(FeatureMismatch, match=rf"{name} refuses.*'fs-other'.*'{HASH}'"):
        member.predict_proba(x, columns=COLUMNS, feature_set_hash="fs-other")


def test_missing_and_extra_columns_are_refused_naming_them(name: str) -> None:
    member = fitted(name)
    x, _ = planted(10)
    # The old system's LightGBM was handed 5 of its 49 features and nobody noticed.
    given = ("x0", "x1", "x2", "x3", "x4", "rsi_14")

    with pytest.raises(FeatureMismatch, match=r"missing: x5.*extra: rsi_14"):
        member.predict_proba(x, columns=given, feature_set_hash=HASH)
    with pytest.raises(FeatureMismatch, match="5 columns given, 6 expected, missing: x5"):
        member.predict_proba(x[:, :5], columns=COLUMNS[:5], feature_set_hash=HASH)
    with pytest.raises(FeatureMismatch, match="another order"):
        member.predict_proba(x, columns=COLUMNS[::-1], feature_set_hash=HASH)
    with pytest.raises(FeatureMismatch, match="X has 5 columns, 6 expected"):
        member.predict_proba(x[:, :5], columns=COLUMNS, feature_set_hash=HASH)


def test_bad_training_inputs_are_refused(name: str) -> None:
    x, y = planted(100)
    kw = {"columns": COLUMNS, "feature_set_hash": HASH}
    with pytest.raises(DataError, match="0 or 1"):
        small(name).fit(x, y * 2, **kw)
    with pytest.raises(DataError, match="nothing to learn"):
        small(name).fit(x, np.ones(100, dtype=np.int64), **kw)
    with pytest.raises(DataError, match="1-D with 100 labels"):
        small(name).fit(x, y[:50], **kw)
    x_inf = x.copy()
    x_inf[3, 2] = np.inf
    with pytest.raises(DataError, match="infinities in x2"):
        small(name).fit(x_inf, y, **kw)
    with pytest.raises(DataError, match="repeat"):
        small(name).fit(x, y, columns=("x0",) * 6, feature_set_hash=HASH)


def test_missing_values_are_allowed(name: str) -> None:
    x, y = planted(1000)
    x[:50, 1] = np.nan  # an indicator still warming up
    member = small(name)
    member.fit(x, y, columns=COLUMNS, feature_set_hash=HASH)

    assert np.isfinite(member.predict_proba(x, columns=COLUMNS, feature_set_hash=HASH)).all()


def test_predicting_before_fitting_is_a_bug(name: str) -> None:
    x, _ = planted(10)
    with pytest.raises(InvariantViolation, match="before it was fitted"):
        small(name).predict_proba(x, columns=COLUMNS, feature_set_hash=HASH)


def test_the_libraries_are_loaded_with_sleeping_openmp_threads(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spinning threads made a fit 7x slower with the other core busy (bench/gbdt_fit.py).
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    small(name).library_versions()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # an operator's choice wins
    small(name).library_versions()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_importing_the_members_does_not_import_their_libraries() -> None:
    # qt --help and the process start must not pay ~2 s for xgboost (and scikit-learn), nor
    # 2-4 s for torch.
    code = (
        "import sys, bot.cli, core.ml, core.ml.members, core.ml.artifacts, core.ml.versions, "
        "core.ml.health, core.ml.members.nhits, core.ml.members.patchtst; "
        "print(sorted(m for m in ('xgboost', 'lightgbm', 'sklearn', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert out.stdout.strip() == "[]"
