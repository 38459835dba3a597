from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest

from core.domain.events import CandleClosed, Event, ProcessStopped, event_payload
from storage.memory import MemoryStorage


def _candle(ts_ms: int) -> CandleClosed:
    return CandleClosed(
        ts_ms=ts_ms,
        symbol="BTC/USDT",
        timeframe="1h",
        open_ms=ts_ms - 3_600_000,
        open=1.0,
        high=2.0,
        low=0.5,
        close=1.5,
        volume=10.0,
    )


async def test_dispatch_in_order_with_patterns_and_persists_first() -> None:
    from core.services.bus import EventBus

    store = MemoryStorage()
    seen: list[str] = []

    async def market(e: Event) -> None:
        stored = await store.events.list_events()
        assert stored[-1].event_id == e.event_id  # persisted before delivery
        seen.append(f"market:{e.ts_ms}")

    async def everything(e: Event) -> None:
        seen.append(f"all:{e.topic}")

    bus = EventBus(sink=store.events.append)
    bus.subscribe("market.*", market)
    bus.subscribe("*", everything)
    bus.subscribe("process.stopped", everything)
    await bus.publish(_candle(1))
    await bus.publish(ProcessStopped(ts_ms=2, reason="test"))
    await bus.publish(_candle(3))
    assert seen == [
        "market:1",
        "all:market.candle_closed",
        "all:process.stopped",
        "all:process.stopped",
        "market:3",
        "all:market.candle_closed",
    ]
    stored = await store.events.list_events()
    assert [s.topic for s in stored] == [
        "market.candle_closed",
        "process.stopped",
        "market.candle_closed",
    ]
    assert stored[1].payload == {"reason": "test"}


async def test_failing_subscriber_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    from core.services.bus import EventBus

    got: list[int] = []

    async def broken(_e: Event) -> None:
        raise ValueError("boom")

    async def healthy(e: Event) -> None:
        got.append(e.ts_ms)

    bus = EventBus()
    bus.subscribe("*", broken)
    bus.subscribe("*", healthy)
    with caplog.at_level(logging.ERROR):
        await bus.publish(_candle(5))
    assert got == [5]
    assert bus.handler_failures == 1
    assert "broken" in caplog.text


async def test_a_subscriber_raising_system_exit_is_isolated_too() -> None:
    # rich raises SystemExit when stdout is a closed pipe (`qt demo | head -2`): the console's
    # subscriber must not end the process mid-candle, before anything was stopped.
    from core.services.bus import EventBus

    got: list[int] = []

    async def console(_e: Event) -> None:
        raise SystemExit(1)

    async def engine(e: Event) -> None:
        got.append(e.ts_ms)

    bus = EventBus()
    bus.subscribe("*", console)
    bus.subscribe("*", engine)
    await bus.publish(_candle(5))
    await bus.publish(_candle(6))
    assert got == [5, 6]
    assert bus.handler_failures == 2


def test_event_payload_is_json_safe() -> None:
    from decimal import Decimal

    from core.domain.events import OrderFilled

    e = OrderFilled(
        ts_ms=1,
        fill_ts_ms=0,
        client_order_id="c1",
        symbol="BTC/USDT",
        side="buy",
        amount=Decimal("0.5"),
        price=Decimal("100.25"),
        fee=Decimal("0.05"),
        liquidity="taker",
    )
    assert event_payload(e) == {
        "fill_ts_ms": 0,
        "client_order_id": "c1",
        "symbol": "BTC/USDT",
        "side": "buy",
        "amount": "0.5",
        "price": "100.25",
        "fee": "0.05",
        "liquidity": "taker",
    }


async def test_events_published_by_subscribers_are_delivered_after_the_current_one() -> None:
    from core.services.bus import EventBus

    store = MemoryStorage()
    bus = EventBus(sink=store.events.append)
    seen: list[str] = []

    async def reacts(e: Event) -> None:
        seen.append(f"first:{e.topic}")
        if isinstance(e, CandleClosed):
            await bus.publish(ProcessStopped(ts_ms=e.ts_ms, reason="nested"))
            # persisted at once, even though delivery waits
            assert (await store.events.list_events())[-1].topic == "process.stopped"

    async def watches(e: Event) -> None:
        seen.append(f"second:{e.topic}")

    bus.subscribe("*", reacts)
    bus.subscribe("*", watches)
    await bus.publish(_candle(1))
    assert seen == [
        "first:market.candle_closed",
        "second:market.candle_closed",
        "first:process.stopped",
        "second:process.stopped",
    ]


async def test_a_subscriber_waiting_in_one_task_holds_up_no_other_tasks_event() -> None:
    """Each task delivers its own events: a fill published while another task's subscriber
    waits at a slow venue is handled at once, in the task that published it."""
    import asyncio

    from core.services.bus import EventBus

    bus = EventBus()
    answer, handled = asyncio.Event(), []

    async def slow_on_first(e: Event) -> None:
        handled.append((e.ts_ms, asyncio.current_task()))
        if e.ts_ms == 1:
            await answer.wait()

    bus.subscribe("*", slow_on_first)
    first = asyncio.create_task(bus.publish(_candle(1)))
    await asyncio.sleep(0)
    second = asyncio.create_task(bus.publish(_candle(2)))
    await asyncio.wait_for(second, 1)  # delivered while the first still waits
    assert [ts for ts, _ in handled] == [1, 2]
    assert handled[1][1] is second  # in its own task
    answer.set()
    await asyncio.wait_for(first, 1)


