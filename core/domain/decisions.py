"""What the brains decided, as stored: policy versions, risk assessments, brain decisions.

The bodies are JSON text (the brains' frozen outputs through ``core.domain.events.jsonable``):
a record is history to query and show, never read back into a brain.
"""

from __future__ import annotations

import json
import math

from core.domain.events import jsonable
from core.domain.policy import Policy
from core.values import value_class


def record_body(decision: object) -> str:
    """Return a brain's frozen output as the JSON text of its record: Decimals and enums as
    text, NaN and infinities spelled out (a profit factor with no loss is inf), sorted keys."""
    return json.dumps(jsonable(decision, _spelled), sort_keys=True, allow_nan=False)


def _spelled(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "tolist"):  # a numpy scalar or array
        return value.tolist()
    return value


@value_class(frozen=True, slots=True, kw_only=True)
class PolicyVersion:
    """One version of the policy; versions strictly increase. ``source``: who wrote it
    ("settings", "ceo", "manual"); ``expires_ms``: a manual mode's expiry."""

    policy: Policy
    ts_ms: int
    source: str
    reason: str
    expires_ms: int | None = None

    @property
    def version(self) -> int:
        """Return the policy's version number."""
        return self.policy.version


@value_class(frozen=True, slots=True, kw_only=True)
class AssessmentRecord:
    """One stored risk assessment: its score and level, the whole of it as JSON."""

    ts_ms: int
    score: float
    level: str
    body: str


@value_class(frozen=True, slots=True, kw_only=True)
class BrainDecision:
    """One stored decision of a brain ("ceo", "strategy"): a line, and the whole as JSON."""

    ts_ms: int
    brain: str
    summary: str
    body: str
