"""The engine's exposure cut (the Risk Brain's reduce_exposure) closes what it was asked to."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from core.domain.enums import TradingState
from core.domain.events import OrderDenied
from tests.unit.services.engine_harness import (
    SYMBOL,
    Harness,
    ScriptedProvider,
    at,
    clean_settings,
)

OTHER = "ETH/USDT"
THIRD = "SOL/USDT"


async def _harness(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Harness:
    clean_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("QT__RISK__MAX_TOTAL_EXPOSURE_PCT", "3")
    monkeypatch.setenv("QT__RISK__MAX_CORRELATION", "1")  # two symbols of one hand-made tape
    monkeypatch.setenv("QT__TRADING__SYMBOLS", f'["{SYMBOL}", "{OTHER}", "{THIRD}"]')
    monkeypatch.setenv("QT__RISK__MAX_OPEN_POSITIONS", "3")
    monkeypatch.setenv("QT__PAPER__STARTING_BALANCE", "20000")  # cash for three entries
    h = Harness(load_settings(), ScriptedProvider(entries={at(0): 1, at(1): 1}))
    return await h.start()


async def test_a_waiting_entry_is_cancelled_not_counted_in_the_cut(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path)
    for i in (0, 1):  # BTC and ETH enter on candle 0 and fill on candle 1
        for symbol in (SYMBOL, OTHER):
            await h.candle(i, 100, 100.5, 99.5, 100, symbol=symbol)
    await h.candle(1, 100, 100.5, 99.5, 100, symbol=THIRD)  # its entry waits for its fill
    account = await h.engine.account()
    assert len(account.positions) == 2 and account.pending_entries
    closed = (await h.engine.reduce_exposure(0.5, "tier 3 closes 50%")).closed
    assert len(closed) == 1, closed  # half the positions' exposure, not all of it
    assert not (await h.engine.account()).pending_entries  # the waiting entry is cancelled


async def test_the_largest_position_goes_first_and_only_as_many_as_needed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path)
    await h.candle(0, 100, 100.5, 99.5, 100)
    await h.candle(0, 100, 100.5, 99.5, 100, symbol=OTHER)
    await h.candle(1, 100, 100.5, 99.5, 100)  # both fill at 100; BTC then rises
    await h.candle(1, 100, 100.5, 99.5, 100, symbol=OTHER)
    await h.candle(2, 100, 101.5, 99.5, 101)
    await h.candle(2, 100, 100.5, 99.5, 100, symbol=OTHER)
    assert len((await h.engine.account()).positions) == 2
    assert (await h.engine.reduce_exposure(0.6, "VaR over its limit")).closed == (SYMBOL,)
    cut = await h.engine.reduce_exposure(0.6, "again, same hour")
    assert cut.closed == () and cut.not_closed == ()  # leaving already


async def test_a_halt_lets_the_cut_through_and_the_position_closes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path)
    await h.candle(0, 100, 100.5, 99.5, 100)
    await h.candle(1, 100, 100.5, 99.5, 100)
    await h.trading_state.set(TradingState.HALTED, reason="operator", actor="test")
    assert (await h.engine.reduce_exposure(0.0, "EMERGENCY: flatten")).closed == (SYMBOL,)
    assert not h.of(OrderDenied)
    await h.candle(2, 100, 100.5, 99.5, 100)  # the market exit fills
    assert not (await h.engine.account()).positions
