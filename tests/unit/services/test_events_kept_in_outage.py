"""A process killed while its audit trail cannot be written loses no event: the bus keeps what
the trail refused beside the database (``bot.event_keep``) before it delivers it, and the next
process writes it first.

The hard case is a full disk: it fails only the writes that need a new page, so the engine's
state (a row updated in place) takes a fill whose event the trail refused. Without the keep,
the restart's state has the fill and never publishes it again: a gap in the trail. The other
case, every write refused (read-only): the state never heard of the fill either, the restart
finds it at the venue again, under the same event id, and the trail holds it once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.event_keep import FileEventKeep
from bot.trading import build_engine
from core.domain.enums import OrderStatus
from core.domain.events import Event, OrderCanceled, OrderFilled, TradingStateChanged
from core.errors import StorageUnavailable
from core.ports import StoredEvent
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.fakes import FakeExchange, FlakyState
from tests.unit.services.engine_harness import SYMBOL, ScriptedProvider, at, clean_settings
from tests.unit.services.test_engine_venue_sync import ENTRY, STOP, quiet


class FlakyTrail:
    """The audit trail, whose appends fail while ``down``."""

    def __init__(self, storage: MemoryStorage) -> None:
        self.storage = storage
        self.down = False

    async def append(self, event: Event) -> None:
        if self.down:
            raise StorageUnavailable("the database cannot be used now: database or disk is full")
        await self.storage.events.append(event)


def process(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    venue: FakeExchange,
    trail: FlakyTrail,
    state: FlakyState,
) -> tuple[Engine, EventBus]:
    """One process's engine and bus on the database ``trail`` and ``state`` stand for."""
    bus = EventBus(sink=trail.append, keep=FileEventKeep(tmp_path / "qt.db.unsaved-events"))
    trading_state = TradingStateService(state, bus, venue.clock)  # type: ignore[arg-type]
    bus.on_storage_failure(trading_state.fail_closed)  # as the process wires it
    engine = build_engine(
        clean_settings(monkeypatch, tmp_path),
        clock=venue.clock,
        bus=bus,
        exchange=venue,
        trading_state=trading_state,
        provider=ScriptedProvider(entries={at(0): 1}),
        state=state,  # type: ignore[arg-type]
    )
    return engine, bus


async def entry_fills_in_the_trail(storage: MemoryStorage) -> list[D]:
    return [
        D(str(e.payload["amount"]))
        for e in await storage.events.list_events("order.filled")
        if e.payload["client_order_id"] == ENTRY
    ]


@pytest.mark.parametrize("state_written", [True, False], ids=["disk-full", "read-only"])
async def test_a_fill_published_in_an_outage_reaches_the_trail_once_after_a_kill(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state_written: bool
) -> None:
    storage = MemoryStorage()
    trail, state = FlakyTrail(storage), FlakyState(storage.state)
    venue = FakeExchange(balances={"USDT": D(10_000)}, track_positions=True)
    engine, _ = process(monkeypatch, tmp_path, venue, trail, state)
    await engine.on_candle(SYMBOL, quiet(0))  # the entry is out

    trail.down = True  # the trail's insert needs a page; the state's update may not
    state.down = not state_written
    venue.script_fill(ENTRY, D(100))
    await engine.sync_with_venue()
    assert STOP in venue.orders if state_written else STOP not in venue.orders
    assert await entry_fills_in_the_trail(storage) == []
    # killed here (nothing stops cleanly); the next process starts once the disk has room
    trail.down = state.down = False
    again, bus = process(monkeypatch, tmp_path, venue, trail, state)
    await bus.flush()
    await again.start()
    await again.sync_with_venue()

    assert await entry_fills_in_the_trail(storage) == [D(50)]  # once, as at the venue
    assert again.trades[SYMBOL].amount == D(50)
    assert venue.orders[STOP].is_open  # its stop placed by one process or the other
    assert not (tmp_path / "qt.db.unsaved-events").exists()  # all in the trail: the keep goes
    halts = await storage.events.list_events(TradingStateChanged.topic)
    assert [h.payload["actor"] for h in halts] == ["storage"]  # the outage's halt, kept too


