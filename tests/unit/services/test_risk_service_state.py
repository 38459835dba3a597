"""The risk service's stored peaks: a restart resumes the drawdown, an unreadable state never
lifts the ladder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.brains.risk import RiskConfig
from core.domain.enums import TradingState
from core.domain.policy import Policy
from core.ports import StateKey
from core.services.risk_service import DAY_MS, RiskService
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
