"""The policy store, the CEO's enforcement and the gate under the brains' policy."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.brains.ceo import mode_levers
from core.brains.risk import MeasureKind, RiskAssessment, RiskLevel, RiskMeasure
from core.brains.risk_gate import OrderIntent
from core.clock import SimClock
from core.domain.enums import Mode, TradingState
from core.domain.events import PolicyUpdated
from core.domain.policy import Policy, PolicyLevers, stricter_state
from core.services.bus import EventBus
from core.services.ceo_service import combine_levers
from core.services.policy_store import PolicyStore
from storage.memory import MemoryStorage
from tests.unit.services.test_execution import make_service

STATES = [TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED]


def _store(storage: MemoryStorage, bus: EventBus | None = None) -> PolicyStore:
    return PolicyStore(storage.decisions, Policy(), bus=bus, clock=SimClock(1_000))


async def test_the_first_start_writes_version_one_and_a_restart_keeps_the_levers() -> None:
    storage = MemoryStorage()
    store = _store(storage)
    await store.start()
    assert store.current().version == 1
    await store.apply(mode_levers(Mode.PRESERVATION), source="ceo", reason="risk HIGH")
    await store.apply_strategy({"disabled_strategies": ("ema_rsi",)}, source="strategy", reason="x")
    again = _store(storage)
    await again.start()
    assert again.current().mode is Mode.PRESERVATION
    assert again.current().state is TradingState.REDUCING
    assert again.current().disabled_strategies == ("ema_rsi",)
    assert again.current().version == 3  # nothing changed at the restart: no new version
    history = await storage.decisions.list_policies()
    assert [v.version for v in history] == [3, 2, 1]
    assert [v.source for v in history] == ["strategy", "ceo", "settings"]


async def test_a_lever_change_keeps_the_strategy_fields_and_the_reverse() -> None:
    store = _store(MemoryStorage())
    await store.start()
    await store.apply_strategy({"primary_strategy": "ema_rsi"}, source="strategy", reason="x")
    await store.apply(mode_levers(Mode.EMERGENCY), source="ceo", reason="crash")
    assert store.current().primary_strategy == "ema_rsi"
    await store.apply_strategy({"primary_strategy": "mean_reversion"}, source="s", reason="y")
    assert store.current().mode is Mode.EMERGENCY
    assert store.current().state is TradingState.HALTED
    with pytest.raises(ValueError, match="not Strategy Brain fields"):
        await store.apply_strategy({"risk_per_trade": D("0.1")}, source="s", reason="z")


async def test_no_change_writes_no_version_and_publishes_nothing() -> None:
    bus = EventBus()
    seen: list[object] = []

    async def keep(event: object) -> None:
        seen.append(event)

    bus.subscribe(PolicyUpdated.topic, keep)
    store = _store(MemoryStorage(), bus)
    await store.start()
    await store.announce()
    assert len(seen) == 1
    assert await store.apply(PolicyLevers(), source="ceo", reason="same") is None
    assert len(seen) == 1
    await store.apply(mode_levers(Mode.EXPANSION), source="ceo", reason="calm")
    assert len(seen) == 2
    event = seen[-1]
    assert isinstance(event, PolicyUpdated)
    assert "mode: OPTIMIZATION -> EXPANSION" in event.changes
    assert "max_open_positions: 2 -> 3" in event.changes


async def test_another_process_s_version_is_adopted_and_numbers_never_collide() -> None:
    storage = MemoryStorage()
    ours, theirs = _store(storage), _store(storage)
    await ours.start()
    await theirs.start()
    await theirs.apply(mode_levers(Mode.PRESERVATION), source="manual", reason="cli")
    await ours.apply(mode_levers(Mode.EXPANSION), source="ceo", reason="calm")  # took the next
    numbers = [v.version for v in await storage.decisions.list_policies()]
    assert numbers == sorted(set(numbers), reverse=True)
    assert await theirs.refresh()
    assert theirs.current().mode is Mode.EXPANSION
    assert not await theirs.refresh()  # nothing newer


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(list(Mode))), max_size=25))
def test_policy_versions_strictly_increase(steps: list[tuple[int, Mode]]) -> None:
    import asyncio

    async def run() -> list[int]:
        storage = MemoryStorage()
        stores = [_store(storage), _store(storage)]
        for store in stores:
            await store.start()
        for who, mode in steps:
            store = stores[who % 2]
            if who == 2:
                await store.refresh()
            else:
                await store.apply(mode_levers(mode), source="ceo", reason=mode.value)
        return [v.version for v in await storage.decisions.list_policies(1_000)]

    numbers = asyncio.run(run())
    assert numbers == sorted(set(numbers), reverse=True)  # strictly increasing, no gaps needed


def _assessment(*measures: RiskMeasure) -> RiskAssessment:
    return RiskAssessment(
        score=80.0,
        level=RiskLevel.CRITICAL,
        components=(),
        var_horizon=(),
        var_daily=(),
        tail=None,
        drawdown=0.2,
        exposure_pct=0.0,
        leverage=0.0,
        concentration=0.0,
        correlation=0.0,
        tier=4,
        measures=measures,
        notes=(),
    )


def test_risk_actions_are_combined_strictly_with_the_mode() -> None:
    a = _assessment(
        RiskMeasure(kind=MeasureKind.SCALE_SIZE, value=0.75, reason="tier"),
        RiskMeasure(kind=MeasureKind.TIGHTEN_STOPS, value=0.5, reason="critical"),
        RiskMeasure(kind=MeasureKind.PAUSE, value=2.0, reason="critical"),
    )
    combined = combine_levers(mode_levers(Mode.EXPANSION), a)  # an operator's bold mode
    assert combined.mode is Mode.EXPANSION
    assert combined.size_multiplier == D("0.75")
    assert combined.stop_tighten == D("0.5")
    assert combined.state is TradingState.HALTED


def _entry(notional: str = "100") -> OrderIntent:
    return OrderIntent(symbol="BTC/USDT", notional=D(notional), reduces_exposure=False)


def _exit(protective: bool) -> OrderIntent:
    return OrderIntent(
        symbol="BTC/USDT", notional=D(100), reduces_exposure=True, protective=protective
    )


@settings(max_examples=60, deadline=None)
@given(operator=st.sampled_from(STATES), mode=st.sampled_from(list(Mode)))
def test_the_gate_obeys_the_stricter_of_the_operator_and_the_mode(
    operator: TradingState, mode: Mode
) -> None:
    import asyncio

    from core.domain.policy import apply_levers

    policy = apply_levers(Policy(), mode_levers(mode), 1)
    service, _, _ = make_service(operator, policy=policy)
    effective = stricter_state(operator, policy.state)

    async def run() -> tuple[bool, bool, bool]:
        entry = await service.check(_entry())
        take_profit = await service.check(_exit(protective=False))
        stop = await service.check(_exit(protective=True))
        return entry.allowed, take_profit.allowed, stop.allowed

    entry, take_profit, stop = asyncio.run(run())
    assert stop  # a stop always goes: no position is ever left bare
    if mode is Mode.EMERGENCY:
        assert not entry  # EMERGENCY never approves an entry
    if effective is TradingState.REDUCING:
        assert not entry and take_profit  # only exposure-reducing orders
    if effective is TradingState.HALTED:
        assert not entry and not take_profit
    if effective is TradingState.ACTIVE:
        assert entry