async def test_the_keep_holds_an_event_before_any_subscriber_sees_it(tmp_path: Path) -> None:
    storage = MemoryStorage()
    trail = FlakyTrail(storage)
    keep = FileEventKeep(tmp_path / "qt.db.unsaved-events")
    bus = EventBus(sink=trail.append, keep=keep)
    kept_when_delivered: list[list[str]] = []

    async def engine(e: Event) -> None:  # the state written here may be ahead of the trail
        kept_when_delivered.append([k.event_id for k in keep.left()])

    bus.subscribe(OrderFilled.topic, engine)
    trail.down = True
    fills = [fill(i) for i in range(3)]
    for f in fills:
        await bus.publish(f)

    ids = [f.event_id for f in fills]
    assert kept_when_delivered == [ids[:1], ids[:2], ids]  # each kept once, in order
    trail.down = False
    await bus.flush()
    assert [e.event_id for e in await storage.events.list_events()] == ids
    assert keep.left() == []


async def test_a_keep_that_cannot_be_written_loses_nothing_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = MemoryStorage()
    trail = FlakyTrail(storage)
    bus = EventBus(sink=trail.append, keep=FileEventKeep(tmp_path / "gone" / "qt.db.keep"))
    delivered: list[Event] = []

    async def record(e: Event) -> None:
        delivered.append(e)

    bus.subscribe("*", record)
    trail.down = True
    await bus.publish(fill(0))  # the keep's folder is gone: an OSError, said, not raised
    assert delivered == [fill(0)] and bus.unsaved == 1
    assert "cannot be kept either" in caplog.text
    trail.down = False
    await bus.publish(fill(1))
    assert [e.event_id for e in await storage.events.list_events()] == ["f0", "f1"]


def fill(i: int) -> OrderFilled:
    return OrderFilled(
        event_id=f"f{i}",
        ts_ms=at(i),
        fill_ts_ms=at(i),
        client_order_id=ENTRY,
        symbol=SYMBOL,
        side="buy",
        amount=D(1),
        price=D(100),
        fee=D(0),
        liquidity="taker",
    )


class CountedTrail(FlakyTrail):
    """The audit trail, which takes ``room`` more events and then fails (``None``: all)."""

    def __init__(self, storage: MemoryStorage) -> None:
        super().__init__(storage)
        self.room: int | None = None

    async def append(self, event: Event) -> None:
        if self.room is not None:
            if self.room == 0:
                raise StorageUnavailable("the database cannot be used now: database is full")
            self.room -= 1
        await super().append(event)


async def test_kills_between_partial_flushes_leave_every_event_once_in_order(
    tmp_path: Path,
) -> None:
    storage = MemoryStorage()
    trail = CountedTrail(storage)
    path = tmp_path / "qt.db.unsaved-events"

    def bus() -> EventBus:
        return EventBus(sink=trail.append, keep=FileEventKeep(path))

    first = bus()
    trail.room = 0
    for i in range(5):
        await first.publish(fill(i))  # all kept; killed
    second = bus()
    trail.room = 2
    await second.flush()  # f0, f1 written, then the database fails again
    assert second.unsaved == 3
    await second.publish(fill(5))  # kept after those still kept; killed
    third = bus()
    assert [e.event_id for e in FileEventKeep(path).left()] == [f"f{i}" for i in range(6)]
    trail.room = 1
    await third.flush()  # f0 again (the trail ignores it), then fails; killed
    fourth = bus()
    trail.room = None
    await fourth.flush()
    await fourth.publish(fill(6))

    written = [e.event_id for e in await storage.events.list_events()]
    assert written == [f"f{i}" for i in range(7)]  # each once, in publish order
    assert not path.exists() and fourth.unsaved == 0


async def test_a_kept_event_holds_no_secret(tmp_path: Path) -> None:
    from core.redaction import REDACTED, Redactor, install_redactor, process_redactor

    key = "KEY-0123456789abcdef"
    storage = MemoryStorage()
    trail = FlakyTrail(storage)
    path = tmp_path / "qt.db.unsaved-events"
    bus = EventBus(sink=trail.append, keep=FileEventKeep(path))
    before = process_redactor()
    install_redactor(Redactor([key]))
    try:
        trail.down = True
        why = f"venue said: ?apiKey={key}"
        await bus.publish(
            TradingStateChanged(ts_ms=1, previous="active", current="halted", reason=why, actor="x")
        )
    finally:
        install_redactor(before)
    text = path.read_bytes()
    assert key.encode() not in text and key[:12].encode() not in text
    trail.down = False
    await EventBus(sink=trail.append, keep=FileEventKeep(path)).flush()  # the next process
    [event] = await storage.events.list_events(TradingStateChanged.topic)
    assert event.payload["reason"] == f"venue said: ?apiKey={REDACTED}"


