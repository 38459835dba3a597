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

from core.brains.ceo import MODE_SETTINGS
from core.clock import Clock
from core.domain.decisions import PolicyVersion
from core.domain.events import PolicyUpdated
from core.domain.policy import Policy, PolicyLevers, apply_levers, policy_to_dict
from core.errors import InvariantViolation
from core.ports import DecisionRepo
from core.services.bus import EventBus

log = logging.getLogger(__name__)


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
        self.latest: PolicyVersion | None = None
        self._quiet = False  # start(): versions are written, published by announce()
        self._unannounced: list[tuple[Policy, PolicyVersion, str]] = []

    @property
    def base(self) -> Policy:
        """Return the settings' policy the levers apply to."""
        return self._base

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
            self.latest = latest
            self._current = latest.policy
            await self.apply(
                _levers_of(latest.policy),
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
        self.latest = latest
        self._current = apply_levers(self._base, _levers_of(latest.policy), latest.version)
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
        candidate = apply_levers(self._base, levers, self._current.version)
        if candidate == self._current:
            return None
        return await self._write(levers, source=source, reason=reason, expires_ms=expires_ms)

    async def _write(
        self, levers: PolicyLevers, *, source: str, reason: str, expires_ms: int | None = None
    ) -> Policy:
        for _attempt in range(3):
            stored = await self._repo.latest_policy()
            number = max(self._current.version, stored.version if stored else 0) + 1
            policy = apply_levers(self._base, levers, number)
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
            old, self._current, self.latest = self._current, policy, version
            if self._quiet:
                self._unannounced.append((old, version, source))
            else:
                await self._publish(old, version, source=source)
            return policy
        raise InvariantViolation("could not write a policy version: the numbers kept being taken")

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


def _levers_of(policy: Policy) -> PolicyLevers:
    """Return the levers a stored policy carries (its max positions relative to the base are
    not known: the mode's own extra positions come back with the mode's levers)."""
    return dataclasses.replace(
        policy.levers(), extra_positions=MODE_SETTINGS[policy.mode].extra_positions
    )
