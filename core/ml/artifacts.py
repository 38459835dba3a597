"""Model artifacts on disk: the member's own files, a metadata JSON and a sha256 manifest.

A folder holds what the member writes (``model.json`` or ``model.txt`` and ``member.json``),
``metadata.json`` (member, feature-set hash and columns, training window, label,
hyper-parameters, library versions, validation metrics) and ``manifest.json``: the sha256 and
size of every other file. The manifest's own sha256 is the artifact's: the registry stores it,
so one recorded digest covers every byte.

Loading reads each file once, checks its size and sha256 against the manifest (and the
manifest against the recorded digest) and only then parses those same bytes: a tampered,
truncated or missing file is refused naming it before any library sees it. Never pickle.

``write_sealed`` and ``read_sealed`` are that manifest alone, for artifacts that are not
ensemble members (the RL sizing policy, ``core.ml.rl.policy``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ArtifactError
from core.ml.member import Member

MANIFEST = "manifest.json"
METADATA = "metadata.json"
FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingInfo:
    """What the trainer knows and the member does not: the window, the label, the scores."""

    train_start_ms: int
    train_end_ms: int  # exclusive: the first candle not trained on
    label: str  # e.g. "triple barrier: TP1 before SL within 24 candles"
    metrics: Mapping[str, float] = field(default_factory=dict)  # validation, out of sample


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtifactMetadata:
    """The content of ``metadata.json``."""

    member: str
    feature_set_hash: str
    columns: tuple[str, ...]
    train_start_ms: int
    train_end_ms: int
    label: str
    params: dict[str, Any]
    libraries: dict[str, str]
    metrics: dict[str, float]

    def to_bytes(self) -> bytes:
        """Return the JSON text (sorted keys, so equal metadata gives equal bytes)."""
        doc = {"format": FORMAT, **{k: getattr(self, k) for k in self.__dataclass_fields__}}
        doc["columns"] = list(self.columns)
        return (json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes, where: Path) -> ArtifactMetadata:
        """Return the metadata in ``raw``; a malformed file is an ArtifactError naming it."""
        try:
            doc = json.loads(raw)
            if doc.pop("format") != FORMAT:
                raise ValueError(f"format is not {FORMAT}")
            doc["columns"] = tuple(doc["columns"])
            return cls(**doc)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"{where} is malformed: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Artifact:
    """A verified (or just written) artifact: its folder, digest, metadata and member."""

    folder: Path
    sha256: str  # of manifest.json
    metadata: ArtifactMetadata
    member: Member


def sha256_hex(raw: bytes) -> str:
    """Return the hex sha256 of ``raw``."""
    return hashlib.sha256(raw).hexdigest()


def save_artifact(member: Member, folder: Path, info: TrainingInfo) -> Artifact:
    """Write a fitted member's artifact into ``folder``, which must not exist yet (complete
    or absent, never half: see ``write_sealed``)."""
    features = member.features
    if features is None:
        raise ArtifactError(f"{member.name} is not fitted; there is nothing to save")
    if folder.exists():
        raise ArtifactError(f"{folder} exists already; an artifact is never overwritten")
    bad = {k: v for k, v in info.metrics.items() if not math.isfinite(v)}
    if bad:
        raise ArtifactError(f"{member.name}: metrics must be finite numbers, were {bad}")
    meta = ArtifactMetadata(
        member=member.name,
        feature_set_hash=features.feature_set_hash,
        columns=features.columns,
        train_start_ms=info.train_start_ms,
        train_end_ms=info.train_end_ms,
        label=info.label,
        params=dict(member.params),
        libraries=member.library_versions(),
        metrics={k: float(v) for k, v in info.metrics.items()},
    )

    def write(partial: Path) -> list[Path]:
        written = member.save(partial)
        (partial / METADATA).write_bytes(meta.to_bytes())
        return [*written, partial / METADATA]

    digest = write_sealed(folder, write)
    return Artifact(folder, digest, meta, member)


def write_sealed(folder: Path, write: Callable[[Path], Sequence[Path]]) -> str:
    """Have ``write`` fill a new folder, add the manifest of what it wrote, move the whole
    into place as ``folder`` (which must not exist yet) and return the manifest's sha256.

    Everything is written into a hidden sibling folder first and renamed into place at the
    end, so ``folder`` is either complete or absent: a failed save never leaves half a model.
    """
    if folder.exists():
        raise ArtifactError(f"{folder} exists already; an artifact is never overwritten")
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        entries = {}
        for path in write(partial):
            raw = path.read_bytes()
            entries[path.name] = {"sha256": sha256_hex(raw), "bytes": len(raw)}
        manifest = json.dumps({"format": FORMAT, "files": entries}, indent=2, sort_keys=True)
        (partial / MANIFEST).write_bytes(manifest.encode() + b"\n")
        for path in partial.iterdir():
            _fsync(path)
        os.replace(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return sha256_hex((folder / MANIFEST).read_bytes())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_artifact(
    folder: Path, members: Mapping[str, type[Member]], *, expected_sha256: str | None = None
) -> Artifact:
    """Return the artifact in ``folder`` once every file checks out.

    ``expected_sha256`` is the digest the registry recorded; without it the manifest is
    trusted as found (it still catches a truncated or altered model file). ``members`` maps a
    member name to its class (``core.ml.members.MEMBERS``).
    """
    digest, files = read_sealed(folder, expected_sha256=expected_sha256)
    if METADATA not in files:
        raise ArtifactError(f"{folder / MANIFEST} does not list {METADATA}")
    meta = ArtifactMetadata.parse(files.pop(METADATA), folder / METADATA)
    cls = members.get(meta.member)
    if cls is None:
        raise ArtifactError(f"{folder / METADATA} names member {meta.member!r}, unknown here")
    member = cls.from_files(files)
    features = member.features
    if features is None or (features.columns, features.feature_set_hash) != (
        meta.columns,
        meta.feature_set_hash,
    ):
        raise ArtifactError(f"{folder}: the member's features disagree with {METADATA}")
    return Artifact(folder, digest, meta, member)


def read_sealed(
    folder: Path, *, expected_sha256: str | None = None
) -> tuple[str, dict[str, bytes]]:
    """Return the manifest's sha256 and the bytes of every file it lists, each checked
    against its size and sha256 (and the manifest against ``expected_sha256`` if given);
    ``ArtifactError`` names the first file that does not check out."""
    raw_manifest = _read(folder / MANIFEST)
    digest = sha256_hex(raw_manifest)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ArtifactError(
            f"{folder / MANIFEST} has sha256 {digest}, the registry recorded "
            f"{expected_sha256}: the artifact was altered or replaced"
        )
    files = {name: _verified(folder, name, entry) for name, entry in _entries(folder, raw_manifest)}
    return digest, files


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"model file {path} cannot be read: {exc.strerror}") from exc


def _entries(folder: Path, raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    where = folder / MANIFEST
    try:
        doc = json.loads(raw)
        if doc["format"] != FORMAT:
            raise ValueError(f"format {doc['format']!r} is not {FORMAT}")
        entries = list(doc["files"].items())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{where} is malformed: {exc}") from exc
    for name, entry in entries:
        # A plain name only: a manifest must not point the loader outside its folder.
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ArtifactError(f"{where} lists {name!r}, not a file name in its folder")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise ArtifactError(f"{where}: the entry of {name} has no sha256")
    return entries


def _verified(folder: Path, name: str, entry: dict[str, Any]) -> bytes:
    path = folder / name
    raw = _read(path)
    if len(raw) != entry.get("bytes"):
        raise ArtifactError(
            f"model file {path} has {len(raw)} bytes, the manifest says {entry.get('bytes')}: "
            "truncated or altered"
        )
    digest = sha256_hex(raw)
    if digest != entry["sha256"]:
        raise ArtifactError(
            f"model file {path} has sha256 {digest}, the manifest says {entry['sha256']}: "
            "tampered or corrupt"
        )
    return raw
