"""The RL sizing policy as a version in the model registry, like the ensemble's members.

Its artifact is the policy's sealed folder (``core.ml.rl.policy``: weights as a plain
``state_dict``, the JSON spec with the gate's verdict, the manifest), moved under
``<data_dir>/models/rl_sizer/<id>/``; the row records the manifest's sha256, the observation
names' digest as its feature set, the comparison's figures as its metrics, and the gate's
reason. Loading checks the folder against the recorded sha256 and the observation digest:
a tampered, replaced or hand-moved artifact is refused (``ArtifactError``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from core.domain.model_versions import ModelStatus, ModelVersion
from core.errors import ArtifactError
from core.ml.artifacts import MANIFEST, sha256_hex
from core.ml.rl.policy import SizingPolicy, load_policy
from core.ml.versions import MODELS_DIR, artifact_folder, inside_models, version_id
from core.ports import ModelVersionRepo

SIZER = "rl_sizer"  # the registry's member name of the sizing policy


def observation_digest(names: Sequence[str]) -> str:
    """Return the feature-set digest of a policy's observation (its names, in order)."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def sizer_metrics(policy: SizingPolicy) -> dict[str, float]:
    """Return the figures a version records: the policy's own and its gate's."""
    out = dict(policy.metrics)
    gate = policy.gate
    if gate is not None:
        out["gate_passed"] = 1.0 if gate.passed else 0.0
        out["gate_margin"] = gate.margin
        if gate.psr is not None:
            out["gate_psr"] = gate.psr
        if gate.sharpe_gain is not None:
            out["gate_sharpe_gain"] = gate.sharpe_gain
    return out


def register_sizer_files(
    data_dir: Path,
    trained: Path,
    *,
    created_ms: int,
    train_start_ms: int,
    status: ModelStatus,
    reason: str,
    symbols: Sequence[str] = (),
) -> tuple[ModelVersion, SizingPolicy]:
    """Move the sealed policy folder ``trained`` into the models folder as a new version of
    ``status`` and return its row (not added yet: ``register_sizer`` adds it) and the policy
    (blocking file work: call it in a thread)."""
    policy = load_policy(trained)  # every file checked against its manifest
    sha = sha256_hex((trained / MANIFEST).read_bytes())  # the manifest load_policy checked
    if policy.trained_until_ms is None:
        raise ArtifactError(f"{trained}: the policy records no training time")
    vid = version_id(SIZER, created_ms, sha)
    folder = artifact_folder(data_dir, SIZER, vid)
    if folder.exists():
        raise ArtifactError(f"{folder} exists already: the same policy registered twice")
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(trained, folder)
    version = ModelVersion(
        id=vid,
        member=SIZER,
        status=status,
        train_start_ms=train_start_ms,
        train_end_ms=policy.trained_until_ms,
        feature_set_hash=observation_digest(policy.observation_names),
        metrics=sizer_metrics(policy),
        artifact_path=str(PurePosixPath(MODELS_DIR, SIZER, vid)),
        artifact_sha256=sha,
        created_ms=created_ms,
        symbols=tuple(symbols),
        params=policy.params.to_json(),
        libraries=dict(policy.libraries),
        reason=reason,
        status_ms=created_ms,
    )
    return version, policy


async def register_sizer(
    repo: ModelVersionRepo,
    data_dir: Path,
    trained: Path,
    *,
    created_ms: int,
    train_start_ms: int,
    status: ModelStatus,
    reason: str,
    symbols: Sequence[str] = (),
) -> tuple[ModelVersion, SizingPolicy]:
    """Register the sealed policy folder ``trained`` (see ``register_sizer_files``); files
    first, then the row, so a failed save never shows up as a version."""
    version, policy = await asyncio.to_thread(
        register_sizer_files,
        data_dir,
        trained,
        created_ms=created_ms,
        train_start_ms=train_start_ms,
        status=status,
        reason=reason,
        symbols=symbols,
    )
    try:
        await repo.add(version)
    except BaseException:
        shutil.rmtree(data_dir / version.artifact_path, ignore_errors=True)
        raise
    return version, policy


def load_sizer(data_dir: Path, version: ModelVersion) -> SizingPolicy:
    """Return the version's policy once its folder checks out against the registry's sha256
    and observation digest (blocking: call it in a thread); ``ArtifactError`` otherwise."""
    if version.member != SIZER:
        raise ArtifactError(f"model version {version.id} is a {version.member}, not a {SIZER}")
    folder = inside_models(data_dir, version)
    policy = load_policy(folder, expected_sha256=version.artifact_sha256)
    digest = observation_digest(policy.observation_names)
    if digest != version.feature_set_hash:
        raise ArtifactError(
            f"{folder} observes {digest}, the registry says {version.feature_set_hash!r}"
        )
    return policy
