"""The live universe refresh (``qt run``): the venue's tickers in, a ranked selection out.

At start and every ``QT__UNIVERSE__REFRESH_HOURS`` (a job) it asks the venue for every market's
24 h volume, selects by the rules (``core.market.universe``), warms the symbols that enter up
(their candles, before the gate lets them trade) and records the selection from now on, which
publishes ``universe.changed``. A venue that cannot answer keeps the last universe (one log
line); the next refresh tries again.

Listing ages: a venue that does not say when a market was listed gets asked for its first daily
candle, only for the best-ranked symbols that could still make the cut, and only once per
symbol (a listing does not move).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from core.clock import Clock
from core.errors import DataError, DependencyError
from core.market.universe import DAY_MS, Candidate, UniverseRules, select_universe
from core.services.bus import EventBus
from core.services.universe import Universe, publish_change

log = logging.getLogger(__name__)

EnterHook = Callable[[Sequence[str]], Awaitable[None]]


class UniverseSource(Protocol):
    """Where the candidates come from (``CcxtMarketData``)."""

    async def universe_candidates(self) -> list[Candidate]:
        """Return every market of the traded type with its 24 h volume and price."""
        ...

    async def listed_since(self, symbol: str, since_ms: int) -> int | None:
        """Return the open time of the first daily candle at or after ``since_ms``."""
        ...


class UniverseRefresher:
    """Refresh a live universe from a source (see module docstring)."""

    def __init__(
        self,
        *,
        source: UniverseSource,
        rules: UniverseRules,
        universe: Universe,
        clock: Clock,
    ) -> None:
        self._source = source
        self._rules = rules
        self.universe = universe
        self._clock = clock
        self._listed: dict[str, int] = {}  # symbol -> listed at or before this time
        self.on_enter: EnterHook | None = None  # warms symbols up before they may trade

    async def select(self) -> tuple[str, ...]:
        """Return the selection now (raises the source's DependencyError or DataError)."""
        now = self._clock.now_ms()
        candidates = await self._source.universe_candidates()
        if self._rules.min_listing_days > 0:
            candidates = await self._with_ages(candidates, now)
        return select_universe(candidates, self._rules, now)

    async def refresh(self, bus: EventBus) -> str:
        """Select, warm the entering symbols up, record and publish on ``bus``; return a
        one-line summary ("" when nothing changed). On a venue failure keep the last
        universe."""
        try:
            selected = await self.select()
            entered = [s for s in selected if s not in self.universe.current]
            if entered and self.on_enter is not None:
                await self.on_enter(entered)
        except (DependencyError, DataError) as e:
            kept = len(self.universe.current)
            log.warning("universe refresh failed, keeping the last one (%d symbols): %s", kept, e)
            return f"refresh failed, kept {kept} symbol(s): {e}"
        change = await publish_change(bus, self.universe, self._clock.now_ms(), selected)
        if change is None:
            return ""
        return (
            f"{len(change.members)} symbol(s); entered {', '.join(change.entered) or '-'}; "
            f"left {', '.join(change.left) or '-'}"
        )

    async def _with_ages(self, candidates: list[Candidate], now_ms: int) -> list[Candidate]:
        """Fill in the listing of unknown-age candidates, best first, until the top N are
        known to pass or fail the age filter."""
        min_age_ms = int(self._rules.min_listing_days * DAY_MS)
        ageless = dataclasses.replace(self._rules, min_listing_days=0, top_n=len(candidates) or 1)
        by_symbol = {c.symbol: c for c in candidates}
        passed = 0
        for symbol in select_universe(candidates, ageless, now_ms):
            if passed >= self._rules.top_n:
                break
            c = by_symbol[symbol]
            listed = c.listed_ms if c.listed_ms is not None else self._listed.get(symbol)
            if listed is None:
                since = now_ms - min_age_ms - DAY_MS
                try:
                    first = await self._source.listed_since(symbol, since)
                except DataError as e:  # this symbol's answer (no klines yet): not the others'
                    log.warning("%s: listing unknown (%s); not eligible this refresh", symbol, e)
                    first = None
                if first is not None and first <= now_ms - min_age_ms:
                    self._listed[symbol] = first  # old enough, now and at every later refresh
                listed = first
            if listed is not None and now_ms - listed >= min_age_ms:
                passed += 1
            by_symbol[symbol] = dataclasses.replace(c, listed_ms=listed)
        return list(by_symbol.values())
