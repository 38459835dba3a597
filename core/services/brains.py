"""One brains cycle (the ``risk_assessment`` job): assess the risk, then the CEO decides and
the process acts, in that order, so a crash reaches EMERGENCY within one cycle.

Fail closed: an assessment that raises is logged and the CEO decides without one (at least
PRESERVATION); a CEO that raises leaves the policy at the stricter of PRESERVATION and what it
was. The error is raised again, so the job's run is recorded as failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from core.brains.risk import RiskAssessment
from core.services.ceo_service import CeoService
from core.services.policy_store import PolicyStore
from core.services.risk_service import RiskService
from core.services.strategy_service import StrategyService

log = logging.getLogger(__name__)


class Brains:
    """The Risk Brain's service and the CEO's, run as one cycle."""

    def __init__(
        self, risk: RiskService, ceo: CeoService, store: PolicyStore, strategy: StrategyService
    ) -> None:
        self.risk = risk
        self.ceo = ceo
        self.store = store
        self.strategy = strategy
        self._one_at_a_time = asyncio.Lock()  # the cycle and an adoption are two jobs

    async def adopt(self) -> bool:
        """Adopt a policy version another process wrote (``qt mode set``) and let the CEO
        recombine it with the latest assessment's actions at once: a manual mode never
        loosens what the Risk Brain enforces, not even until the next cycle."""
        async with self._one_at_a_time:
            before = self.store.current().mode
            if not await self.store.refresh():
                return False
            # The mode changes here, not in the other process: announce it, alert, flatten;
            # the latest assessment's exposure cut was made when it was assessed.
            await self.ceo.review(
                self.risk.latest, self.risk.latest_ms, previous=before, act_on_assessment=False
            )
            return True

    async def manual(self, write: Callable[[], Awaitable[object]]) -> None:
        """Run ``write`` (an operator's manual mode stored, or cleared) between two cycles,
        then let the CEO recombine it with the latest assessment's actions at once, as an
        adoption does: a cycle running meanwhile cannot write over it, and the manual mode
        never loosens what the Risk Brain enforces."""
        async with self._one_at_a_time:
            before = self.store.current().mode
            await write()
            await self.ceo.review(
                self.risk.latest, self.risk.latest_ms, previous=before, act_on_assessment=False
            )

    async def cycle(self) -> str:
        """Assess, decide, act; return a one-line summary for the audit trail."""
        async with self._one_at_a_time:
            return await self._cycle()

    async def _cycle(self) -> str:
        assessment: RiskAssessment | None = None
        failure: Exception | None = None
        try:
            assessment = await self.risk.assess()
        except Exception as e:
            log.exception("the risk assessment failed: the CEO decides without it")
            failure = e
        try:
            decision = await self.ceo.review(
                assessment, self.risk.latest_ms if assessment is not None else None
            )
        except Exception as e:
            log.exception("the CEO review failed: holding the more conservative policy")
            await self.ceo.fail_closed(f"{type(e).__name__}: {e}")
            raise
        if failure is not None or assessment is None:  # None only when the assessment failed
            raise failure or RuntimeError("no assessment")
        await self.risk.commit()  # its actions were carried out: its tier is reached
        return f"risk {assessment.level.value} {assessment.score:.0f}, mode {decision.mode.value}"
