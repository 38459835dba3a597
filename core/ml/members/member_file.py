"""``member.json``: what a member needs besides its model to predict safely.

The feature list and hash (for the feature guard), the hyper-parameters and library versions
(to say how it was made) and what fitting found (trees kept). Plain JSON, read strictly: a key
missing or of the wrong type is an ``ArtifactError`` naming the file, never a default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.errors import ArtifactError
from core.ml.member import FeatureSchema

MEMBER_FILE = "member.json"
FORMAT = 1  # bumped when the layout changes; an unknown format is refused


@dataclass(frozen=True, slots=True)
class MemberFile:
    """The parsed content of ``member.json``."""

    member: str
    features: FeatureSchema
    params: dict[str, Any]
    libraries: dict[str, str]
    fit: dict[str, Any]

    def to_bytes(self) -> bytes:
        """Return the file's content (sorted keys: the same member gives the same bytes)."""
        doc = {
            "format": FORMAT,
            "member": self.member,
            "columns": list(self.features.columns),
            "feature_set_hash": self.features.feature_set_hash,
            "params": self.params,
            "libraries": self.libraries,
            "fit": self.fit,
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes, member: str) -> MemberFile:
        """Return the file's content; refuse another member's file or a malformed one."""
        try:
            doc = json.loads(raw)
            fmt, name = doc["format"], doc["member"]
            columns, digest = doc["columns"], doc["feature_set_hash"]
            params, libraries, fit = doc["params"], doc["libraries"], doc["fit"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{MEMBER_FILE} of {member} is malformed: {exc!r}") from exc
        if fmt != FORMAT:
            raise ArtifactError(f"{MEMBER_FILE} has format {fmt!r}, this version reads {FORMAT}")
        if name != member:
            raise ArtifactError(f"{MEMBER_FILE} is of member {name!r}, not {member!r}")
        if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
            raise ArtifactError(f"{MEMBER_FILE} of {member}: columns must be a list of names")
        if not isinstance(digest, str) or not all(
            isinstance(d, dict) for d in (params, libraries, fit)
        ):
            raise ArtifactError(f"{MEMBER_FILE} of {member}: malformed hash or sections")
        return cls(member, FeatureSchema(tuple(columns), digest), params, libraries, fit)
