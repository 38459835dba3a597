"""The PPO sizing policy: it learns to size up where size pays, its artifact is torch weights
and JSON under a sha256 manifest, reloads to the same choices and refuses any altered byte."""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import ArtifactError, ConfigError, DataError
from core.ml.artifacts import MANIFEST, write_sealed
from core.ml.rl.env import DEFAULT_LEVELS, SizingEnv, SizingEnvConfig, run_episode
from core.ml.rl.policy import (
    SPEC_FILE,
    WEIGHTS_FILE,
    PpoParams,
    SizingPolicy,
    load_policy,
    policy_chooser,
    save_policy,
    train_policy,
)
from tests.unit.ml.rl.synthetic import candidates

# 8192 steps (~8 s on one core): enough for the confidence rule, small enough for a unit test.
BUDGET = PpoParams(
    total_timesteps=8_192, n_steps=512, batch_size=64, n_epochs=5, learning_rate=1e-3, seed=0
)
TRAIN, HELD_OUT = candidates(400, seed=1), candidates(300, seed=2)


@pytest.fixture(scope="module")
def trained() -> SizingPolicy:
    return train_policy(TRAIN, SizingEnvConfig(), BUDGET, eval_candidates=HELD_OUT)


def test_ppo_sizes_up_the_confident_candidates_where_size_pays(trained: SizingPolicy) -> None:
    stats = run_episode(SizingEnv(HELD_OUT), policy_chooser(trained))
    fixed = run_episode(SizingEnv(HELD_OUT), lambda obs: DEFAULT_LEVELS.index(1.0))
    confident = HELD_OUT.features[:, 0] > 0.5

    # Out of sample: well above the base size where it pays, well below where it does not,
    # and a better reward than fixed sizing on the same candidates.
    assert stats.multipliers[confident].mean() >= 1.25
    assert stats.multipliers[~confident].mean() <= 0.75
    assert stats.total_reward > fixed.total_reward + 20.0
    assert trained.metrics["eval_total_reward"] == pytest.approx(stats.total_reward)


def test_training_is_reproducible_with_the_seed() -> None:
    small = replace(BUDGET, total_timesteps=1_024)
    first = train_policy(TRAIN, SizingEnvConfig(), small)
    again = train_policy(TRAIN, SizingEnvConfig(), small)
    ours, theirs = first.net.state_dict(), again.net.state_dict()
    assert list(ours) == list(theirs)
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name
    assert first.metrics == again.metrics


def random_states(policy: SizingPolicy, rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 2.0, (rows, len(policy.observation_names))).astype(np.float32)


def test_a_saved_policy_reloads_to_the_same_choices(trained: SizingPolicy, tmp_path: Path) -> None:
    digest = save_policy(trained, tmp_path / "p1")
    loaded = load_policy(tmp_path / "p1", expected_sha256=digest)
    states = random_states(trained, 100, seed=9)

    assert np.array_equal(loaded.level_indices(states), trained.level_indices(states))
    assert len(set(trained.level_indices(states).tolist())) > 1  # not one constant answer
    assert [loaded.multiplier(s) for s in states] == [trained.multiplier(s) for s in states]
    assert (
        loaded.observation_names
        == trained.observation_names
        == (
            "confidence",
            "noise",
            "drawdown_pct",
            "exposure",
            "recent_win_rate",
            "recent_mean_pct",
            "recent_trades_frac",
            "idle_frac",
        )
    )
    assert (loaded.levels, loaded.params, loaded.metrics) == (
        trained.levels,
        trained.params,
        trained.metrics,
    )


def test_the_artifact_is_weights_and_json_not_a_pickled_model(
    trained: SizingPolicy, tmp_path: Path
) -> None:
    save_policy(trained, tmp_path / "p1")
    spec = json.loads((tmp_path / "p1" / SPEC_FILE).read_text())
    state = torch.load(tmp_path / "p1" / WEIGHTS_FILE, weights_only=True)
    manifest = json.loads((tmp_path / "p1" / MANIFEST).read_text())

    assert sorted(p.name for p in (tmp_path / "p1").iterdir()) == sorted(
        [MANIFEST, SPEC_FILE, WEIGHTS_FILE]
    )
    assert set(manifest["files"]) == {SPEC_FILE, WEIGHTS_FILE}
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert spec["action"] == {"type": "discrete", "levels": list(DEFAULT_LEVELS)}
    assert spec["params"]["seed"] == 0 and spec["params"]["hidden"] == [64, 64]
    assert set(spec["libraries"]) == {"torch", "stable_baselines3", "numpy"}
    assert spec["metrics"]["eval_trades"] == trained.metrics["eval_trades"]


