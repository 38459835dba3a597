"""Artifacts: metadata and sha256 written with every model; loading refuses any altered byte."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from core.errors import ArtifactError
from core.ml.artifacts import (
    MANIFEST,
    METADATA,
    Artifact,
    TrainingInfo,
    load_artifact,
    save_artifact,
    sha256_hex,
)
from core.ml.members import MEMBERS
from core.ml.members.member_file import MEMBER_FILE
from tests.unit.ml.synthetic import COLUMNS, HASH, fitted, planted

INFO = TrainingInfo(
    train_start_ms=1_700_000_000_000,
    train_end_ms=1_710_000_000_000,
    label="direction of the 4-candle forward return",
    metrics={"log_loss": 0.41, "roc_auc": 0.88},
)


@pytest.fixture(params=sorted(MEMBERS))
def saved(request: pytest.FixtureRequest, tmp_path: Path) -> Artifact:
    return save_artifact(fitted(str(request.param)), tmp_path / "v1", INFO)


def model_file(artifact: Artifact) -> Path:
    return artifact.folder / MEMBERS[artifact.metadata.member].model_file


def test_metadata_says_how_the_model_was_made(saved: Artifact) -> None:
    doc = json.loads((saved.folder / METADATA).read_text())
    library = {"xgb": "xgboost", "lgbm": "lightgbm", "nhits": "torch", "patchtst": "torch"}[
        saved.metadata.member
    ]

    assert doc["member"] == saved.metadata.member
    assert doc["feature_set_hash"] == HASH and doc["columns"] == list(COLUMNS)
    assert (doc["train_start_ms"], doc["train_end_ms"]) == (1_700_000_000_000, 1_710_000_000_000)
    assert doc["label"] == INFO.label
    assert doc["metrics"] == {"log_loss": 0.41, "roc_auc": 0.88}
    assert doc["params"] == dict(saved.member.params) and doc["params"]["seed"] == 0
    assert set(doc["libraries"]) == {library, "numpy"}


def test_the_manifest_holds_every_files_sha256_and_its_own_is_the_artifacts(
    saved: Artifact,
) -> None:
    manifest = json.loads((saved.folder / MANIFEST).read_text())["files"]
    names = {p.name for p in saved.folder.iterdir()}

    assert set(manifest) == names - {MANIFEST}
    for name, entry in manifest.items():
        raw = (saved.folder / name).read_bytes()
        assert entry == {"sha256": sha256_hex(raw), "bytes": len(raw)}
    assert saved.sha256 == sha256_hex((saved.folder / MANIFEST).read_bytes())


def test_loading_gives_identical_predictions(saved: Artifact) -> None:
    loaded = load_artifact(saved.folder, MEMBERS, expected_sha256=saved.sha256)
    x, _ = planted(400, seed=5)
    kw = {"columns": COLUMNS, "feature_set_hash": HASH}

    assert loaded.metadata == saved.metadata
    assert np.array_equal(loaded.member.predict_proba(x, **kw), saved.member.predict_proba(x, **kw))


def test_one_flipped_byte_in_the_model_is_refused_naming_the_file(saved: Artifact) -> None:
    path = model_file(saved)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))

    with pytest.raises(ArtifactError, match=rf"{re.escape(str(path))}.*sha256.*tampered"):
        load_artifact(saved.folder, MEMBERS)


def test_a_truncated_model_is_refused_naming_the_file(saved: Artifact) -> None:
    path = model_file(saved)
    path.write_bytes(path.read_bytes()[:-100])

    with pytest.raises(ArtifactError, match=rf"{re.escape(str(path))} has \d+ bytes.*truncated"):
        load_artifact(saved.folder, MEMBERS)


@pytest.mark.parametrize("name", [MEMBER_FILE, METADATA, MANIFEST])
def test_a_missing_file_is_refused_naming_it(saved: Artifact, name: str) -> None:
    (saved.folder / name).unlink()

    with pytest.raises(
        ArtifactError, match=rf"{re.escape(str(saved.folder / name))} cannot be read"
    ):
        load_artifact(saved.folder, MEMBERS)


def test_a_changed_feature_list_is_refused_even_with_a_manifest_to_match(saved: Artifact) -> None:
    # Someone edits member.json and rewrites the manifest: the registry's digest catches it.
    path = saved.folder / MEMBER_FILE
    doc = json.loads(path.read_text())
    doc["columns"][0] = "x9"
    path.write_text(json.dumps(doc))
    manifest_path = saved.folder / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    raw = path.read_bytes()
    manifest["files"][MEMBER_FILE] = {"sha256": sha256_hex(raw), "bytes": len(raw)}
    manifest_path.write_text(json.dumps(manifest))

    with pytest.raises(
        ArtifactError, match=rf"{re.escape(str(manifest_path))} has sha256 .*registry recorded"
    ):
        load_artifact(saved.folder, MEMBERS, expected_sha256=saved.sha256)
    # Without the recorded digest, the metadata still disagrees with the member's file.
    with pytest.raises(ArtifactError, match=r"features disagree with metadata\.json"):
        load_artifact(saved.folder, MEMBERS)


def test_a_manifest_pointing_outside_its_folder_is_refused(saved: Artifact) -> None:
    path = saved.folder / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["files"]["../secrets"] = {"sha256": "0" * 64, "bytes": 1}
    path.write_text(json.dumps(manifest))

    with pytest.raises(
        ArtifactError, match=re.escape("'../secrets', not a file name in its folder")
    ):
        load_artifact(saved.folder, MEMBERS)


def test_a_garbled_manifest_is_refused_naming_it(saved: Artifact) -> None:
    path = saved.folder / MANIFEST
    path.write_bytes(path.read_bytes()[:40])

    with pytest.raises(ArtifactError, match=rf"{re.escape(str(path))} is malformed"):
        load_artifact(saved.folder, MEMBERS)


def test_an_unknown_member_is_refused(saved: Artifact) -> None:
    with pytest.raises(ArtifactError, match=r"names member .* unknown here"):
        load_artifact(saved.folder, {})


def test_an_artifact_is_never_overwritten(saved: Artifact) -> None:
    before = {p.name: p.read_bytes() for p in saved.folder.iterdir()}

    with pytest.raises(ArtifactError, match="exists already"):
        save_artifact(saved.member, saved.folder, INFO)
    assert {p.name: p.read_bytes() for p in saved.folder.iterdir()} == before


def test_a_failed_save_leaves_nothing_behind(tmp_path: Path) -> None:
    member = fitted("xgb")

    def broken(folder: Path) -> list[Path]:
        (folder / "model.json").write_bytes(b"{")
        raise OSError(28, "No space left on device")

    member.save = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="No space"):
        save_artifact(member, tmp_path / "v1", INFO)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_metrics_are_refused_before_writing(tmp_path: Path) -> None:
    bad = TrainingInfo(train_start_ms=0, train_end_ms=1, label="x", metrics={"auc": float("nan")})

    with pytest.raises(ArtifactError, match="metrics must be finite"):
        save_artifact(fitted("lgbm"), tmp_path / "v1", bad)
    assert list(tmp_path.iterdir()) == []


def test_no_pickle_anywhere() -> None:
    # Artifacts use the libraries' own formats; a pickle runs code when it is loaded.
    root = Path(__file__).resolve().parents[3]
    offenders = [
        str(path.relative_to(root))
        for folder in ("core", "bot", "jobs", "storage")
        for path in (root / folder).rglob("*.py")
        if any(
            word in path.read_text(encoding="utf-8")
            for word in ("import pickle", "import joblib", "weights_only=False", "cloudpickle")
        )
    ]
    assert offenders == []
