"""The sizing methods the engine can consult per entry: each returns a size multiplier of the
fixed-fractional risk size from what is known at the decision (``SizingState``).

- ``FixedSizing``: 1, today's size (the default, and what every failure falls back to);
- ``VolatilitySizing`` and ``KellySizing``: the simple sizers of
  ``core.brains.sizing_policies``;
- ``PolicySizing``: a loaded RL policy (``core.ml.rl.policy``), fed the observation
  ``core.ml.rl.observation`` builds; it refuses to size while its observation spec is not
  what the engine gives or the newest trade it learned from is older than its maximum age;
- ``RefusedSizing``: a method that could not be set up (an artifact missing or tampered,
  ``load_policy`` refused it), refusing every entry with that reason.

A source says why it cannot size now (``refusal``) or returns a raw multiplier; bounding it
and falling back are the service's (``core.services.sizing_service``), never the source's.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from core.brains.sizing_policies import (
    KellyParams,
    SizerState,
    TradeRecord,
    VolTargetParams,
    fractional_kelly,
    volatility_target,
)
from core.ml.rl.observation import build_observation, spec_mismatch
from core.ml.rl.policy import SizingPolicy
from core.values import value_class

DAY_MS = 86_400_000


class FallbackReason(StrEnum):
    """Why an entry was sized fixed-fractional instead of by the configured method."""

    ERROR = "error"  # the method raised
    NON_FINITE = "non_finite"  # it returned NaN or an infinity
    STALE = "stale"  # the policy's training data is older than the configured age
    SPEC_MISMATCH = "spec_mismatch"  # its observation is not what the engine gives
    ARTIFACT = "artifact"  # the artifact is missing or tampered: load_policy refused it
    OBSERVATION = "observation"  # this entry's state could not be built (a value not finite)
    UNGATED = "ungated"  # the policy was never judged against the simple sizers
    NO_CHAMPION = "no_champion"  # the registry has no RL sizer champion (yet, or rolled back)


@value_class(frozen=True, slots=True, kw_only=True)
class SizingState:
    """An entry as a sizer sees it, all known at its decision."""

    decision_ms: int
    entry: Mapping[str, float]  # core.ml.rl.observation.ENTRY_FEATURES
    account: npt.NDArray[np.float64]  # core.ml.rl.book.PORTFOLIO_FEATURES at the decision
    recent_outcomes: tuple[float, ...]  # unit outcomes of the last closed trades


class SizingSource(Protocol):
    """A sizing method (see module docstring)."""

    @property
    def method(self) -> str:
        """Return the method's name (``fixed``, ``volatility``, ``kelly``, ``rl``)."""
        ...

    def refusal(self, now_ms: int) -> tuple[FallbackReason, str] | None:
        """Return why it cannot size now (None: it can)."""
        ...

    def multiplier(self, state: SizingState) -> float:
        """Return the raw multiplier for ``state`` (may raise; the service falls back)."""
        ...


class FixedSizing:
    """Always 1: the fixed-fractional risk size."""

    method = "fixed"

    def refusal(self, now_ms: int) -> tuple[FallbackReason, str] | None:
        """Return None: fixed sizing always sizes."""
        return None

    def multiplier(self, state: SizingState) -> float:
        """Return 1."""
        return 1.0


@value_class(frozen=True, slots=True)
class VolatilitySizing:
    """Volatility targeting of the entry's forecast daily volatility (percent)."""

    params: VolTargetParams
    method: str = "volatility"

    def refusal(self, now_ms: int) -> tuple[FallbackReason, str] | None:
        """Return None: an unmeasurable volatility gets the floor, not a refusal."""
        return None

    def multiplier(self, state: SizingState) -> float:
        """Return ``target / realised vol`` within the floor and the cap."""
        vol = state.entry["realised_vol_pct"]
        return volatility_target(SizerState(realised_vol=vol), self.params)


@value_class(frozen=True, slots=True)
class KellySizing:
    """Capped fractional Kelly of the recent closed trades' outcomes."""

    params: KellyParams
    method: str = "kelly"

    def refusal(self, now_ms: int) -> tuple[FallbackReason, str] | None:
        """Return None: too short a record sizes ``without_record``."""
        return None

    def multiplier(self, state: SizingState) -> float:
        """Return the fractional Kelly multiplier of the recent record."""
        record = TradeRecord.from_outcomes(state.recent_outcomes)
        return fractional_kelly(
            SizerState(realised_vol=state.entry["realised_vol_pct"], record=record), self.params
        )


class PolicySizing:
    """A loaded RL sizing policy (see module docstring)."""

    method = "rl"

    def __init__(self, policy: SizingPolicy, *, max_age_ms: int) -> None:
        self.policy = policy
        self.max_age_ms = max_age_ms  # 0: any age
        self._mismatch = spec_mismatch(policy.observation_names)

    def refusal(self, now_ms: int) -> tuple[FallbackReason, str] | None:
        """Return a spec mismatch, or staleness: the newest trade it learned from closed more
        than ``max_age_ms`` ago (no such time recorded: stale, it cannot be shown fresh)."""
        if self._mismatch is not None:
            return FallbackReason.SPEC_MISMATCH, self._mismatch
        if self.max_age_ms <= 0:
            return None
        until = self.policy.trained_until_ms
        if until is None:
            return FallbackReason.STALE, "the artifact records no training time"
        age_ms = now_ms - until
        if age_ms > self.max_age_ms:
            return (
                FallbackReason.STALE,
                f"trained on trades up to {age_ms / DAY_MS:.1f} days ago, more than the "
                f"{self.max_age_ms / DAY_MS:g} allowed",
            )
        return None

    def multiplier(self, state: SizingState) -> float:
        """Return the policy's multiplier for the observation of ``state``."""
        obs = build_observation(self.policy.observation_names, state.entry, state.account)
        return float(self.policy.multiplier(obs))


@value_class(frozen=True, slots=True)
class RefusedSizing:
    """A method that could not be set up: it refuses every entry with one reason."""

    method: str
    reason: FallbackReason
    detail: str

    def refusal(self, now_ms: int) -> tuple[FallbackReason, str] | None:
        """Return the reason it was refused."""
        return self.reason, self.detail

    def multiplier(self, state: SizingState) -> float:  # pragma: no cover - never asked
        """Return 1 (never called: ``refusal`` always answers)."""
        return 1.0