async def test_events_are_redacted_before_the_audit_trail_and_every_subscriber() -> None:
    from core.domain.events import OrderRejected
    from core.redaction import REDACTED, Redactor, install_redactor, process_redactor
    from core.services.bus import EventBus

    key = "KEY-0123456789abcdef"
    store = MemoryStorage()
    seen: list[Event] = []

    async def chat(e: Event) -> None:
        seen.append(e)

    bus = EventBus(sink=store.events.append)
    bus.subscribe("*", chat)
    before = process_redactor()
    install_redactor(Redactor([key]))
    try:
        await bus.publish(
            OrderRejected(
                ts_ms=1,
                client_order_id="qt-1",
                symbol="BTC/USDT",
                reason=f"htx create_order: BadRequest: GET ...?AccessKeyId={key}",
            )
        )
    finally:
        install_redactor(before)
    [stored] = await store.events.list_events()
    assert (
        stored.payload["reason"] == f"htx create_order: BadRequest: GET ...?AccessKeyId={REDACTED}"
    )
    assert [e.reason for e in seen] == [stored.payload["reason"]]  # type: ignore[attr-defined]


async def test_with_the_audit_sink_every_event_is_wanted_and_stored() -> None:
    # The live process's bus has the audit trail as its sink: nothing is skipped there.
    from core.services.bus import EventBus

    store = MemoryStorage()
    bus = EventBus(sink=store.events.append)
    topics = [c.topic for c in _event_classes()]
    assert len(topics) > 30 and all(bus.wants(t) for t in topics)
    await bus.publish(_candle(1))  # no subscriber at all: stored all the same
    assert [e.topic for e in await store.events.list_events()] == ["market.candle_closed"]
    assert bus.published == 1


async def test_without_a_sink_only_subscribed_topics_are_wanted() -> None:
    from core.services.bus import EventBus

    bus = EventBus()
    got: list[str] = []

    async def note(e: Event) -> None:
        got.append(f"{e.topic}:{e.ts_ms}")

    assert not bus.wants("market.candle_closed")
    await bus.publish(_candle(1))  # reaches nothing: dropped, not counted
    assert bus.published == 0
    bus.subscribe("market.*", note)
    assert bus.wants("market.candle_closed") and not bus.wants("process.stopped")
    await bus.publish(_candle(2))
    await bus.publish(ProcessStopped(ts_ms=3, reason="test"))  # nobody listens to it
    assert got == ["market.candle_closed:2"] and bus.published == 1


async def test_a_subscription_ended_stops_delivery_and_one_added_later_gets_its_topics() -> None:
    from core.services.bus import EventBus

    bus = EventBus()
    got: list[str] = []

    def noting(name: str) -> Callable[[Event], Awaitable[None]]:
        async def note(e: Event) -> None:
            got.append(f"{name}:{e.ts_ms}")

        return note

    bus.subscribe("market.candle_closed", noting("a"))
    await bus.publish(_candle(1))  # the topic's subscribers are now cached
    stop = bus.subscribe("*", noting("all"))
    bus.subscribe("market.*", noting("b"))
    await bus.publish(_candle(2))
    stop()
    assert not bus.wants("process.stopped")
    await bus.publish(_candle(3))
    stop()  # twice: nothing more to end
    assert got == ["a:1", "a:2", "all:2", "b:2", "a:3", "b:3"]


def _event_classes() -> list[type[Event]]:
    import core.domain.events as events

    return [
        c
        for c in vars(events).values()
        if isinstance(c, type) and issubclass(c, Event) and c is not Event
    ]


async def test_a_subscriber_awaiting_another_task_that_publishes_does_not_deadlock() -> None:
    """A subscriber that awaits work in another task (``all_of``'s per-symbol tasks) which
    publishes: that task delivers its event itself, at once; the waiting task's own queue still
    delivers what its subscribers published, in order, after the current event."""
    import asyncio

    from core.services.bus import EventBus

    bus = EventBus()
    seen: list[tuple[str, int]] = []

    async def spawn_on_first(e: Event) -> None:
        if e.ts_ms == 1:
            await bus.publish(_candle(3))  # this task's: delivered after 1 reached everyone
            await asyncio.create_task(bus.publish(_candle(2)))  # another task's: at once

    async def record(e: Event) -> None:
        seen.append(("record", e.ts_ms))

    bus.subscribe("*", spawn_on_first)
    bus.subscribe("*", record)
    await asyncio.wait_for(bus.publish(_candle(1)), 1)
    assert seen == [("record", 2), ("record", 1), ("record", 3)]
