"""The policy store: the only writer of policy.

A policy is the settings' limits (the base) with the brains' levers applied
(``core.domain.policy.apply_levers``). Every change is a new version, strictly increasing,
persisted (``policy_versions``) before it is published (``PolicyUpdated``) and before anything
reads it; consumers call ``current`` and get an immutable snapshot. Another process on the same
database (``qt mode set``) writes versions too: ``refresh`` adopts a newer one, so the running
process obeys it from its next read (a job refreshes every few seconds).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from core.brains.ceo import MODE_SETTINGS
from core.clock import Clock
from core.domain.decisions import PolicyVersion
from core.domain.events import PolicyUpdated
from core.domain.policy import (
    Policy,
    PolicyLevers,
    apply_levers,
    policy_to_dict,
    stricter_state,
)
from core.errors import InvariantViolation
from core.ports import DecisionRepo
from core.services.bus import EventBus

log = logging.getLogger(__name__)


# The Strategy Brain's fields: written by ``apply_strategy``, kept by every lever change.
STRATEGY_FIELDS = (
    "primary_strategy",
    "fallback_strategy",
    "disabled_strategies",
    "regime_strategies",
    "ensemble_weights",
)


def _strategy_of(policy: Policy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in STRATEGY_FIELDS}


def policy_changes(old: Policy, new: Policy) -> tuple[str, ...]:
    """Return ``field: old -> new`` for each field that differs (the version aside)."""
    a, b = policy_to_dict(old), policy_to_dict(new)
    return tuple(f"{k}: {a[k]} -> {b[k]}" for k in a if k != "version" and a[k] != b[k])


class PolicyStore:
    """Hold the current policy; write each change as a new version (see module docstring)."""

    def __init__(
        self, repo: DecisionRepo, base: Policy, *, bus: EventBus | None, clock: Clock
    ) -> None:
        self._repo = repo
        self._base = dataclasses.replace(base, version=0)
        self._bus = bus
        self._clock = clock
        self._current = self._base
        self._levers = PolicyLevers()
        self._quiet = False  # start(): versions are written, published by announce()
        self._unannounced: list[tuple[Policy, PolicyVersion, str]] = []
        self._unsaved = False  # the policy in force is held in memory only (_hold_if_stricter)

    @property
    def base(self) -> Policy:
        """Return the settings' policy the levers apply to."""
        return self._base

    @property
    def _strategy(self) -> dict[str, Any]:
        """Return the Strategy Brain's fields in force (kept by every lever change)."""
        return _strategy_of(self._current)

    def current(self) -> Policy:
        """Return the policy in force (an immutable snapshot; no I/O)."""
        return self._current

    async def start(self) -> None:
        """Adopt the newest stored version's levers on today's settings (a restart keeps the
        mode); write version 1, or a new version when the settings changed the result. What
        it writes is published by ``announce`` (a process says it started first)."""
        self._quiet = True
        try:
            latest = await self._repo.latest_policy()
            if latest is None:
                await self._write(PolicyLevers(), source="settings", reason="first start")
                return
            self._current = latest.policy
            self._levers = levers_of(latest.policy, self._base)
            await self.apply(
                self._levers,
                source="settings",
                reason="the settings changed since the last version",
                expires_ms=latest.expires_ms,
            )
        finally:
            self._quiet = False

    async def announce(self) -> None:
        """Publish the versions ``start`` wrote."""
        pending, self._unannounced = self._unannounced, []
        for old, version, source in pending:
            await self._publish(old, version, source=source)

    async def refresh(self) -> bool:
        """Adopt a newer version another process wrote; return True when one was adopted."""
        latest = await self._repo.latest_policy()
        if latest is None or latest.version <= self._current.version:
            return False
        old = self._current
        self._levers = levers_of(latest.policy, self._base)
        self._current = self._compose(self._levers, _strategy_of(latest.policy), latest.version)
        log.warning(
            "policy version %d (%s, %s) written by another process: %s",
            latest.version,
            latest.source,
            latest.policy.mode.value,
            latest.reason,
        )
        await self._publish(old, latest, source=f"{latest.source} (another process)")
        return True

    async def apply(
        self,
        levers: PolicyLevers,
        *,
        source: str,
        reason: str,
        expires_ms: int | None = None,
    ) -> Policy | None:
        """Write the base with ``levers`` as a new version unless nothing changes; return it
        (None: unchanged). A lever out of range raises ``ValueError`` and writes nothing."""
        candidate = self._compose(levers, self._strategy, self._current.version)
        if candidate == self._current and not self._unsaved:
            return None
        return await self._write(
            levers, self._strategy, source=source, reason=reason, expires_ms=expires_ms
        )

    async def apply_strategy(
        self, fields: dict[str, Any], *, source: str, reason: str
    ) -> Policy | None:
        """Write the Strategy Brain's ``fields`` (``STRATEGY_FIELDS``) as a new version unless
        nothing changes; return it (None: unchanged). The levers stay as they are."""
        unknown = set(fields) - set(STRATEGY_FIELDS)
        if unknown:
            raise ValueError(f"not Strategy Brain fields: {sorted(unknown)}")
        strategy = {**self._strategy, **fields}
        if self._compose(self._levers, strategy, self._current.version) == self._current:
            return None
        return await self._write(self._levers, strategy, source=source, reason=reason)

    def _compose(self, levers: PolicyLevers, strategy: dict[str, Any], version: int) -> Policy:
        return dataclasses.replace(apply_levers(self._base, levers, version), **strategy)

    async def _write(
        self,
        levers: PolicyLevers,
        strategy: dict[str, Any] | None = None,
        *,
        source: str,
        reason: str,
        expires_ms: int | None = None,
    ) -> Policy:
        strategy = self._strategy if strategy is None else strategy
        for _attempt in range(3):
            try:
                stored = await self._repo.latest_policy()
            except InvariantViolation as e:  # a row this process cannot read (hand-edited?)
                await self._hold_if_stricter(levers, strategy, source=source, error=str(e))
                raise
            number = max(self._current.version, stored.version if stored else 0) + 1
            policy = self._compose(levers, strategy, number)
            version = PolicyVersion(
                policy=policy,
                ts_ms=self._clock.now_ms(),
                source=source,
                reason=reason,
                expires_ms=expires_ms,
            )
            try:
                await self._repo.add_policy(version)
            except InvariantViolation:  # another process took the number: take the next
                continue
            old, self._current = self._current, policy
            self._unsaved = False
            self._levers = levers
            if self._quiet:
                self._unannounced.append((old, version, source))
            else:
                await self._publish(old, version, source=source)
            return policy
        raise InvariantViolation("could not write a policy version: the numbers kept being taken")

    async def _hold_if_stricter(
        self, levers: PolicyLevers, strategy: dict[str, Any], *, source: str, error: str
    ) -> None:
        """The store cannot be read: hold a stricter policy in memory all the same (fail
        closed: an unreadable row must not keep the brains from tightening), never a looser
        one; it is written as a version once the store can be read again."""
        held, policy = self._current, self._compose(levers, strategy, self._current.version)
        stricter = (
            stricter_state(policy.state, held.state) is policy.state
            and policy.size_multiplier <= held.size_multiplier
            and policy.stop_tighten <= held.stop_tighten
            and policy.max_open_positions <= held.max_open_positions
        )
        if not stricter or policy == held:
            return
        log.error("the policy store cannot be read (%s): holding %s in memory", error, levers)
        self._current, self._levers, self._unsaved = policy, levers, True
        reason = f"held in memory, not stored: {error}"
        await self._publish(
            held,
            PolicyVersion(policy=policy, ts_ms=self._clock.now_ms(), source=source, reason=reason),
            source=source,
        )

    async def _publish(self, old: Policy, version: PolicyVersion, *, source: str) -> None:
        if self._bus is None:
            return
        await self._bus.publish(
            PolicyUpdated(
                ts_ms=self._clock.now_ms(),
                version=version.version,
                mode=version.policy.mode.value,
                source=source,
                reason=version.reason,
                changes=policy_changes(old, version.policy),
            )
        )


def levers_of(policy: Policy, base: Policy) -> PolicyLevers:
    """Return the levers a stored policy carries, on ``base``: its mode's extra positions only
    as far as its maximum exceeds the base's (a version written without them, by ``qt mode
    set``, gets none; a settings change keeps the new settings' maximum)."""
    most = MODE_SETTINGS[policy.mode].extra_positions
    extra = max(0, min(most, policy.max_open_positions - base.max_open_positions))
    return dataclasses.replace(policy.levers(), extra_positions=extra)