class ThreadedKeep(FileEventKeep):
    """The file keep, saying which thread wrote it and letting a test hold a write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.threads: list[threading.Thread] = []
        self.hold: threading.Event | None = None
        self.holding = threading.Event()

    def add(self, events: Sequence[StoredEvent]) -> None:
        self.threads.append(threading.current_thread())
        if self.hold is not None:
            self.holding.set()
            self.hold.wait(timeout=10)  # on the loop's thread, nothing could release it
        super().add(events)


async def test_the_keep_is_written_off_the_event_loop(tmp_path: Path) -> None:
    # A synced write takes milliseconds (2.3 ms each on the suite's box: 23 s of a frozen
    # loop for 10k events), seconds on a failing disk: stops and exits must not wait.
    trail = FlakyTrail(MemoryStorage())
    keep = ThreadedKeep(tmp_path / "qt.db.unsaved-events")
    bus = EventBus(sink=trail.append, keep=keep)
    trail.down = True
    await bus.publish(fill(0))
    assert keep.threads and threading.current_thread() not in keep.threads
    assert [e.event_id for e in keep.left()] == ["f0"]


async def test_an_event_published_while_the_keep_is_written_is_kept_too(tmp_path: Path) -> None:
    trail = FlakyTrail(MemoryStorage())
    keep = ThreadedKeep(tmp_path / "qt.db.unsaved-events")
    bus = EventBus(sink=trail.append, keep=keep)
    trail.down = True
    keep.hold = threading.Event()
    first = asyncio.create_task(bus.publish(fill(0)))
    await asyncio.to_thread(keep.holding.wait)  # f0's write under way
    second = asyncio.create_task(bus.publish(fill(1)))  # another task publishes meanwhile
    await asyncio.sleep(0)
    keep.hold.set()
    await asyncio.gather(first, second)
    assert [e.event_id for e in FileEventKeep(keep.path).left()] == ["f0", "f1"]


async def entered(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[MemoryStorage, FlakyTrail, FlakyState, FakeExchange, Engine]:
    """A process whose entry filled, its stop and ladder out and saved, its database up."""
    storage = MemoryStorage()
    trail, state = FlakyTrail(storage), FlakyState(storage.state)
    venue = FakeExchange(balances={"USDT": D(10_000)}, track_positions=True)
    engine, _ = process(monkeypatch, tmp_path, venue, trail, state)
    await engine.on_candle(SYMBOL, quiet(0))
    venue.script_fill(ENTRY, D(100))
    await engine.sync_with_venue()
    return storage, trail, state, venue, engine


async def test_a_close_found_outside_our_orders_in_an_outage_is_in_the_trail_once_after_a_kill(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage, trail, state, venue, engine = await entered(monkeypatch, tmp_path)
    trade_id = engine.trades[SYMBOL].trade_id

    venue.positions = []  # closed by hand: no order of ours
    await engine.sync_with_venue()
    venue.clock.advance_to(venue.clock.now_ms() + 61_000)
    trail.down = state.down = True  # the close is found and booked during a full disk
    await engine.sync_with_venue()
    assert SYMBOL not in engine.trades
    # killed here; the next process's state still holds the trade, flat at the venue
    trail.down = state.down = False
    again, bus = process(monkeypatch, tmp_path, venue, trail, state)
    await bus.flush()
    await again.start()
    for _ in range(2):
        await again.sync_with_venue()
        venue.clock.advance_to(venue.clock.now_ms() + 61_000)

    outside = [
        e.payload["amount"]
        for e in await storage.events.list_events(OrderFilled.topic)
        if e.payload["client_order_id"] not in (ENTRY,)
    ]
    assert outside == ["50"]  # one close at the venue, one in the trail
    closes = await storage.events.list_events("trade.closed")
    assert [e.payload["trade_id"] for e in closes] == [trade_id]


async def test_an_order_the_venue_ended_in_an_outage_is_in_the_trail_once_after_a_kill(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage, trail, state, venue, engine = await entered(monkeypatch, tmp_path)
    tp1 = engine.trades[SYMBOL].working["TP1"]

    trail.down = state.down = True
    venue.orders[tp1] = venue.orders[tp1].with_(status=OrderStatus.CANCELED)  # the venue's own
    await engine.sync_with_venue()
    # killed here; the next process's state still waits on the order
    trail.down = state.down = False
    again, bus = process(monkeypatch, tmp_path, venue, trail, state)
    await bus.flush()
    await again.start()
    await again.sync_with_venue()

    ended = [
        e.payload["reason"]
        for e in await storage.events.list_events(OrderCanceled.topic)
        if e.payload["client_order_id"] == tp1
    ]
    assert ended == ["venue: canceled"]
