"""The brains' services attacked on hand-made inputs: a failure, a missing assessment, a
manual mode or another process's version never loosens the policy, and an action asked once
is carried out once."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.brains.ceo import CeoConfig, mode_levers
from core.brains.risk import MeasureKind, RiskAssessment, RiskLevel, RiskMeasure
from core.clock import SimClock
from core.domain.enums import Mode, TradingState
from core.domain.events import AlertRaised, Event
from core.domain.policy import Policy
from core.errors import InvariantViolation
from core.ports import StateKey
from core.services.brains import Brains
from core.services.bus import EventBus
from core.services.ceo_service import CeoService, manual_levers
from core.services.flatten import ExposureCut
from core.services.policy_store import PolicyStore
from storage.memory import MemoryStorage

T0 = 1_704_067_200_000


@dataclass
class FakeEngine:
    """What the CEO service asks of the engine: the closed trades and exposure cuts."""

    closed_trades: list[Any] = field(default_factory=list)
    cuts: list[tuple[float, str]] = field(default_factory=list)

    async def reduce_exposure(self, keep: float, reason: str) -> ExposureCut:
        self.cuts.append((keep, reason))
        return ExposureCut()


@dataclass
class FakeRisk:
    """The risk service's latest assessment (``assess`` raises while ``fails``)."""

    latest: RiskAssessment | None = None
    latest_ms: int | None = None
    fails: bool = False

    async def assess(self) -> RiskAssessment:
        if self.fails or self.latest is None:
            raise RuntimeError("no candles")
        return self.latest

    async def commit(self) -> None:
        """The actions were carried out (nothing to record here)."""


@dataclass
class World:
    storage: MemoryStorage
    clock: SimClock
    store: PolicyStore
    engine: FakeEngine
    ceo: CeoService
    risk: FakeRisk
    brains: Brains
    events: list[Event]


async def _world(*, flatten: bool = False) -> World:
    storage = MemoryStorage()
    clock = SimClock(T0)
    events: list[Event] = []
    bus = EventBus()

    async def keep(e: Event) -> None:
        events.append(e)

    bus.subscribe("*", keep)
    store = PolicyStore(storage.decisions, Policy(), bus=bus, clock=clock)
    await store.start()
    engine = FakeEngine()
    ceo = CeoService(
        engine=engine,  # type: ignore[arg-type]
        store=store,
        repo=storage.decisions,
        state=storage.state,
        bus=bus,
        clock=clock,
        config=CeoConfig(),
        flatten_on_emergency=flatten,
    )
    risk = FakeRisk()
    brains = Brains(risk, ceo, store, strategy=None)  # type: ignore[arg-type]
    return World(storage, clock, store, engine, ceo, risk, brains, events)


def _assessment(score: float, tier: int, *measures: RiskMeasure) -> RiskAssessment:
    return RiskAssessment(
        score=score,
        level=RiskLevel.CRITICAL if score >= 75 else RiskLevel.HIGH,
        components=(),
        var_horizon=(),
        var_daily=(),
        tail=None,
        drawdown=0.13,
        exposure_pct=1.0,
        leverage=1.0,
        concentration=1.0,
        correlation=0.0,
        tier=tier,
        measures=measures,
        notes=(),
    )


HALT = RiskMeasure(kind=MeasureKind.PAUSE, value=2.0, reason="drawdown tier 4")
CLOSE_HALF = RiskMeasure(kind=MeasureKind.REDUCE_EXPOSURE, value=0.5, reason="tier 3 closes 50%")


async def _set_manual(w: World, mode: Mode) -> None:
    """What ``qt mode set`` writes from another process."""
    await w.storage.state.set(
        StateKey.MANUAL_MODE,
        json.dumps({"mode": mode.value, "until_ms": None, "reason": "x", "actor": "cli"}),
    )
    other = PolicyStore(w.storage.decisions, Policy(), bus=None, clock=w.clock)
    await other.start()
    levers = manual_levers(mode, other.current(), other.base)
    await other.apply(levers, source="manual", reason="manual mode by the cli")


async def test_a_failed_assessment_under_a_manual_mode_keeps_the_risk_brain_s_halt() -> None:
    w = await _world()
    w.risk.latest, w.risk.latest_ms = _assessment(80.0, 4, HALT), T0
    await w.brains.cycle()
    assert w.store.current().state is TradingState.HALTED
    await w.storage.state.set(
        StateKey.MANUAL_MODE,
        json.dumps({"mode": "EXPANSION", "until_ms": None, "reason": "x", "actor": "cli"}),
    )
    w.risk.fails = True  # the next assessment raises: the CEO decides without one
    w.clock.advance_to(T0 + 3_600_000)
    try:
        await w.brains.cycle()
    except RuntimeError:
        pass
    policy = w.store.current()
    assert policy.state is TradingState.HALTED, policy
    assert policy.size_multiplier <= mode_levers(Mode.EMERGENCY).size_multiplier


