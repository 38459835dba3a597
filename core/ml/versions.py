"""Save a trained member as a registered version, and load the newest one back, verified.

Artifacts live under ``<data_dir>/models/<member>/<version id>/``; the row in the registry
(``ModelVersionRepo``) records the folder relative to the data dir and the artifact's sha256.
The files are written (and renamed into place) before the row is added, so a failed save
never shows up as a version and never replaces the one serving. File work runs in a thread,
off the event loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from core.domain.model_versions import ModelStatus, ModelVersion
from core.errors import ArtifactError
from core.ml.artifacts import Artifact, TrainingInfo, load_artifact, save_artifact
from core.ml.member import Member
from core.ml.members import MEMBERS
from core.ports import ModelVersionRepo

MODELS_DIR = "models"


@dataclass(frozen=True, slots=True)
class LoadedVersion:
    """A registered version and its verified artifact (with the member ready to predict)."""

    version: ModelVersion
    artifact: Artifact


def version_id(member: str, created_ms: int, sha256: str) -> str:
    """Return a readable, sortable id: member, UTC creation time, start of the digest."""
    stamp = datetime.fromtimestamp(created_ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{member}-{stamp}-{sha256[:8]}"


def artifact_folder(data_dir: Path, member: str, vid: str) -> Path:
    """Return where version ``vid`` of ``member`` keeps its files."""
    return data_dir / MODELS_DIR / member / vid


async def save_version(
    repo: ModelVersionRepo,
    data_dir: Path,
    member: Member,
    info: TrainingInfo,
    *,
    created_ms: int,
    status: ModelStatus = ModelStatus.CANDIDATE,
    symbols: Sequence[str] = (),
) -> ModelVersion:
    """Write ``member``'s artifact under the data dir and record it as a new version of
    ``status``, trained on ``symbols``, with the artifact's hyper-parameters and library
    versions."""
    staging = data_dir / MODELS_DIR / member.name / f".new-{uuid.uuid4().hex[:8]}"
    artifact = await asyncio.to_thread(save_artifact, member, staging, info)
    vid = version_id(member.name, created_ms, artifact.sha256)
    folder = artifact_folder(data_dir, member.name, vid)
    try:
        if folder.exists():
            raise ArtifactError(f"{folder} exists already: the same model saved twice")
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    meta = artifact.metadata
    version = ModelVersion(
        id=vid,
        member=member.name,
        status=status,
        train_start_ms=meta.train_start_ms,
        train_end_ms=meta.train_end_ms,
        feature_set_hash=meta.feature_set_hash,
        metrics=dict(meta.metrics),
        artifact_path=str(PurePosixPath(MODELS_DIR, member.name, vid)),
        artifact_sha256=artifact.sha256,
        created_ms=created_ms,
        symbols=tuple(symbols),
        params=dict(meta.params),
        libraries=dict(meta.libraries),
        promoted_ms=created_ms if status is ModelStatus.CHAMPION else None,
    )
    try:
        await repo.add(version)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no row, no files: nothing half-registered
        raise
    return version


async def load_newest(
    repo: ModelVersionRepo,
    data_dir: Path,
    member: str,
    *,
    status: ModelStatus | None = None,
    members: Mapping[str, type[Member]] = MEMBERS,
) -> LoadedVersion | None:
    """Return the member's newest version (of ``status`` if given) with its artifact
    verified against the recorded sha256, or None when there is none."""
    version = await repo.newest(member, status)
    if version is None:
        return None
    return await asyncio.to_thread(load_version, data_dir, version, members)


def load_version(
    data_dir: Path, version: ModelVersion, members: Mapping[str, type[Member]] = MEMBERS
) -> LoadedVersion:
    """Return ``version`` with its artifact verified against the recorded sha256 (blocking
    file work: call it in a thread from the event loop); ``ArtifactError`` names what is wrong."""
    folder = inside_models(data_dir, version)
    artifact = load_artifact(folder, members, expected_sha256=version.artifact_sha256)
    meta = artifact.metadata
    if (meta.member, meta.feature_set_hash) != (version.member, version.feature_set_hash):
        raise ArtifactError(
            f"{folder} holds {meta.member} on feature set {meta.feature_set_hash!r}, the "
            f"registry says {version.member} on {version.feature_set_hash!r}"
        )
    return LoadedVersion(version, artifact)


def inside_models(data_dir: Path, version: ModelVersion) -> Path:
    """Return the version's artifact folder, refused (``ArtifactError``) outside the models
    folder: a hand-edited row must not point a loader at other files."""
    root = (data_dir / MODELS_DIR).resolve()
    folder = (data_dir / version.artifact_path).resolve()
    if not folder.is_relative_to(root):
        raise ArtifactError(
            f"model version {version.id}: artifact path {version.artifact_path!r} is outside {root}"
        )
    return folder
