"""The live refresh: select from the venue, warm entering symbols up before they may trade,
publish the change; a venue that cannot answer keeps the last universe with one log line;
listing ages unknown to the venue come from the first daily candle, asked once."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from core.clock import SimClock
from core.domain.events import Event, UniverseChanged
from core.errors import DependencyError
from core.market.universe import DAY_MS, Candidate, UniverseRules
from core.services.bus import EventBus
from core.services.universe import Universe
from core.services.universe_refresh import UniverseRefresher

NOW = 1_735_689_600_000


def cand(symbol: str, volume: float, listed_ms: int | None = NOW - 400 * DAY_MS) -> Candidate:
    return Candidate(
        symbol=symbol, quote="USDT", quote_volume=volume, last_price=1.0, listed_ms=listed_ms
    )


class Venue:
    def __init__(self) -> None:
        self.candidates: list[Candidate] = []
        self.failure: Exception | None = None
        self.first_daily: dict[str, int] = {}
        self.age_calls: list[str] = []

    async def universe_candidates(self) -> list[Candidate]:
        if self.failure is not None:
            raise self.failure
        return list(self.candidates)

    async def listed_since(self, symbol: str, since_ms: int) -> int | None:
        self.age_calls.append(symbol)
        first = self.first_daily.get(symbol)
        return None if first is None else max(first, since_ms)


def setup(**rules: float) -> tuple[Venue, UniverseRefresher, EventBus, list[Event]]:
    venue = Venue()
    refresher = UniverseRefresher(
        source=venue,
        rules=UniverseRules(top_n=2, quote="USDT", **rules),  # type: ignore[arg-type]
        universe=Universe(),
        clock=SimClock(NOW),
    )
    bus = EventBus()
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    bus.subscribe(UniverseChanged.topic, record)
    return venue, refresher, bus, seen


async def test_refresh_publishes_changes_and_warms_entering_symbols_first() -> None:
    venue, refresher, bus, seen = setup()
    warmed: list[tuple[tuple[str, ...], tuple[str, ...]]] = []

    async def warm(symbols: Sequence[str]) -> None:
        warmed.append((tuple(symbols), refresher.universe.current))  # not in yet

    refresher.on_enter = warm
    venue.candidates = [cand("A/USDT", 3), cand("B/USDT", 2), cand("C/USDT", 1)]
    assert await refresher.refresh(bus) == "2 symbol(s); entered A/USDT, B/USDT; left -"
    assert await refresher.refresh(bus) == ""  # nothing changed: no event, no audit row
    venue.candidates = [cand("A/USDT", 3), cand("C/USDT", 9)]
    assert await refresher.refresh(bus) == "2 symbol(s); entered C/USDT; left B/USDT"
    assert warmed == [(("A/USDT", "B/USDT"), ()), (("C/USDT",), ("A/USDT", "B/USDT"))]
    assert [(e.entered, e.left) for e in seen if isinstance(e, UniverseChanged)] == [
        (("A/USDT", "B/USDT"), ()),
        (("C/USDT",), ("B/USDT",)),
    ]


async def test_a_failed_fetch_or_warm_up_keeps_the_last_universe_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    venue, refresher, bus, seen = setup()
    venue.candidates = [cand("A/USDT", 3)]
    await refresher.refresh(bus)
    venue.failure = DependencyError("binance universe: RequestTimeout")
    with caplog.at_level(logging.WARNING):
        summary = await refresher.refresh(bus)
    assert summary == "refresh failed, kept 1 symbol(s): binance universe: RequestTimeout"
    [line] = [r for r in caplog.records if r.name == "core.services.universe_refresh"]
    assert "keeping the last one (1 symbols)" in line.getMessage()

    async def no_candles(_: Sequence[str]) -> None:
        raise DependencyError("warm-up download failed")

    venue.failure = None
    venue.candidates = [cand("B/USDT", 9)]
    refresher.on_enter = no_candles
    assert (await refresher.refresh(bus)).startswith("refresh failed, kept 1 symbol(s)")
    assert refresher.universe.current == ("A/USDT",) and len(seen) == 1


async def test_unknown_listings_are_asked_for_the_best_ranked_only_and_once() -> None:
    venue, refresher, _, _ = setup(min_listing_days=30)
    venue.candidates = [
        cand("NEW/USDT", 9, listed_ms=None),  # listed 10 days ago
        cand("OLD/USDT", 8, listed_ms=None),  # two years
        cand("KNOWN/USDT", 7),  # the venue says
        cand("LOW/USDT", 1, listed_ms=None),  # never needed: the top 2 are full before it
    ]
    venue.first_daily = {"NEW/USDT": NOW - 10 * DAY_MS, "OLD/USDT": NOW - 700 * DAY_MS}
    assert await refresher.select() == ("OLD/USDT", "KNOWN/USDT")
    assert venue.age_calls == ["NEW/USDT", "OLD/USDT"]
    assert await refresher.select() == ("OLD/USDT", "KNOWN/USDT")
    assert venue.age_calls == ["NEW/USDT", "OLD/USDT", "NEW/USDT"]  # old once, always old


async def test_one_symbols_failing_listing_lookup_does_not_freeze_the_universe() -> None:
    from core.errors import DataError

    venue, refresher, _, _ = setup(min_listing_days=30)
    venue.candidates = [cand("NEW/USDT", 9, listed_ms=None), cand("A/USDT", 8), cand("B/USDT", 7)]

    async def no_klines(symbol: str, since_ms: int) -> int | None:
        raise DataError(f"binance fetch_ohlcv {symbol} 1d: BadSymbol")

    venue.listed_since = no_klines  # type: ignore[method-assign]
    assert await refresher.select() == ("A/USDT", "B/USDT")  # NEW is not eligible this time
