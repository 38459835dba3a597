"""Feeds yield closed candles once, in time order across symbols, and report gaps."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import numpy as np
import pytest

from core.clock import AcceleratedClock, SimClock
from core.domain.events import DataGapDetected
from core.domain.market import Candle, CandleSeries
from core.errors import DependencyError, TemporaryError
from core.market.feeds import PollingFeed, ReplayFeed
from core.market.synthetic import generate_candles

H = 3_600_000
M15 = 900_000
T0 = 1_704_067_200_000


class JumpClock(SimClock):
    """A SimClock that jumps to whatever time a sleeper waits for (no driver task needed)."""

    async def sleep_until(self, ts_ms: int) -> None:
        if ts_ms > self.now_ms():
            self.advance_to(ts_ms)


async def take(feed: ReplayFeed | PollingFeed, n: int | None = None) -> list[tuple[str, Candle]]:
    out: list[tuple[str, Candle]] = []
    async with aclosing(feed.candles()) as it:
        async for item in it:
            out.append(item)
            if n is not None and len(out) >= n:
                break
    return out


def drop_rows(series: CandleSeries, rows: list[int]) -> CandleSeries:
    keep = np.ones(len(series), dtype=bool)
    keep[rows] = False
    return series.mask(keep)


async def test_replay_interleaves_symbols_by_close_time() -> None:
    btc = generate_candles("BTC/USDT", "1h", 5, seed=1, start_ms=T0)
    eth = generate_candles("ETH/USDT", "15m", 20, seed=1, start_ms=T0)
    clock = SimClock(T0)
    got = await take(ReplayFeed({"BTC/USDT": btc, "ETH/USDT": eth}, clock, drive_clock=True))
    assert len(got) == 25
    closes = [c.ts_ms + (H if s == "BTC/USDT" else M15) for s, c in got]
    assert closes == sorted(closes)
    # At 01:00 both a BTC 1h and an ETH 15m candle close: symbol order breaks the tie.
    at_one = [s for (s, c), close in zip(got, closes, strict=True) if close == T0 + H]
    assert at_one == ["BTC/USDT", "ETH/USDT"]
    assert clock.now_ms() == T0 + 5 * H
    assert got[0] == ("ETH/USDT", eth.candle(0))


async def test_replay_waits_for_market_time() -> None:
    series = generate_candles("BTC/USDT", "1h", 3, seed=2, start_ms=T0)
    clock = SimClock(T0)
    got: list[tuple[str, Candle]] = []

    async def consume() -> None:
        async for item in ReplayFeed({"BTC/USDT": series}, clock).candles():
            got.append(item)

    task = asyncio.create_task(consume())
    for _ in range(5):
        await asyncio.sleep(0)
    assert got == []  # nothing has closed yet
    clock.advance_to(T0 + H - 1)
    await asyncio.sleep(0)
    assert got == []
    clock.advance_to(T0 + 2 * H)  # two candles have closed
    for _ in range(5):
        await asyncio.sleep(0)
    assert [c.ts_ms for _, c in got] == [T0, T0 + H]
    clock.advance_to(T0 + 3 * H)
    await asyncio.wait_for(task, timeout=1)
    assert [c.ts_ms for _, c in got] == [T0, T0 + H, T0 + 2 * H]


async def test_replay_reports_gaps_never_fills_them() -> None:
    series = drop_rows(generate_candles("BTC/USDT", "1h", 10, seed=3, start_ms=T0), [3, 4, 7])
    seen: list[DataGapDetected] = []

    async def on_gap(event: DataGapDetected) -> None:
        seen.append(event)

    feed = ReplayFeed({"BTC/USDT": series}, SimClock(T0), on_gap=on_gap, drive_clock=True)
    got = await take(feed)
    assert len(got) == 7
    assert [(g.from_ms, g.to_ms, g.missing) for g in feed.gaps] == [
        (T0 + 2 * H, T0 + 5 * H, 2),
        (T0 + 6 * H, T0 + 8 * H, 1),
    ]
    assert seen == feed.gaps
    assert seen[0].ts_ms == T0 + 6 * H  # published when the candle after the gap closed
    assert seen[0].symbol == "BTC/USDT" and seen[0].timeframe == "1h"


async def test_replay_start_ms_skips_older_candles() -> None:
    series = generate_candles("BTC/USDT", "1h", 6, seed=4, start_ms=T0)
    got = await take(ReplayFeed({"X": series}, SimClock(T0), start_ms=T0 + 4 * H, drive_clock=True))
    assert [c.ts_ms for _, c in got] == [T0 + 4 * H, T0 + 5 * H]


class FakeMarketData:
    """Serve candles of full series whose open time has come (incl. the still-open one)."""

    def __init__(self, series: dict[str, CandleSeries], clock: SimClock) -> None:
        self.series = series
        self.clock = clock
        self.calls: list[tuple[str, int | None, int]] = []
        self.errors: list[Exception] = []

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None, limit: int
    ) -> CandleSeries:
        self.calls.append((symbol, since_ms, limit))
        if self.errors:
            raise self.errors.pop(0)
        visible = self.series[symbol].between(since_ms, self.clock.now_ms() + 1)
        return visible.slice(0, limit)


async def test_polling_yields_only_closed_candles_in_order_with_gaps() -> None:
    btc = drop_rows(generate_candles("BTC/USDT", "1h", 30, seed=5, start_ms=T0), [12])
    eth = generate_candles("ETH/USDT", "1h", 30, seed=6, start_ms=T0)
    clock = JumpClock(T0 + 3 * H + 1_000)  # 03:00:01: candle 02:00 is the newest closed one
    md = FakeMarketData({"BTC/USDT": btc, "ETH/USDT": eth}, clock)
    feed = PollingFeed(md, ["BTC/USDT", "ETH/USDT"], "1h", clock, settle_ms=2_000)
    got = []
    async with aclosing(feed.candles()) as it:
        async for symbol, candle in it:
            assert candle.ts_ms + H <= clock.now_ms()  # closed when yielded
            got.append((symbol, candle.ts_ms))
            if len(got) == 2 * 18 - 1:
                break
    assert got[:2] == [("BTC/USDT", T0 + 2 * H), ("ETH/USDT", T0 + 2 * H)]
    assert got == sorted(got, key=lambda item: (item[1], item[0]))
    assert len(set(got)) == len(got)  # each candle once
    assert ("BTC/USDT", T0 + 12 * H) not in got
    assert [(g.symbol, g.from_ms, g.to_ms, g.missing) for g in feed.gaps] == [
        ("BTC/USDT", T0 + 11 * H, T0 + 13 * H, 1)
    ]


async def test_polling_weekly_candles_starts_at_the_newest_closed_monday_week() -> None:
    week = 7 * 24 * H
    weeks = generate_candles("BTC/USDT", "1w", 6, seed=5, start_ms=T0)  # T0 is a Monday
    clock = JumpClock(T0 + 2 * week + 2 * 24 * H)  # Wednesday of the third week
    feed = PollingFeed(FakeMarketData({"BTC/USDT": weeks}, clock), ["BTC/USDT"], "1w", clock)
    got = await take(feed, 3)
    assert [c.ts_ms for _, c in got] == [T0 + week, T0 + 2 * week, T0 + 3 * week]
    assert feed.gaps == []


async def test_polling_catches_up_page_by_page_from_start_ms() -> None:
    series = generate_candles("BTC/USDT", "15m", 200, seed=7, start_ms=T0)
    clock = JumpClock(T0 + 100 * M15 + 5)
    md = FakeMarketData({"BTC/USDT": series}, clock)
    feed = PollingFeed(md, ["BTC/USDT"], "15m", clock, start_ms=T0, page_limit=30)
    got = await take(feed, 100)
    assert [c.ts_ms for _, c in got] == series.ts_ms[:100].tolist()
    assert clock.now_ms() == T0 + 100 * M15 + 5  # caught up without waiting
    assert [since for _, since, _ in md.calls[:4]] == [T0 + k * 30 * M15 for k in range(4)]


async def test_polling_retries_temporary_errors_and_survives_outages() -> None:
    series = generate_candles("BTC/USDT", "1h", 20, seed=8, start_ms=T0)
    clock = JumpClock(T0 + 2 * H)
    md = FakeMarketData({"BTC/USDT": series}, clock)
    # First poll: two temporary errors (retried); next poll: exhausted retries -> skipped round.
    md.errors = [TemporaryError("net"), TemporaryError("net")]
    feed = PollingFeed(md, ["BTC/USDT"], "1h", clock, attempts=3)
    first = await take(feed, 1)
    assert first[0][1].ts_ms == T0 + H
    assert len(md.calls) == 3

    md.errors = [DependencyError("down")] + [TemporaryError("net")] * 3
    feed2 = PollingFeed(md, ["BTC/USDT"], "1h", clock, start_ms=T0 + 2 * H, attempts=3)
    got = await take(feed2, 3)
    assert [c.ts_ms for _, c in got] == [T0 + 2 * H, T0 + 3 * H, T0 + 4 * H]


@pytest.mark.parametrize("drive", [True, False])
async def test_empty_replay_ends(drive: bool) -> None:
    assert await take(ReplayFeed({}, SimClock(0), drive_clock=drive)) == []


async def test_accelerated_replay_holds_market_time_at_the_close_being_processed() -> None:
    # `qt demo --speed 1000`: processing one candle takes longer in wall time than the clock
    # needs for several candles; market time must still read that candle's close.
    series = generate_candles("BTC/USDT", "1h", 6, seed=4, start_ms=T0)
    wall = SimClock(0)
    clock = AcceleratedClock(start_ms=T0, speed=3_600_000.0, wall=wall)  # 1 wall ms = 1 h
    wall.advance_to(3)  # the wall is always ahead of the candles: no real sleep in this test
    seen: list[tuple[int, int]] = []
    async for _symbol, candle in ReplayFeed({"BTC/USDT": series}, clock).candles():
        wall.advance_to(wall.now_ms() + 3)  # 3 wall ms of work: 3 market hours
        seen.append((candle.ts_ms + H, clock.now_ms()))
    assert [now for _, now in seen] == [close for close, _ in seen]


async def test_polling_follows_a_symbols_function_without_replaying_or_gaps() -> None:
    series = {s: generate_candles(s, "1h", 30, seed=i, start_ms=T0) for i, s in enumerate("AB")}
    clock = JumpClock(T0 + 3 * H + 1_000)
    md = FakeMarketData({f"{s}/USDT": ser for s, ser in series.items()}, clock)
    wanted = ["A/USDT"]
    feed = PollingFeed(md, lambda: wanted, "1h", clock, settle_ms=2_000)
    got: list[tuple[str, int]] = []
    async with aclosing(feed.candles()) as it:
        async for symbol, candle in it:
            got.append((symbol, (candle.ts_ms - T0) // H))
            if got[-1] == ("A/USDT", 4):
                wanted.append("B/USDT")  # enters: polled from its newest closed candle on
            if got[-1] == ("B/USDT", 6):
                wanted.remove("B/USDT")  # leaves: no longer polled
            if got[-1] == ("A/USDT", 8):
                wanted.append("B/USDT")  # back: from its newest candle, not a gap
            if len(got) == 12:
                break
    assert got == [
        ("A/USDT", 2),
        ("A/USDT", 3),
        ("A/USDT", 4),
        ("A/USDT", 5),
        ("B/USDT", 5),
        ("A/USDT", 6),
        ("B/USDT", 6),
        ("A/USDT", 7),
        ("A/USDT", 8),
        ("A/USDT", 9),
        ("B/USDT", 9),
        ("A/USDT", 10),
    ]
    assert feed.gaps == []


async def test_each_feed_says_which_candles_close_together() -> None:
    btc = generate_candles("BTC/USDT", "1h", 6, seed=1, start_ms=T0)
    eth = drop_rows(generate_candles("ETH/USDT", "1h", 6, seed=2, start_ms=T0), [3])
    replay = ReplayFeed({"BTC/USDT": btc, "ETH/USDT": eth}, SimClock(T0), drive_clock=True)
    clock = JumpClock(T0 + 6 * H + 1_000)
    md = FakeMarketData({"BTC/USDT": btc, "ETH/USDT": eth}, clock)
    polling = PollingFeed(md, ["BTC/USDT", "ETH/USDT"], "1h", clock, start_ms=T0)
    for feed, n in ((replay, 11), (polling, 11)):
        batches = []
        async with aclosing(feed.candles()) as it:
            async for symbol, candle in it:
                assert (symbol, candle) in feed.batch  # the candle is one of its close's
                assert all(c.ts_ms == candle.ts_ms for _, c in feed.batch)
                if not batches or feed.batch is not batches[-1]:
                    batches.append(feed.batch)
                if sum(map(len, batches)) == n and candle is feed.batch[-1][1]:
                    break
        assert [[s for s, _ in b] for b in batches] == [["BTC/USDT", "ETH/USDT"]] * 3 + [
            ["BTC/USDT"]
        ] + [["BTC/USDT", "ETH/USDT"]] * 2  # ETH's candle 3 is missing: BTC closes alone