@pytest.mark.parametrize("name", [WEIGHTS_FILE, SPEC_FILE])
def test_a_tampered_file_is_refused(trained: SizingPolicy, tmp_path: Path, name: str) -> None:
    save_policy(trained, tmp_path / "p1")
    path = tmp_path / "p1" / name
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))

    with pytest.raises(ArtifactError, match=f"{name} has sha256"):
        load_policy(tmp_path / "p1")


def test_a_replaced_manifest_is_refused_against_the_recorded_digest(
    trained: SizingPolicy, tmp_path: Path
) -> None:
    digest = save_policy(trained, tmp_path / "p1")
    other = save_policy(replace(trained, metrics={"x": 1.0}), tmp_path / "p2")
    with pytest.raises(ArtifactError, match="registry recorded"):
        load_policy(tmp_path / "p2", expected_sha256=digest)
    assert load_policy(tmp_path / "p2", expected_sha256=other).metrics == {"x": 1.0}


def seal(folder: Path, files: dict[str, bytes]) -> None:
    def write(partial: Path) -> list[Path]:
        for name, raw in files.items():
            (partial / name).write_bytes(raw)
        return [partial / name for name in files]

    write_sealed(folder, write)


class NotATensor:
    """Something a weights-only load must never construct."""


def test_consistently_sealed_but_wrong_files_are_refused(
    trained: SizingPolicy, tmp_path: Path
) -> None:
    save_policy(trained, tmp_path / "good")
    weights = (tmp_path / "good" / WEIGHTS_FILE).read_bytes()
    spec = json.loads((tmp_path / "good" / SPEC_FILE).read_text())
    wider = json.dumps(spec | {"params": spec["params"] | {"hidden": [32, 32]}}).encode()
    pickled = io.BytesIO()
    torch.save({"0.weight": NotATensor()}, pickled)

    seal(tmp_path / "arch", {WEIGHTS_FILE: weights, SPEC_FILE: wider})
    seal(
        tmp_path / "pickle",
        {WEIGHTS_FILE: pickled.getvalue(), SPEC_FILE: json.dumps(spec).encode()},
    )
    seal(
        tmp_path / "kind",
        {WEIGHTS_FILE: weights, SPEC_FILE: json.dumps(spec | {"kind": "x"}).encode()},
    )
    seal(tmp_path / "alone", {SPEC_FILE: json.dumps(spec).encode()})

    with pytest.raises(ArtifactError, match="cannot be read"):
        load_policy(tmp_path / "arch")
    with pytest.raises(ArtifactError, match="cannot be read"):
        load_policy(tmp_path / "pickle")
    with pytest.raises(ArtifactError, match="malformed"):
        load_policy(tmp_path / "kind")
    with pytest.raises(ArtifactError, match="not all sealed"):
        load_policy(tmp_path / "alone")


def test_saving_refuses_non_finite_metrics_and_an_existing_folder(
    trained: SizingPolicy, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError, match="finite"):
        save_policy(replace(trained, metrics={"eval_total_reward": math.nan}), tmp_path / "p")
    save_policy(trained, tmp_path / "p")
    with pytest.raises(ArtifactError, match="exists already"):
        save_policy(trained, tmp_path / "p")


def test_observations_of_another_width_are_refused(trained: SizingPolicy) -> None:
    with pytest.raises(DataError, match="observations must be"):
        trained.level_indices(np.zeros((3, 5)))


@pytest.mark.parametrize(
    "bad",
    [
        {"n_steps": 500, "batch_size": 64},
        {"total_timesteps": 0},
        {"hidden": ()},
        {"hidden": (64, 0)},
    ],
)
def test_bad_ppo_parameters_are_a_config_error(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PpoParams(**bad)  # type: ignore[arg-type]


def test_the_artifact_records_how_old_its_training_trades_are(
    trained: SizingPolicy, tmp_path: Path
) -> None:
    save_policy(trained, tmp_path / "p1")
    assert trained.trained_until_ms == int(TRAIN.close_ms.max())
    assert load_policy(tmp_path / "p1").trained_until_ms == trained.trained_until_ms

    spec = json.loads((tmp_path / "p1" / SPEC_FILE).read_text())
    weights = (tmp_path / "p1" / WEIGHTS_FILE).read_bytes()
    older = {k: v for k, v in spec.items() if k != "trained_until_ms"}
    seal(tmp_path / "older", {WEIGHTS_FILE: weights, SPEC_FILE: json.dumps(older).encode()})
    bad = spec | {"trained_until_ms": "yesterday"}
    seal(tmp_path / "bad", {WEIGHTS_FILE: weights, SPEC_FILE: json.dumps(bad).encode()})

    assert load_policy(tmp_path / "older").trained_until_ms is None  # unknown, not made up
    with pytest.raises(ArtifactError, match="trained_until_ms"):
        load_policy(tmp_path / "bad")
