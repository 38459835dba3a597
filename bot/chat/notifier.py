"""Push alerts: bus events rendered (``bot.chat.render``), batched, rate-limited, sent to every
push target (Telegram, Discord), each on its own lane so one that fails delays no other.

- **Loudness** per kind (``QT__CHAT__ALERTS``): loud (a notification), silent (delivered
  quietly) or off. A batch is loud if any of its messages is.
- **Rate limits**: a lane sends at most one message per ``min_interval_s`` (1 s: Telegram's
  per-chat limit; Discord's 5 per 5 s per channel is looser); what arrives meanwhile waits and
  goes out as one message, its lines joined up to ``max_chars`` (the platforms' limits are
  4,096 and 2,000 characters: the front ends split what is longer).
- **Nothing lost**: a failed send (network, 429, a revoked token) keeps its batch first in line
  and retries with exponential backoff up to ``max_backoff_s``; a backlog past ``max_backlog``
  messages collapses its oldest into one line of counts per kind, so a storm of fills can
  neither get the bot banned nor grow without bound.
- Never in the way: the handler only appends to the lanes; sending is each lane's own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.chat.push import PushTarget
from bot.chat.render import ALERT_KINDS, TOPICS, Push, Renderer
from core.domain.events import Event
from core.services.bus import EventBus
from core.services.commands import Reply

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Item:
    push: Push
    silent: bool
    collapsed: Counter[str] | None = None  # a summary line standing for older messages
    photo: bytes | None = None  # a report's chart: sent on its own, never batched


@dataclass(slots=True)
class _Lane:
    target: PushTarget
    pending: list[_Item] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    failures: int = 0
    last_sent_s: float | None = None


class Notifier:
    """Subscribe to the bus and push what it renders (see module docstring)."""

    def __init__(
        self,
        bus: EventBus,
        targets: Sequence[PushTarget],
        *,
        loudness: Mapping[str, str] | None = None,
        min_interval_s: float = 1.0,
        max_chars: int = 3_500,
        max_backlog: int = 500,
        max_backoff_s: float = 300.0,
        push_timeout_s: float = 30.0,
        max_attempts: int = 8,
        drain_s: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self._targets = targets  # read at start: front ends added until then are served
        self._lanes: list[_Lane] = []
        self._loudness = {**ALERT_KINDS, **(loudness or {})}
        self._min_interval_s = min_interval_s
        self._max_chars = max_chars
        self._max_backlog = max_backlog
        self._max_backoff_s = max_backoff_s
        self._push_timeout_s = push_timeout_s  # a target that hangs fails, like one that raises
        self._max_attempts = max_attempts  # then the batch is given up (logged): the rest goes
        self._drain_s = drain_s  # at stop: what waits is sent for this long
        self._sleep = sleep
        self._wall = wall
        self._renderer = Renderer()

    @property
    def lanes(self) -> list[_Lane]:
        """Return each target's lane (what waits, when it last sent)."""
        return self._lanes

    async def start(self) -> None:
        """Subscribe and start one sending task per target (none: nothing to do)."""
        self._lanes = [_Lane(t) for t in self._targets]
        if not self._lanes:
            return
        for topic in TOPICS:
            self._bus.subscribe(topic, self.on_event, name="notifier")
        for lane in self._lanes:
            lane.task = asyncio.create_task(self._run(lane), name=f"push-{lane.target.name}")

    async def on_event(self, event: Event) -> None:
        """Queue the event's message on every lane (unless its kind is off)."""
        push = self._renderer.render(event)
        if push is None:
            return
        loudness = self._loudness.get(push.kind, "loud")
        if loudness == "off":
            return
        for lane in self._lanes:
            lane.pending.append(_Item(push, silent=loudness == "silent"))
            if len(lane.pending) > self._max_backlog:
                self._collapse(lane)
            lane.wake.set()

    async def report(self, reply: Reply) -> int:
        """Queue a scheduled report (with its chart, loud unless set otherwise) on every lane;
        return how many (0: none, or reports are off)."""
        loudness = self._loudness.get("report", "loud")
        if loudness == "off":
            return 0
        push = Push("report", reply.text())
        for lane in self._lanes:
            lane.pending.append(_Item(push, silent=loudness == "silent", photo=reply.photo))
            lane.wake.set()
        return len(self._lanes)

    def _collapse(self, lane: _Lane) -> None:
        """Fold the oldest half of the backlog into one line of counts per kind (a report's
        chart is dropped, its text counted)."""
        cut = len(lane.pending) // 2
        old, lane.pending = lane.pending[:cut], lane.pending[cut:]
        counts: Counter[str] = Counter()
        for item in old:
            counts.update(item.collapsed or {item.push.kind: 1})
        summary = _Item(Push("backlog", ""), silent=all(i.silent for i in old), collapsed=counts)
        lane.pending.insert(0, summary)

    async def _run(self, lane: _Lane) -> None:
        backoff, attempts = 0.0, 0
        while True:
            if not lane.pending:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            if lane.last_sent_s is not None:
                wait = lane.last_sent_s + self._min_interval_s - self._wall()
                if wait > 0:
                    await self._sleep(wait)  # meanwhile more arrives: one message for all
            batch = self._take(lane)
            try:
                await self._send(lane, batch)
            except Exception as e:  # noqa: BLE001 - any failure of a front end: retry later
                attempts += 1
                lane.failures += 1
                if attempts >= self._max_attempts:
                    # The same batch failing every time (a 400 "too long"): not the chat's
                    # outage but this message; the ones behind it (a HALT) must still go.
                    log.error(
                        "push to %s gave up after %d tries (%s: %s): %s",
                        lane.target.name,
                        attempts,
                        type(e).__name__,
                        e,
                        "; ".join(_line(i) for i in batch)[:300],
                    )
                    backoff, attempts = 0.0, 0
                    continue
                lane.pending[:0] = batch  # first in line again: nothing lost
                backoff = min(self._max_backoff_s, max(1.0, backoff * 2))
                log.warning(
                    "push to %s failed (%s: %s); retrying in %.0f s",
                    lane.target.name,
                    type(e).__name__,
                    e,
                    backoff,
                )
                await self._sleep(backoff)
                continue
            backoff, attempts = 0.0, 0
            lane.last_sent_s = self._wall()

    async def _send(self, lane: _Lane, batch: list[_Item]) -> None:
        """Push one batch; a target that hangs past the timeout, or raises CancelledError
        while this lane is not being stopped, has failed (raised as an ordinary error)."""
        text = "\n".join(_line(i) for i in batch)
        silent = all(i.silent for i in batch)
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow our own cancel when
            # the push finishes at the same moment, and the stop would wait for ever.
            async with asyncio.timeout(self._push_timeout_s):
                await lane.target.push(text, silent=silent, photo=batch[0].photo)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                lane.pending[:0] = batch  # our own stop: kept for the drain
                raise
            raise ConnectionError("the push was cancelled by the front end") from None

    def _take(self, lane: _Lane) -> list[_Item]:
        """Take the oldest messages that fit one message."""
        size, out = 0, list[_Item]()
        if lane.pending[0].photo is not None:
            return [lane.pending.pop(0)]  # a chart goes with its own text only
        while lane.pending:
            n = len(_line(lane.pending[0])) + 1
            if out and (size + n > self._max_chars or lane.pending[0].photo is not None):
                break
            out.append(lane.pending.pop(0))
            size += n
        return out

    async def stop(self) -> None:
        """Send what waits for up to ``drain_s`` (one try each lane), then stop the lanes."""
        for lane in self._lanes:
            if lane.task is not None:
                lane.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
                lane.task = None

        async def drain(lane: _Lane) -> None:
            while lane.pending:
                batch = self._take(lane)
                try:
                    await self._send(lane, batch)
                except Exception:  # noqa: BLE001 - shutting down: one try, then logged
                    lane.pending[:0] = batch
                    return

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._drain_s):
                await asyncio.gather(*(drain(lane) for lane in self._lanes))
        for lane in self._lanes:
            if lane.pending:
                name, n = lane.target.name, len(lane.pending)
                log.warning("%d push message(s) to %s not sent", n, name)


def _line(item: _Item) -> str:
    if item.collapsed is not None:
        kinds = ", ".join(f"{n} {kind}" for kind, n in item.collapsed.most_common())
        return f"({sum(item.collapsed.values())} older messages collapsed: {kinds})"
    return item.push.text
