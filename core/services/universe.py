"""The universe of symbols over time: which symbols may take new entries at a candle's close.

One timeline for every mode. A live refresh records its selection at the time it ran; a
backtest records each point-in-time selection at its refresh time. The engine asks
``allows(symbol, close_ms)`` before an entry, so both decide by candle time. Leaving the
universe only stops new entries: an open trade is managed (its exits, its resting orders)
until it closes. Each change is published as ``UniverseChanged``, stored in the audit trail.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping, Sequence

from core.domain.events import UniverseChanged
from core.domain.market import CandleSeries
from core.market.universe import UniverseRules
from core.market.universe_history import refresh_times, universe_schedule
from core.services.bus import EventBus
from core.values import value_class

log = logging.getLogger(__name__)


@value_class(frozen=True, slots=True, kw_only=True)
class UniverseSummary:
    """How the universe went over a run (the backtest report)."""

    refreshes: int
    changes: int  # refreshes that changed the members, the first selection included
    ever_selected: tuple[str, ...]  # sorted
    min_size: int
    max_size: int
    timeline: tuple[UniverseChanged, ...]  # every change, oldest first


class Universe:
    """The selections in force from their times on (see module docstring)."""

    def __init__(self) -> None:
        self._times: list[int] = []
        self._members: list[tuple[str, ...]] = []
        self.ever: set[str] = set()  # every symbol selected at least once
        self.changes = 0  # refreshes that changed the members

    def record(self, at_ms: int, members: Sequence[str]) -> UniverseChanged | None:
        """Make ``members`` (best first) the universe from ``at_ms`` on; return the change
        (None if the members are the same). Times must not go back."""
        if self._times and at_ms < self._times[-1]:
            raise ValueError(f"universe at {at_ms} is before the last one at {self._times[-1]}")
        previous = set(self._members[-1]) if self._members else set()
        ranked = tuple(members)
        current = set(ranked)
        self._times.append(at_ms)
        self._members.append(ranked)
        self.ever |= current
        if current == previous:
            return None
        self.changes += 1
        return UniverseChanged(
            ts_ms=at_ms,
            at_ms=at_ms,
            entered=tuple(s for s in ranked if s not in previous),
            left=tuple(sorted(previous - current)),
            members=ranked,
        )

    def members_at(self, ts_ms: int) -> tuple[str, ...]:
        """Return the universe in force at ``ts_ms`` (empty before the first selection)."""
        i = bisect.bisect_right(self._times, ts_ms) - 1
        return self._members[i] if i >= 0 else ()

    def allows(self, symbol: str, close_ms: int) -> bool:
        """Return whether ``symbol`` may take a new entry on a candle closing at ``close_ms``."""
        return symbol in self.members_at(close_ms)

    @property
    def started(self) -> bool:
        """Return whether a selection was recorded (an empty one too)."""
        return bool(self._members)

    @property
    def current(self) -> tuple[str, ...]:
        """Return the latest selection."""
        return self._members[-1] if self._members else ()

    def summary(self, timeline: Sequence[UniverseChanged] = ()) -> UniverseSummary:
        """Return the counts of this universe so far, with the ``timeline`` of its changes."""
        sizes = [len(m) for m in self._members] or [0]
        return UniverseSummary(
            refreshes=len(self._members),
            changes=self.changes,
            ever_selected=tuple(sorted(self.ever)),
            min_size=min(sizes),
            max_size=max(sizes),
            timeline=tuple(timeline),
        )


async def publish_change(
    bus: EventBus, universe: Universe, at_ms: int, members: Sequence[str]
) -> UniverseChanged | None:
    """Record ``members`` from ``at_ms`` on and publish the change, if any."""
    change = universe.record(at_ms, members)
    if change is not None:
        log.info(
            "universe: %d symbol(s); entered %s; left %s",
            len(change.members),
            ", ".join(change.entered) or "-",
            ", ".join(change.left) or "-",
        )
        await bus.publish(change)
    return change


async def universe_from_history(
    bus: EventBus,
    series: Mapping[str, CandleSeries],
    rules: UniverseRules,
    *,
    start_ms: int,
    end_ms: int,
    every_ms: int,
) -> tuple[Universe, list[UniverseChanged]]:
    """Return a backtest's universe: selected at ``start_ms`` and every ``every_ms`` of candle
    time before ``end_ms``, each time from the candles closed by then (point in time), with
    each change published at its refresh time; and the changes, oldest first."""
    universe = Universe()
    changes = []
    for at_ms, members in universe_schedule(
        series, rules, refresh_times(start_ms, end_ms, every_ms)
    ):
        change = await publish_change(bus, universe, at_ms, members)
        if change is not None:
            changes.append(change)
    return universe, changes
