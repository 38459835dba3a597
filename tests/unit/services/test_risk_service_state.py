"""The risk service's stored peaks: a restart resumes the drawdown, an unreadable state never
lifts the ladder."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.brains.risk import RiskConfig
from core.clock import SimClock
from core.domain.enums import TradingState
from core.domain.policy import Policy
from core.ports import StateKey
from core.services.bus import EventBus
from core.services.portfolio import AccountView
from core.services.risk_service import DAY_MS, RiskService
from storage.memory import MemoryStorage
from tests.unit.services.engine_harness import T0_MS, Harness, ScriptedProvider, clean_settings


async def _service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stored: str) -> RiskService:
    h = await Harness(clean_settings(monkeypatch, tmp_path), ScriptedProvider()).start()
    await h.storage.state.set(StateKey.RISK_STATE, stored)
    return RiskService(
        engine=h.engine,
        policy=Policy,
        repo=h.storage.decisions,
        state=h.storage.state,
        bus=h.bus,
        clock=h.clock,
        config=RiskConfig(mc_paths=1_000),
    )


async def test_a_restart_resumes_the_drawdown_from_the_stored_peak(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    peaks = {str(T0_MS // DAY_MS - 1): 12_000.0}  # yesterday's peak; 10,000 now: 16.7 %
    risk = await _service(monkeypatch, tmp_path, json.dumps({"peaks": peaks, "tier": 4}))
    a = await risk.assess()
    assert a.tier == 4 and a.state is TradingState.HALTED


async def test_an_unreadable_risk_state_keeps_the_ladder_at_its_worst(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    risk = await _service(monkeypatch, tmp_path, '{"peaks": {"19723": "twelve"}')
    a = await risk.assess()
    assert a.tier == len(risk.config.ladder), a.drawdown  # not a fresh peak: no drawdown
    assert a.state is TradingState.HALTED
    again = await risk.assess()  # kept (and stored) for the peak window, not one cycle
    assert again.state is TradingState.HALTED


class Glitch:
    """An engine whose account reads NaN equity (a bad mark)."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(timeframe="1h")
        self.prices: dict[str, Decimal] = {}
        self.excluded: dict[str, dict[str, str]] = {}
        self.signals = None

    async def account(self) -> AccountView:
        nan = Decimal("NaN")
        return AccountView(equity=nan, free_quote=nan, exposure=Decimal(0), positions=())


async def test_a_nan_equity_is_no_tier_reached_for_the_next_close_once() -> None:
    storage = MemoryStorage()
    peaks = {str(T0_MS // DAY_MS): 10_000.0}
    await storage.state.set(StateKey.RISK_STATE, json.dumps({"peaks": peaks, "tier": 1}))
    risk = RiskService(
        engine=Glitch(),  # type: ignore[arg-type]
        policy=Policy,
        repo=storage.decisions,
        state=storage.state,
        bus=EventBus(),
        clock=SimClock(T0_MS),
        config=RiskConfig(mc_paths=1_000),
    )
    assert (await risk.assess()).state is TradingState.HALTED  # NaN: fail closed
    saved = json.loads(await storage.state.get(StateKey.RISK_STATE) or "{}")
    # Tier 1 stays the last one reached: entering tier 3 next still closes half (kept at
    # the glitch's "worst" tier 4, it would not: core.brains.risk._measures).
    assert saved["tier"] == 1
    assert saved["peaks"] == peaks  # and NaN is no peak


async def test_a_tier_counts_as_reached_only_once_its_actions_were_carried_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    peaks = {str(T0_MS // DAY_MS - 1): 11_500.0}  # 10,000 now: 13 %, the close-half tier
    risk = await _service(monkeypatch, tmp_path, json.dumps({"peaks": peaks, "tier": 2}))

    async def stored_tier() -> int:
        return int(json.loads(await risk._state.get(StateKey.RISK_STATE) or "{}")["tier"])

    assert (await risk.assess()).tier == 3
    assert await stored_tier() == 2  # a crash now: the next start asks for the cut again
    assert (await risk.assess()).tier == 3
    await risk.commit()  # the CEO carried the actions out
    assert await stored_tier() == 3


class Holding:
    """An engine holding one BTC long, its account's equity set by the test."""

    def __init__(self) -> None:
        import numpy as np

        from core.domain.enums import MarketType, PositionSide
        from core.domain.portfolio import Position

        self.config = SimpleNamespace(timeframe="1h")
        self.prices = {"BTC/USDT": Decimal(100)}
        self.excluded: dict[str, dict[str, str]] = {}
        self.equity = Decimal(10_000)
        self.position = Position(
            symbol="BTC/USDT",
            market_type=MarketType.SPOT,
            side=PositionSide.LONG,
            amount=Decimal(50),
            entry_price=Decimal(100),
            opened_ms=T0_MS,
            updated_ms=T0_MS,
        )
        closes = 100 * np.exp(np.cumsum(np.random.default_rng(3).standard_t(4, 600) * 0.01))
        self.signals = SimpleNamespace(
            closes_until=lambda symbol, until, n: closes[-n:],
            last_close_ms=lambda symbol: T0_MS,
        )

    async def account(self) -> AccountView:
        return AccountView(
            equity=self.equity,
            free_quote=self.equity,
            exposure=Decimal(5_000),
            positions=(self.position,),
        )


async def test_the_figures_are_reused_only_while_the_book_weighs_the_same() -> None:
    storage, clock, engine = MemoryStorage(), SimClock(T0_MS), Holding()
    risk = RiskService(
        engine=engine,  # type: ignore[arg-type]
        policy=Policy,
        repo=storage.decisions,
        state=storage.state,
        bus=EventBus(),
        clock=clock,
        config=RiskConfig(mc_paths=1_000),
        figures_every_ms=4 * 3_600_000,
    )
    first = await risk.assess()
    clock.advance_to(T0_MS + 3_600_000)
    assert (await risk.assess()).figures is first.figures  # the same book an hour later
    engine.equity = Decimal(8_000)  # the book now weighs 25 % more of the equity
    clock.advance_to(T0_MS + 2 * 3_600_000)
    heavier = await risk.assess()
    assert heavier.figures is not first.figures
    assert heavier.worst_daily_var > first.worst_daily_var
    clock.advance_to(T0_MS + 7 * 3_600_000)
    assert (await risk.assess()).figures is not heavier.figures  # 4 h later: computed again


async def test_an_hour_that_changes_neither_peak_nor_tier_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    risk = await _service(monkeypatch, tmp_path, "")
    state = risk._state
    writes: list[str] = []
    real_set = state.set

    async def counted(key: StateKey, value: str) -> None:
        writes.append(value)
        await real_set(key, value)

    monkeypatch.setattr(state, "set", counted)
    clock = risk._clock
    assert isinstance(clock, SimClock)
    await risk.assess()  # the first assessment of a process always writes
    assert len(writes) == 1
    for hour in (1, 2):  # same equity, same day: nothing new to keep
        clock.advance_to(T0_MS + hour * 3_600_000)
        await risk.assess()
    assert len(writes) == 1
    clock.advance_to(T0_MS + DAY_MS)  # a new day's peak: written, and what is read back
    await risk.assess()
    assert len(writes) == 2
    stored = json.loads(await state.get(StateKey.RISK_STATE) or "{}")
    assert stored == json.loads(writes[-1]) and len(stored["peaks"]) == 2