async def test_a_manual_mode_adopted_before_any_assessment_does_not_lift_a_halt() -> None:
    w = await _world()
    await w.store.apply(mode_levers(Mode.EMERGENCY), source="ceo", reason="crash")
    # A restart: the risk service has assessed nothing yet; the operator asks for EXPANSION.
    await _set_manual(w, Mode.EXPANSION)
    assert await w.brains.adopt()
    policy = w.store.current()
    assert policy.state is TradingState.HALTED, policy


async def test_adopting_another_process_s_version_does_not_repeat_the_close_once() -> None:
    w = await _world()
    w.risk.latest, w.risk.latest_ms = _assessment(62.5, 3, CLOSE_HALF), T0
    await w.brains.cycle()
    assert len(w.engine.cuts) == 1  # entering tier 3 closes half, once
    await _set_manual(w, Mode.EMERGENCY)  # an operator's stricter mode, from the cli
    assert await w.brains.adopt()
    assert len(w.engine.cuts) == 1, w.engine.cuts  # the same assessment: not closed again


async def test_a_manual_emergency_set_from_the_cli_alerts_and_flattens() -> None:
    w = await _world(flatten=True)
    await _set_manual(w, Mode.EMERGENCY)
    assert await w.brains.adopt()
    assert w.store.current().state is TradingState.HALTED
    assert [e for e in w.events if isinstance(e, AlertRaised)], "no alert on EMERGENCY"
    assert (0.0, "EMERGENCY: flatten") in w.engine.cuts


async def test_a_manual_mode_loosens_as_far_as_the_latest_assessment_allows() -> None:
    w = await _world()
    await w.store.apply(mode_levers(Mode.EMERGENCY), source="ceo", reason="crash")
    calm = dataclasses.replace(_assessment(20.0, 0), level=RiskLevel.LOW, drawdown=0.0)
    w.risk.latest, w.risk.latest_ms = calm, T0
    await _set_manual(w, Mode.OPTIMIZATION)
    written = await w.storage.decisions.latest_policy()
    assert written is not None and written.policy.state is TradingState.HALTED  # held by the cli
    assert await w.brains.adopt()
    policy = w.store.current()
    assert (policy.mode, policy.state) == (Mode.OPTIMIZATION, TradingState.ACTIVE)
    assert policy.size_multiplier == 1


async def test_an_unreadable_newest_version_does_not_keep_the_ceo_from_halting() -> None:
    w = await _world()
    await _set_manual(w, Mode.PRESERVATION)  # another process (a newer release?) wrote it...
    row = w.storage.decisions._policies[2]
    payload = json.loads(row["payload"])
    payload["policy"]["mode"] = "HIBERNATE"  # ...in a form this one cannot read
    row["payload"] = json.dumps(payload)
    await w.storage.state.set(StateKey.MANUAL_MODE, "")
    w.risk.latest, w.risk.latest_ms = _assessment(80.0, 4, HALT), T0
    with pytest.raises(InvariantViolation, match="HIBERNATE"):
        await w.brains.cycle()
    assert w.store.current().mode is Mode.EMERGENCY  # held in memory: fail closed
    assert w.store.current().state is TradingState.HALTED
    del w.storage.decisions._policies[2]  # the row mended: the held policy is written
    w.clock.advance_to(T0 + 3_600_000)
    await w.brains.cycle()
    stored = await w.storage.decisions.latest_policy()
    assert stored is not None and stored.policy.state is TradingState.HALTED


@dataclass(frozen=True)
class Closed:
    pnl: float
    closed_ms: int
    exit_reason: str = "TP1"


async def test_the_dwell_before_expansion_counts_from_the_first_review() -> None:
    w = await _world()  # a first start: no CEO state stored yet
    w.engine.closed_trades = [Closed(pnl=10.0 if i % 3 else -5.0, closed_ms=T0) for i in range(30)]
    calm = dataclasses.replace(_assessment(5.0, 0), level=RiskLevel.LOW, drawdown=0.0)
    for hour in range(0, 26):
        w.clock.advance_to(T0 + hour * 3_600_000)
        w.risk.latest, w.risk.latest_ms = calm, w.clock.now_ms()
        await w.brains.cycle()
    assert w.store.current().mode is Mode.EXPANSION  # 24 h of OPTIMIZATION held


async def test_a_manual_expansion_before_any_assessment_adds_no_position() -> None:
    w = await _world()
    await _set_manual(w, Mode.EXPANSION)
    assert await w.brains.adopt()
    policy = w.store.current()
    assert policy.mode is Mode.EXPANSION
    assert policy.max_open_positions == w.store.base.max_open_positions
    assert policy.size_multiplier == 1


async def test_the_mode_record_counts_no_late_fill_as_a_losing_trade() -> None:
    """A late fill's record (exit LATE, P&L minus its fee) is no round trip: ten winners and
    ten late fills are ten trades at an infinite profit factor, not twenty at a finite one."""
    from core.services.open_trade import LATE_FILL_REASON

    w = await _world()
    winners = [Closed(pnl=10.0, closed_ms=T0) for _ in range(10)]
    late = [Closed(pnl=-0.75, closed_ms=T0, exit_reason=LATE_FILL_REASON) for _ in range(10)]
    w.engine.closed_trades = [*winners, *late]
    assert w.ceo._record() == (10, float("inf"))
