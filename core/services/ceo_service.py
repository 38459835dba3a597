"""After each risk assessment: the CEO's mode, the policy it sets, and the actions carried out.

``review`` gathers the CEO Brain's input (the assessment, the current mode and since when, an
operator's manual mode, the closed trades of the last 30 days), decides, and writes the policy:
the mode's levers combined with the Risk Brain's actions, the stricter of each
(``combine_levers``: a manual mode cannot loosen what risk enforces). Then it acts: the Risk
Brain's exposure reduction (the engine closes positions at market) and, in EMERGENCY with
``flatten``, everything. A change of mode is recorded (``brain_decisions``) and published
(``ModeChanged``); entering EMERGENCY raises an alert. Anything that fails here leaves the
process in the more conservative state: the policy is only ever written stricter on an error
(``fail_closed``).
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal

from core.analytics.returns import ratio_or_inf
from core.brains.ceo import (
    CeoConfig,
    CeoDecision,
    CeoInput,
    ManualMode,
    decide,
    mode_levers,
)
from core.brains.risk import MeasureKind, RiskAssessment
from core.clock import Clock
from core.domain.decisions import BrainDecision, record_body
from core.domain.enums import Mode
from core.domain.events import AlertRaised, ModeChanged
from core.domain.policy import Policy, PolicyLevers, stricter_state
from core.ports import DecisionRepo, KeyValueRepo, StateKey
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.open_trade import round_trips
from core.services.policy_store import PolicyStore, levers_of

log = logging.getLogger(__name__)
REVIEW_WINDOW_MS = 30 * 86_400_000


def combine_levers(mode: PolicyLevers, assessment: RiskAssessment | None) -> PolicyLevers:
    """Return the mode's levers with the Risk Brain's actions applied, the stricter of each."""
    if assessment is None:
        return mode
    size, tighten, state = mode.size_multiplier, mode.stop_tighten, mode.state
    for m in assessment.measures:
        value = Decimal(repr(m.value))
        if m.kind is MeasureKind.SCALE_SIZE:
            size = min(size, value)
        elif m.kind is MeasureKind.TIGHTEN_STOPS:
            tighten = min(tighten, value)
    state = stricter_state(state, assessment.state)
    return PolicyLevers(
        mode=mode.mode,
        size_multiplier=size,
        stop_tighten=tighten,
        state=state,
        extra_positions=mode.extra_positions,
    )


def stricter_levers(a: PolicyLevers, b: PolicyLevers) -> PolicyLevers:
    """Return ``a``'s mode with the stricter of each lever of ``a`` and ``b``."""
    return PolicyLevers(
        mode=a.mode,
        size_multiplier=min(a.size_multiplier, b.size_multiplier),
        stop_tighten=min(a.stop_tighten, b.stop_tighten),
        state=stricter_state(a.state, b.state),
        extra_positions=min(a.extra_positions, b.extra_positions),
    )


def manual_levers(mode: Mode, held: Policy, base: Policy) -> PolicyLevers:
    """Return what another process (``qt mode set``) writes for an operator's ``mode``: the
    mode, but no lever looser than ``held`` enforces; the running process loosens it as far
    as its latest assessment allows when it adopts the version (``Brains.adopt``)."""
    return stricter_levers(mode_levers(mode), levers_of(held, base))


