"""One brains cycle (the ``risk_assessment`` job): assess the risk, then the CEO decides and
the process acts, in that order, so a crash reaches EMERGENCY within one cycle.

Fail closed: an assessment that raises is logged and the CEO decides without one (at least
PRESERVATION); a CEO that raises leaves the policy at the stricter of PRESERVATION and what it
was. The error is raised again, so the job's run is recorded as failed.
"""

from __future__ import annotations

import logging

from core.brains.risk import RiskAssessment
from core.services.ceo_service import CeoService
from core.services.risk_service import RiskService

log = logging.getLogger(__name__)


class Brains:
    """The Risk Brain's service and the CEO's, run as one cycle."""

    def __init__(self, risk: RiskService, ceo: CeoService) -> None:
        self.risk = risk
        self.ceo = ceo

    async def cycle(self) -> str:
        """Assess, decide, act; return a one-line summary for the audit trail."""
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
        if failure is not None or assessment is None:
            raise failure or RuntimeError("no assessment")
        return f"risk {assessment.level.value} {assessment.score:.0f}, mode {decision.mode.value}"
