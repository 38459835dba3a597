"""The in-process event bus.

Events are dispatched in publish order to subscribers whose topic pattern matches (exact topic,
a dotted prefix ending in ``.*``, or ``*``). An event published by a subscriber is persisted at
once but delivered after the current event has reached all its subscribers, so every
subscriber sees events in the order they were published. Each task delivers what it publishes
itself, in line: one task's subscriber waiting on a slow venue (a fill's stop) holds up no
other task's events, and a fill is handled in the task that published it (the engine's work on
that symbol, under its lock), never left to whichever task was dispatching (its publisher went
on as if the fill were booked: a take-profit that had filled was placed again). A failing
subscriber (an exception, or SystemExit) is logged and isolated: the others still run. Every
event is first handed to the persistence sink (the audit trail), so an event that reached any
subscriber is also on disk, except while the database cannot be written: then events are kept
in memory (and written, in order, once it can be) and trading fails closed
(``on_storage_failure``); the keep (``core.ports.EventKeep``, a file beside the database) holds
them too, so a process killed during the outage leaves them to the next, which writes them
first. An event that would reach nothing (no audit sink, no subscriber: a
backtest's exit plans) is not delivered, and the publishers of the frequent events do not even
build it (``wants``); with the sink every event is wanted, so the live process's audit trail
misses none.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from itertools import islice

from core.domain.events import Event
from core.errors import StorageUnavailable
from core.ports import EventKeep, StoredEvent, stored_event
from core.redaction import process_redactor
from core.values import value_class

log = logging.getLogger(__name__)

Handler = Callable[[Event], Awaitable[None]]
Sink = Callable[[Event | StoredEvent], Awaitable[None]]


@value_class(frozen=True, slots=True, eq=False)  # each one itself, by identity
class _Subscription:
    pattern: str
    handler: Handler
    name: str

    def matches(self, topic: str) -> bool:
        if self.pattern == "*":
            return True
        if self.pattern.endswith(".*"):
            return topic.startswith(self.pattern[:-1])
        return topic == self.pattern


class EventBus:
    """Publish events to subscribers in order; persist each one through ``sink`` first."""

    def __init__(self, sink: Sink | None = None, keep: EventKeep | None = None) -> None:
        self._sink = sink
        self._subs: list[_Subscription] = []
        # Matching every pattern per event showed in backtest profiles; topics are few and
        # subscriptions rarely change, so the matching subscribers are cached per topic.
        self._by_topic: dict[str, tuple[_Subscription, ...]] = {}
        self.published = 0
        self.handler_failures = 0
        # By task: the events its dispatch loop delivers next (published by the subscribers
        # it runs). Each task delivers its own: a subscriber one task awaits (a fill's stop
        # at a slow venue) holds up no other task's events, and a fill is handled in the
        # task that published it (the one working its symbol).
        self._queues: dict[object, deque[Event]] = {}
        # Published while the database was unavailable (first: those a killed process kept).
        self._unsaved: deque[Event | StoredEvent] = deque()
        self._keep = keep if sink is not None else None
        # How many of them, from the first, the keep holds (it may hold some written since),
        # and whether it holds any (then it goes once all are written).
        self._kept = 0
        self._keep_used = False
        if self._keep is not None:
            self._unsaved.extend(self._keep.left())
            self._kept = len(self._unsaved)
            self._keep_used = bool(self._unsaved)
        self._failing = False
        self._storage_failed: list[Callable[[str], Awaitable[None]]] = []
        self._sink_lock = asyncio.Lock()

    def subscribe(
        self, pattern: str, handler: Handler, name: str | None = None
    ) -> Callable[[], None]:
        """Call ``handler`` for every event whose topic matches ``pattern``; return the call
        that ends this subscription (a subscriber listening for a while only)."""
        sub = _Subscription(pattern, handler, name or str(getattr(handler, "__name__", "?")))
        self._subs.append(sub)
        # Kept up to date rather than dropped: a backtest's jobs subscribe for each run.
        for topic, subs in self._by_topic.items():
            if sub.matches(topic):
                self._by_topic[topic] = (*subs, sub)

        def unsubscribe() -> None:
            self._subs = [s for s in self._subs if s is not sub]
            for topic, subs in self._by_topic.items():
                self._by_topic[topic] = tuple(s for s in subs if s is not sub)

        return unsubscribe

    def wants(self, topic: str) -> bool:
        """Return whether an event of ``topic`` would reach anything: the audit trail (with a
        sink, every event does: the live process loses none) or a subscriber.

        Publishers of the frequent events ask first and build the event only when it is
        wanted: a backtest has no audit trail, and some of them (the exit plans) reach nobody
        there. An event nobody wants is dropped by ``publish`` too (not counted in
        ``published``).
        """
        return self._sink is not None or bool(self._subscribers(topic))

    async def publish(self, event: Event) -> None:
        """Persist the event, then deliver it (and anything its subscribers publish meanwhile)
        in order, in this task.

        Secrets are masked first (``core.redaction``): no error text that carries an API key
        reaches the audit trail or a subscriber (chat, the console).
        """
        if self._sink is None and not self._subscribers(event.topic):
            return  # it would reach nothing: no audit trail, no subscriber
        event = process_redactor().value(event)
        if self._sink is not None:
            await self._persist(event)
        self.published += 1
        task = asyncio.current_task()
        queue = self._queues.get(task)
        if queue is not None:
            queue.append(event)
            return  # this task's dispatch loop, running a subscriber, delivers it next
        queue = self._queues[task] = deque((event,))
        try:
            # Delivered in line, not through a coroutine per event: the bus carries tens of
            # thousands in a backtest.
            while queue:
                queued = queue.popleft()
                for sub in self._subscribers(queued.topic):
                    try:
                        await sub.handler(queued)
                    except StorageUnavailable as e:  # an outage: its error names the database
                        self.handler_failures += 1
                        log.error("subscriber %s failed on %s: %s", sub.name, queued.topic, e)
                    # Isolate: one broken subscriber must not stop the others. SystemExit
                    # too: rich raises it on a closed stdout, and a console must not end the
                    # process mid-candle. Cancellation and Ctrl-C (KeyboardInterrupt) still
                    # propagate.
                    except (Exception, SystemExit):
                        self.handler_failures += 1
                        log.exception("subscriber %s failed on %s", sub.name, queued.topic)
        finally:
            del self._queues[task]

    def on_storage_failure(self, handler: Callable[[str], Awaitable[None]]) -> None:
        """Call ``handler`` (with the error) when the audit trail cannot be written: once per
        outage. The process fails closed there (trading halts)."""
        self._storage_failed.append(handler)

    async def flush(self) -> None:
        """Write the events waiting for the audit trail (at start: those a process killed
        during an outage kept); a database still unavailable halts trading as a publish does."""
        if self._sink is not None and self._unsaved:
            await self._persist(None)

    async def _persist(self, event: Event | None) -> None:
        """Write ``event`` (and any kept from an outage, first) to the audit trail.

        A database that cannot be written (``StorageUnavailable``) must neither lose the event
        nor stop the process: the event is kept in memory and in the keep, in order, and
        written with the next one that succeeds; it is still delivered (a fill must reach the
        engine), and the storage-failure handlers halt trading. Any other sink error is a bug:
        it propagates.
        """
        assert self._sink is not None  # noqa: S101 - the caller checked
        if event is not None:
            self._unsaved.append(event)
        error: StorageUnavailable | None = None
        async with self._sink_lock:  # tasks publishing at once write in publish order
            try:
                while self._unsaved:
                    await self._sink(self._unsaved[0])
                    self._unsaved.popleft()
                    self._kept = max(0, self._kept - 1)
            except StorageUnavailable as exc:
                error = exc
                # Kept before the event is delivered: what its subscribers write (the engine's
                # state, which a full disk may still take) is never ahead of the trail's keep.
                await self._keep_unsaved()
        if error is None:
            self._failing = False
            if self._keep_used:
                self._forget_kept()
            return
        log.error("audit trail not writable, %d event(s) kept: %s", len(self._unsaved), error)
        if not self._failing:
            self._failing = True
            for handler in self._storage_failed:
                await handler(str(error))

    async def _keep_unsaved(self) -> None:
        """Add to the keep the unsaved events it does not hold yet (call with the sink lock
        held: nothing is written, so nothing leaves the front of ``_unsaved`` meanwhile)."""
        if self._keep is None:
            return
        new = [stored_event(e) for e in islice(self._unsaved, self._kept, None)]
        if not new:
            return
        try:
            # In a thread: a synced write takes milliseconds (seconds on a failing disk), and
            # the loop has stops and exits to send meanwhile. Publishers go on appending to
            # ``_unsaved`` while it runs: only these are kept by it.
            await asyncio.to_thread(self._keep.add, new)
        except OSError as e:
            log.critical(
                "%d event(s) the audit trail refused cannot be kept either (%s): "
                "a crash now would lose them",
                len(new),
                e,
            )
            return
        self._kept += len(new)
        self._keep_used = True

    def _forget_kept(self) -> None:
        """All kept events are in the audit trail: the keep may go (failing that, the next
        process writes them again, which the trail ignores: idempotent on event id)."""
        assert self._keep is not None  # noqa: S101 - events are kept only with a keep
        try:
            self._keep.clear()
        except OSError as e:
            log.warning("the kept events are in the audit trail, their keep stays: %s", e)
            return
        self._keep_used = False

    @property
    def unsaved(self) -> int:
        """Return how many events wait in memory for the audit trail to be writable again."""
        return len(self._unsaved)

    def _subscribers(self, topic: str) -> tuple[_Subscription, ...]:
        subs = self._by_topic.get(topic)
        if subs is None:
            subs = self._by_topic[topic] = tuple(s for s in self._subs if s.matches(topic))
        return subs