def parse_manual(raw: str | None) -> ManualMode | None:
    """Return the manual mode stored by ``qt mode set`` (None: none, or unreadable: logged)."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        until = data.get("until_ms")
        return ManualMode(
            mode=Mode(data["mode"]),
            until_ms=None if until is None else int(until),
            reason=str(data.get("reason", "")),
            actor=str(data.get("actor", "operator")),
        )
    except (ValueError, KeyError, TypeError) as e:
        log.error("the stored manual mode is unreadable (%s): ignored", e)
        return None


class CeoService:
    """Decide the mode after each assessment and enforce it (see module docstring)."""

    def __init__(
        self,
        *,
        engine: Engine,
        store: PolicyStore,
        repo: DecisionRepo,
        state: KeyValueRepo,
        bus: EventBus,
        clock: Clock,
        config: CeoConfig,
        flatten_on_emergency: bool = False,
    ) -> None:
        self._engine = engine
        self._store = store
        self._repo = repo
        self._state = state
        self._bus = bus
        self._clock = clock
        self.config = config
        self._flatten = flatten_on_emergency

    async def _mode_since(self, mode: Mode) -> int:
        raw = await self._state.get(StateKey.CEO_STATE)
        try:
            data = json.loads(raw) if raw else {}
            if data.get("mode") == mode.value:
                return int(data["since_ms"])
        except (ValueError, KeyError, TypeError):
            log.error("the stored CEO state is unreadable: the mode's dwell starts now")
        # Stored, so the dwell counts from here (else it would start again at every review
        # and a first start could never leave OPTIMIZATION).
        now = self._clock.now_ms()
        await self._state.set(StateKey.CEO_STATE, json.dumps({"mode": mode.value, "since_ms": now}))
        return now

    def _record(self) -> tuple[int, float | None]:
        """Return the closed trades of the review window and their profit factor."""
        since = self._clock.now_ms() - REVIEW_WINDOW_MS
        pnls = [
            float(t.pnl) for t in round_trips(self._engine.closed_trades) if t.closed_ms >= since
        ]
        if not pnls:
            return 0, None
        gains = sum(p for p in pnls if p > 0)
        return len(pnls), ratio_or_inf(gains, -sum(p for p in pnls if p < 0))

    async def review(
        self,
        assessment: RiskAssessment | None,
        assessed_ms: int | None,
        *,
        previous: Mode | None = None,
        act_on_assessment: bool = True,
    ) -> CeoDecision:
        """Decide the mode, write the policy and act (see module docstring). ``previous``:
        the mode before another process's version was adopted (its change is this one's to
        announce and enforce); ``act_on_assessment`` False: the assessment's exposure cut was
        carried out already (an adoption recombines, it does not close again)."""
        now = self._clock.now_ms()
        held = self._store.current()
        current = held.mode if previous is None else previous
        trades, pf = self._record()
        decision = decide(
            CeoInput(
                now_ms=now,
                mode=current,
                mode_since_ms=await self._mode_since(current),
                score=None if assessment is None else assessment.score,
                assessed_ms=assessed_ms,
                drawdown=0.0 if assessment is None else assessment.drawdown,
                trades=trades,
                profit_factor=pf,
                manual=parse_manual(await self._state.get(StateKey.MANUAL_MODE)),
                config=self.config,
            )
        )
        levers = combine_levers(mode_levers(decision.mode), assessment)
        if assessment is None:
            # Nothing says the risk is lower than when the policy in force was set: a failed
            # assessment, or none yet since a restart, never loosens it (a manual mode either).
            levers = stricter_levers(levers, levers_of(held, self._store.base))
        reason = "; ".join(decision.reasons)
        await self._store.apply(
            levers, source="manual" if decision.manual else "ceo", reason=reason
        )
        if decision.changed:
            await self._state.set(
                StateKey.CEO_STATE, json.dumps({"mode": decision.mode.value, "since_ms": now})
            )
            await self._repo.add_decision(
                BrainDecision(
                    ts_ms=now,
                    brain="ceo",
                    summary=f"{decision.previous.value} -> {decision.mode.value}: {reason}",
                    body=record_body(decision),
                )
            )
            log.info("mode %s -> %s: %s", decision.previous.value, decision.mode.value, reason)
            await self._bus.publish(
                ModeChanged(
                    ts_ms=now,
                    previous=decision.previous.value,
                    current=decision.mode.value,
                    reasons=decision.reasons,
                    manual=decision.manual,
                )
            )
        if decision.alert:
            await self._bus.publish(
                AlertRaised(
                    ts_ms=now,
                    severity="critical",
                    title="EMERGENCY: trading halted",
                    detail=reason,
                )
            )
        await self._act(decision, assessment if act_on_assessment else None)
        return decision

    async def _act(self, decision: CeoDecision, assessment: RiskAssessment | None) -> None:
        if decision.mode is Mode.EMERGENCY and self._flatten and decision.changed:
            await self._engine.reduce_exposure(0.0, "EMERGENCY: flatten")
            return
        reduce = None if assessment is None else assessment.measure(MeasureKind.REDUCE_EXPOSURE)
        if reduce is not None:
            await self._engine.reduce_exposure(reduce.value, reduce.reason)

    async def fail_closed(self, error: str) -> None:
        """The brains could not run: hold the more conservative of PRESERVATION and the
        current policy (never a looser one)."""
        current = self._store.current()
        if current.mode.severity >= Mode.PRESERVATION.severity:
            return
        levers = stricter_levers(
            mode_levers(Mode.PRESERVATION), levers_of(current, self._store.base)
        )
        now = self._clock.now_ms()
        await self._store.apply(levers, source="ceo", reason=f"fail closed: {error}")
        await self._state.set(
            StateKey.CEO_STATE, json.dumps({"mode": Mode.PRESERVATION.value, "since_ms": now})
        )
        await self._bus.publish(
            ModeChanged(
                ts_ms=now,
                previous=current.mode.value,
                current=Mode.PRESERVATION.value,
                reasons=(f"fail closed: {error}",),
                manual=False,
            )
        )
        await self._bus.publish(
            AlertRaised(
                ts_ms=self._clock.now_ms(), severity="warning", title="brains failed", detail=error
            )
        )
