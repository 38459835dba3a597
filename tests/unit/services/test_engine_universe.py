"""A dynamic universe gates new entries by candle time: a symbol that leaves keeps its open
trade and its resting exits managed until the trade closes, then takes no new entry; a symbol
that enters is traded from the refresh on. Each change is a ``universe.changed`` event in the
audit trail.

Harness defaults (see ``engine_harness``): an entry decided at 100 is 50 units, filled at
100.02, TP1 101.97 (15 units), stop 98.02, break-even after TP1 100.23.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings
from core.domain.enums import OrderType
from core.domain.events import OrderFilled, OrderSubmitted, TradeClosed, UniverseChanged
from core.services.universe import Universe, publish_change
from tests.unit.services.engine_harness import (
    HOUR_MS,
    SYMBOL,
    Harness,
    ScriptedProvider,
    at,
    clean_settings,
)

OTHER = "ETH/USDT"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    return clean_settings(monkeypatch, tmp_path)


def entries_of(h: Harness, symbol: str) -> list[OrderSubmitted]:
    return [
        e
        for e in h.of(OrderSubmitted)
        if isinstance(e, OrderSubmitted) and e.symbol == symbol and e.type == "market"
    ]


async def test_leaving_keeps_the_open_trade_managed_and_stops_new_entries(
    settings: Settings,
) -> None:
    provider = ScriptedProvider(entries={at(0): 1, at(5): 1, at(6): 1})
    h = await Harness(settings, provider).start()
    universe = Universe()
    h.engine.universe = universe
    await publish_change(h.bus, universe, at(0), [SYMBOL])

    await h.candle(0, 100.0, 100.5, 99.5, 100.0)  # entry decided (closes at(1): in)
    await h.candle(1, 100.0, 100.6, 99.6, 100.3)  # entry fills, ladder and stop rest
    assert len(entries_of(h, SYMBOL)) == 1 and SYMBOL in h.engine.trades

    h.clock.advance_to(at(2))
    change = await publish_change(h.bus, universe, at(2), [OTHER])  # BTC leaves
    assert change is not None and change.left == (SYMBOL,) and change.entered == (OTHER,)
    resting = await h.open_orders()
    assert {o.request.type for o in resting} == {OrderType.LIMIT, OrderType.STOP_MARKET}

    await h.candle(2, 100.3, 102.0, 100.1, 101.5)  # TP1 fills: the stop moves to break-even
    tp1 = [e for e in h.of(OrderFilled) if isinstance(e, OrderFilled) and e.ts_ms == at(3)]
    assert len(tp1) == 1 and str(tp1[0].price) == "101.97"
    stops = [o for o in await h.open_orders() if o.request.type is OrderType.STOP_MARKET]
    assert [str(o.request.stop_price) for o in stops] == ["100.23"]

    await h.candle(3, 101.5, 101.6, 99.0, 99.5)  # the break-even stop closes the trade
    [closed] = [e for e in h.of(TradeClosed) if isinstance(e, TradeClosed)]
    assert closed.symbol == SYMBOL and closed.exit_reason == "TSL"  # the moved stop
    assert SYMBOL not in h.engine.trades and await h.open_orders() == []

    for i in (4, 5, 6):  # entry signals on 5 and 6: BTC is out, no new entry
        await h.candle(i, 100.0, 100.5, 99.5, 100.0)
    assert len(entries_of(h, SYMBOL)) == 1


async def test_a_symbol_enters_by_candle_time(settings: Settings) -> None:
    provider = ScriptedProvider(entries={at(0): 1, at(1): 1})
    h = await Harness(settings, provider).start()
    universe = Universe()
    h.engine.universe = universe
    await publish_change(h.bus, universe, at(0), [SYMBOL])
    await publish_change(h.bus, universe, at(2), [SYMBOL, OTHER])

    await h.candle(0, 100.0, 100.5, 99.5, 100.0, symbol=OTHER)  # closes at(1): not yet in
    assert entries_of(h, OTHER) == []
    await h.candle(1, 100.0, 100.5, 99.5, 100.0, symbol=OTHER)  # closes at(2): in from then
    [entry] = entries_of(h, OTHER)
    assert entry.ts_ms == at(1) + HOUR_MS


async def test_changes_are_events_in_the_audit_trail(settings: Settings) -> None:
    h = await Harness(settings, ScriptedProvider()).start()
    universe = Universe()
    await publish_change(h.bus, universe, at(0), ["A/USDT", "B/USDT"])
    assert await publish_change(h.bus, universe, at(1), ["B/USDT", "A/USDT"]) is None  # same set
    await publish_change(h.bus, universe, at(2), ["C/USDT", "A/USDT"])

    changes = [e for e in h.of(UniverseChanged) if isinstance(e, UniverseChanged)]
    assert [(c.entered, c.left) for c in changes] == [
        (("A/USDT", "B/USDT"), ()),
        (("C/USDT",), ("B/USDT",)),
    ]
    stored = await h.storage.events.list_events("universe.")
    assert [(s.topic, s.ts_ms) for s in stored] == [
        ("universe.changed", at(0)),
        ("universe.changed", at(2)),
    ]
    assert stored[1].payload == {
        "at_ms": at(2),
        "entered": ["C/USDT"],
        "left": ["B/USDT"],
        "members": ["C/USDT", "A/USDT"],
    }
    assert universe.changes == 2 and universe.ever == {"A/USDT", "B/USDT", "C/USDT"}
    assert universe.members_at(at(0) - 1) == () and universe.members_at(at(1)) == (
        "B/USDT",
        "A/USDT",
    )
    with pytest.raises(ValueError, match="before the last one"):
        universe.record(at(1), [])
