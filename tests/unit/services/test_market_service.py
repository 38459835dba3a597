"""The market loop publishes the gaps its feed finds, once each, before the next candle."""

from __future__ import annotations

import numpy as np

from core.clock import SimClock
from core.domain.events import CandleClosed, DataGapDetected, Event
from core.domain.market import CandleSeries
from core.market.feeds import ReplayFeed
from core.services.bus import EventBus
from core.services.market import MarketService

HOUR_MS = 3_600_000
T0 = 1_704_067_200_000


async def test_gaps_are_published_before_the_candle_after_them() -> None:
    opens = [T0 + i * HOUR_MS for i in (0, 1, 4, 5)]  # candles 2 and 3 are missing
    n = len(opens)
    series = CandleSeries.from_columns(
        "BTC/USDT",
        "1h",
        opens,
        np.ones(n),
        np.full(n, 2.0),
        np.full(n, 0.5),
        np.ones(n),
        np.ones(n),
    )
    clock = SimClock(T0)
    bus = EventBus()
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    bus.subscribe("market.*", record)
    feed = ReplayFeed({"BTC/USDT": series}, clock, drive_clock=True)
    await MarketService(
        feed=feed, clock=clock, candles=None, bus=bus, source="t", timeframe="1h"
    ).run()

    kinds = [(type(e).__name__, e.open_ms if isinstance(e, CandleClosed) else None) for e in seen]
    assert kinds == [
        ("CandleClosed", opens[0]),
        ("CandleClosed", opens[1]),
        ("DataGapDetected", None),
        ("CandleClosed", opens[2]),
        ("CandleClosed", opens[3]),
    ]
    [gap] = [e for e in seen if isinstance(e, DataGapDetected)]
    assert (gap.from_ms, gap.to_ms, gap.missing) == (opens[1], opens[2], 2)


async def test_before_batch_gets_each_close_s_candles_before_the_first_is_handled() -> None:
    from collections.abc import Sequence

    from core.domain.market import Candle
    from core.market.synthetic import generate_candles

    series = {
        s: generate_candles(s, "1h", 3, seed=i, start_ms=T0) for i, s in enumerate(("A/U", "B/U"))
    }
    clock = SimClock(T0)
    bus = EventBus()
    seen: list[object] = []

    async def record(event: Event) -> None:
        if isinstance(event, CandleClosed):
            seen.append((event.symbol, event.open_ms))

    async def batch(candles: Sequence[tuple[str, Candle]]) -> None:
        seen.append([(s, c.ts_ms) for s, c in candles])

    bus.subscribe("market.*", record)
    market = MarketService(
        feed=ReplayFeed(series, clock, drive_clock=True),
        clock=clock,
        candles=None,
        bus=bus,
        source="t",
        timeframe="1h",
    )
    market.before_batch(batch)
    await market.run()
    expected: list[object] = []
    for i in range(3):
        both = [("A/U", T0 + i * HOUR_MS), ("B/U", T0 + i * HOUR_MS)]
        expected += [both, *both]
    assert seen == expected
