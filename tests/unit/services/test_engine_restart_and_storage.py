"""A restart never decides a candle twice; the entry is recorded before it is sent; a database
that cannot be written halts trading (fail closed), loses nothing and stops nothing.

The venue is the test suite's FakeExchange (a live venue between polls); the engine enters 50 at
100 on candle 0 (see ``test_engine_venue_sync``).
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.trading import build_engine
from core.domain.enums import TradingState
from core.domain.events import Event, TradingStateChanged
from core.domain.orders import Order, OrderRequest
from core.errors import StorageUnavailable
from core.ports import StateKey
from core.services.bus import EventBus
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.fakes import FakeExchange, FlakyState
from tests.unit.services.engine_harness import SYMBOL, ScriptedProvider, at, clean_settings
from tests.unit.services.test_engine_venue_sync import ENTRY, STOP, live, quiet


async def test_a_restart_does_not_decide_the_last_candle_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv = await live(monkeypatch, tmp_path)
    lv.venue.script_fill(ENTRY, D(100))
    await lv.engine.sync_with_venue()
    lv.venue.script_fill(STOP, D(98))  # stopped out within the hour
    await lv.engine.sync_with_venue()
    assert SYMBOL not in lv.engine.trades

    # Restart on the same database: the polling feed hands candle 0 over again.
    bus = EventBus(sink=lv.storage.events.append)
    clock = lv.venue.clock
    again = build_engine(
        clean_settings(monkeypatch, tmp_path),
        clock=clock,
        bus=bus,
        exchange=lv.venue,
        trading_state=TradingStateService(lv.storage.state, bus, clock),
        provider=ScriptedProvider(entries={at(0): 1}),
        state=lv.storage.state,
    )
    await again.start()
    await again.on_candle(SYMBOL, quiet(0))

    entries = [c for c in lv.venue.calls_to("create_order") if c.args[0].tag == "entry"]
    assert len(entries) == 1  # Binance would open a second position under the same id
    assert again.trades == {}
    await again.on_candle(SYMBOL, quiet(1))  # a new candle is decided as usual
    assert again.decided[SYMBOL] == at(1)


class Witness(FakeExchange):
    """Looks at the engine's stored trades at the moment an entry reaches the venue."""

    storage: MemoryStorage | None = None
    seen_at_send: str | None = None

    async def create_order(self, request: OrderRequest) -> Order:
        if request.tag == "entry" and self.storage is not None:
            self.seen_at_send = await self.storage.state.get(StateKey.ENGINE_TRADES)
        return await super().create_order(request)


async def test_the_entry_is_stored_before_it_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = MemoryStorage()
    venue = Witness(balances={"USDT": D(10_000)}, track_positions=True)
    venue.storage = storage
    engine, _ = _engine(monkeypatch, tmp_path, venue, storage)
    await engine.on_candle(SYMBOL, quiet(0))
    assert venue.seen_at_send is not None and ENTRY in venue.seen_at_send


def _engine(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    venue: FakeExchange,
    storage: MemoryStorage,
    state: object | None = None,
    events: list[Event] | None = None,
):  # type: ignore[no-untyped-def]
    bus = EventBus(sink=storage.events.append)
    if events is not None:

        async def record(e: Event) -> None:
            events.append(e)

        bus.subscribe("*", record)
    kv = state or storage.state
    trading_state = TradingStateService(kv, bus, venue.clock)  # type: ignore[arg-type]
    return build_engine(
        clean_settings(monkeypatch, tmp_path),
        clock=venue.clock,
        bus=bus,
        exchange=venue,
        trading_state=trading_state,
        provider=ScriptedProvider(entries={at(0): 1, at(2): 1}),
        state=kv,  # type: ignore[arg-type]
    ), trading_state


async def test_a_database_that_cannot_be_written_halts_trading_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = MemoryStorage()
    flaky = FlakyState(storage.state)
    venue = FakeExchange(balances={"USDT": D(10_000)}, track_positions=True)
    events: list[Event] = []
    engine, trading_state = _engine(monkeypatch, tmp_path, venue, storage, flaky, events)

    flaky.down = True
    await engine.on_candle(SYMBOL, quiet(0))  # the entry cannot be recorded: it is not sent

    assert venue.calls_to("create_order") == []
    assert engine.trades == {}
    assert await trading_state.current() is TradingState.HALTED  # fail closed, in memory
    [halt] = [e for e in events if isinstance(e, TradingStateChanged)]
    assert isinstance(halt, TradingStateChanged)
    assert (halt.current, halt.actor) == ("halted", "storage")
    assert "database is locked" in halt.reason

    flaky.down = False
    assert await trading_state.current() is TradingState.HALTED  # now on disk, too
    assert await storage.state.get(StateKey.TRADING_STATE) == "halted"
    await engine.on_candle(SYMBOL, quiet(2))  # halted: no new entry until an operator resumes
    assert venue.calls_to("create_order") == []


class FlakyEvents:
    """An audit trail whose appends fail while ``down``."""

    def __init__(self) -> None:
        self.rows: list[Event] = []
        self.down = False

    async def append(self, event: Event) -> None:
        if self.down:
            raise StorageUnavailable("database is locked")
        self.rows.append(event)


async def test_the_bus_keeps_delivering_and_writes_what_it_kept_in_order() -> None:
    trail = FlakyEvents()
    bus = EventBus(sink=trail.append)
    delivered: list[Event] = []
    failures: list[str] = []

    async def record(e: Event) -> None:
        delivered.append(e)

    async def halt(error: str) -> None:
        failures.append(error)

    bus.subscribe("*", record)
    bus.on_storage_failure(halt)
    events = [TradingStateChanged(ts_ms=i, previous="a", current="b", reason=str(i), actor="t")
              for i in range(4)]  # fmt: skip

    await bus.publish(events[0])
    trail.down = True
    await bus.publish(events[1])
    await bus.publish(events[2])
    assert delivered == events[:3]  # a fill must reach the engine while the disk is down
    assert trail.rows == events[:1] and bus.unsaved == 2
    assert failures == ["database is locked"]  # once per outage
    trail.down = False
    await bus.publish(events[3])
    assert trail.rows == events  # nothing lost, in publish order
    assert bus.unsaved == 0
