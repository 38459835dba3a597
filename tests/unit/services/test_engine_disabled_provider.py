"""A provider the Strategy Brain disabled opens nothing (a lone one has no other to choose:
the engine stands aside), yet what it holds is still managed; enabled again, it trades."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core.domain.events import OrderSubmitted, TradeClosed
from core.domain.policy import Policy
from tests.unit.services.engine_harness import Harness, ScriptedProvider, at, clean_settings

FLAT = (100.0, 100.3, 99.7, 100.0)


async def test_a_disabled_provider_enters_nothing_but_its_open_trade_is_still_managed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)
    policy = [Policy()]
    provider = ScriptedProvider(entries={at(0): 1, at(6): 1, at(12): 1}, exit_long={at(3)})
    h = await Harness(settings, provider, policy=lambda: policy[0]).start()
    await h.candles((i, *FLAT) for i in range(2))  # entered on candle 0, filled on 1
    policy[0] = replace(Policy(), disabled_strategies=("scripted",), version=2)
    await h.candles((i, *FLAT) for i in range(2, 10))  # its exit signal on 3 still closes it
    entries = [e for e in h.of(OrderSubmitted) if e.client_order_id.endswith("-e")]  # type: ignore[attr-defined]
    assert len(entries) == 1  # the one before; none on candle 6
    assert len(h.of(TradeClosed)) == 1
    policy[0] = replace(Policy(), version=3)  # enabled again (probation)
    await h.candles((i, *FLAT) for i in range(10, 14))
    entries = [e for e in h.of(OrderSubmitted) if e.client_order_id.endswith("-e")]  # type: ignore[attr-defined]
    assert len(entries) == 2  # candle 12's
