"""A polling feed that stopped and catches up hands over candles the market has left behind:
an entry decided on one of them (closed more than ``Engine.stale_entry_ms`` ago by the clock)
is skipped, since its market order would fill far from the price decided on; a fresh candle
enters as ever, and a replay (no limit set) is never stale. Found by the chaos harness's stale
feed (``tests/chaos_faults.py``): after a 12-candle stop the catch-up entered on a candle 9.3
candles old."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings
from core.domain.events import OrderSubmitted
from core.domain.market import Candle
from tests.unit.services.engine_harness import (
    HOUR_MS,
    SYMBOL,
    Harness,
    ScriptedProvider,
    at,
    clean_settings,
)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    return clean_settings(monkeypatch, tmp_path)


async def late(h: Harness, i: int, candles_late: float) -> None:
    """Process candle ``i`` (an entry signal) ``candles_late`` candles after its close."""
    h.clock.advance_to(at(i) + HOUR_MS + int(candles_late * HOUR_MS))
    await h.market.process(
        SYMBOL, Candle(ts_ms=at(i), open=100.0, high=100.5, low=99.5, close=100.0, volume=1.0)
    )


async def test_an_entry_on_a_candle_the_feed_was_late_with_is_skipped(settings: Settings) -> None:
    h = await Harness(settings, ScriptedProvider(entries={at(0): 1, at(9): 1})).start()
    h.engine.stale_entry_ms = 3 * HOUR_MS  # the health check's stale rule: 3 candles
    await late(h, 0, 8.5)  # the feed came back 8.5 candles after this candle's close
    assert h.of(OrderSubmitted) == []
    assert SYMBOL not in h.engine.trades
    await late(h, 9, 0.01)  # the newest candle, on time: entered
    [submitted] = h.of(OrderSubmitted)
    assert isinstance(submitted, OrderSubmitted)
    assert submitted.client_order_id.endswith("-e") and h.engine.trades[SYMBOL].decided_ms == at(9)


async def test_within_the_limit_and_without_one_a_late_candle_still_enters(
    settings: Settings,
) -> None:
    h = await Harness(settings, ScriptedProvider(entries={at(0): 1})).start()
    h.engine.stale_entry_ms = 3 * HOUR_MS
    await late(h, 0, 2.9)
    assert len(h.of(OrderSubmitted)) == 1
    replay = await Harness(settings, ScriptedProvider(entries={at(0): 1})).start()
    assert replay.engine.stale_entry_ms is None  # a replay's candles are never late
    await late(replay, 0, 50)
    assert len(replay.of(OrderSubmitted)) == 1
