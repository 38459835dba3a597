"""Why an entry was made: what the ensemble saw at the candle it entered on, and how it was
sized.

The explanation is recorded with the trade when it is entered (``OpenTrade``, stored across
restarts), carried to the ``ClosedTrade`` and its ``TradeClosed`` event, and shown by the
backtest's trades CSV. The sizing note (every entry's, whatever its provider) is recorded with
the ``OpenTrade`` and its ``EntryExplained`` event, and shown by ``/why``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.values import value_class


@value_class(frozen=True, slots=True, kw_only=True)
class MemberVote:
    """One member's P(up) at the candle and its weight in the ensemble (0: left out)."""

    member: str
    p_up: float | None  # None: no prediction at that candle (left out); JSON has no NaN
    weight: float


@value_class(frozen=True, slots=True, kw_only=True)
class FeaturePush:
    """How much one feature pushed a member's prediction, in log-odds (its native
    per-row contribution: XGBoost ``pred_contribs``, LightGBM ``pred_contrib``)."""

    member: str
    feature: str
    value: float


@value_class(frozen=True, slots=True, kw_only=True)
class EntryExplanation:
    """The decision behind an entry (see module docstring)."""

    provider: str
    p_up: float
    members: tuple[MemberVote, ...]
    regime: str  # core.brains.regime label at the candle ("unknown" during its warm-up)
    top_features: tuple[FeaturePush, ...]  # per member, largest |value| first

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EntryExplanation:
        """Return the explanation ``jsonable`` made of one."""
        return cls(
            provider=str(data["provider"]),
            p_up=float(data["p_up"]),
            members=tuple(_vote(m) for m in data["members"]),
            regime=str(data["regime"]),
            top_features=tuple(_push(f) for f in data["top_features"]),
        )

    def members_text(self) -> str:
        """Return ``xgb=0.63@0.55;lgbm=0.58@0.45`` (P(up)@weight)."""
        return ";".join(
            f"{m.member}={'-' if m.p_up is None else f'{m.p_up:.2f}'}@{m.weight:.2f}"
            for m in self.members
        )

    def features_text(self) -> str:
        """Return ``xgb:ret_1=+0.12,rsi_14=-0.05;lgbm:...`` (log-odds pushes)."""
        by_member: dict[str, list[str]] = {}
        for f in self.top_features:
            by_member.setdefault(f.member, []).append(f"{f.feature}={f.value:+.3f}")
        return ";".join(f"{m}:{','.join(parts)}" for m, parts in by_member.items())


def _vote(d: Mapping[str, Any]) -> MemberVote:
    p_up = None if d["p_up"] is None else float(d["p_up"])
    return MemberVote(member=str(d["member"]), p_up=p_up, weight=float(d["weight"]))


def _push(d: Mapping[str, Any]) -> FeaturePush:
    return FeaturePush(member=str(d["member"]), feature=str(d["feature"]), value=float(d["value"]))


@value_class(frozen=True, slots=True, kw_only=True)
class SizingNote:
    """How an entry was sized: the method that chose its size multiplier (of the
    fixed-fractional risk size, before the caps and the risk gate), the multiplier applied,
    and why the configured method was not used (``fallback``: "" when it was)."""

    method: str  # "fixed", "volatility", "kelly", "rl"
    multiplier: float
    fallback: str = ""  # a SizingFallback reason code; the method is then "fixed"
    # what the shadow RL sizer (a registry version not trading yet) would have applied,
    # bounded the same way; None: no shadow
    shadow: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SizingNote:
        """Return the note ``jsonable`` made of one."""
        shadow = data.get("shadow")
        return cls(
            method=str(data["method"]),
            multiplier=float(data["multiplier"]),
            fallback=str(data.get("fallback", "")),
            shadow=None if shadow is None else float(shadow),
        )

    def text(self) -> str:
        """Return ``rl x1.25``, ``fixed x1.00 (fell back: stale)``, with the shadow's
        multiplier when one sizes beside it (``fixed x1.00, shadow x0.50``)."""
        said = f"{self.method} x{self.multiplier:.2f}"
        said = f"{said} (fell back: {self.fallback})" if self.fallback else said
        return said if self.shadow is None else f"{said}, shadow x{self.shadow:.2f}"
