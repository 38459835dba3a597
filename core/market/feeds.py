"""Candle feeds: closed candles for the running process, in time order, across symbols.

Both feeds share one tiny interface, :class:`CandleFeed`: ``async for symbol, candle in
feed.candles()`` yields each candle once, after its close time (open + timeframe) has passed on
the injected clock. Missing candles are never filled: each gap is appended to ``feed.gaps`` as a
:class:`~core.domain.events.DataGapDetected` and passed to ``on_gap`` (sync or async) so the app
can publish it.

Each also says which candles close together: ``feed.batch`` holds every (symbol, candle) of
the close being yielded (several symbols' candles of one open time), set before the first of
them is yielded; the market loop hands it to ``before_batch`` hooks (the engine computes their
signals at once, ``SignalBook.prepare_many``).

* :class:`ReplayFeed` replays stored series (demo, backtest). With ``drive_clock=True`` it
  advances a ``SimClock`` itself instead of waiting for it (backtests run as fast as they can).
* :class:`PollingFeed` polls ``MarketData.fetch_ohlcv`` (``qt run``) and yields newly closed
  candles only, catching up page by page after a pause.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from core.clock import Clock
from core.domain.events import DataGapDetected
from core.domain.market import Candle, CandleSeries, grid_ceil_ms, grid_floor_ms, timeframe_to_ms
from core.errors import DependencyError
from core.market.validation import repair_candles
from core.ports import MarketData
from core.retry import retry

log = logging.getLogger(__name__)

GapCallback = Callable[[DataGapDetected], Awaitable[None] | None]


class CandleFeed(Protocol):
    """A source of closed candles; ``gaps`` lists every gap seen so far."""

    gaps: list[DataGapDetected]

    def candles(self) -> AsyncIterator[tuple[str, Candle]]:
        """Yield (symbol, candle) for each closed candle, in close-time order."""
        ...


class _GapTracker:
    """Remember each symbol's last open time; report jumps larger than one timeframe."""

    def __init__(self, clock: Clock, on_gap: GapCallback | None) -> None:
        self._clock = clock
        self._on_gap = on_gap
        self._last_ms: dict[str, int] = {}
        self.gaps: list[DataGapDetected] = []

    def forget(self, symbol: str) -> None:
        """Forget ``symbol``'s last candle (no longer polled)."""
        self._last_ms.pop(symbol, None)

    async def see(self, symbol: str, timeframe: str, tf_ms: int, open_ms: int) -> None:
        prev_ms = self._last_ms.get(symbol)
        self._last_ms[symbol] = open_ms
        if prev_ms is None or open_ms - prev_ms <= tf_ms:
            return
        event = DataGapDetected(
            ts_ms=self._clock.now_ms(),
            symbol=symbol,
            timeframe=timeframe,
            from_ms=prev_ms,
            to_ms=open_ms,
            missing=(open_ms - prev_ms) // tf_ms - 1,
        )
        self.gaps.append(event)
        log.warning("gap in %s %s: %d candles missing", symbol, timeframe, event.missing)
        if self._on_gap is not None:
            result = self._on_gap(event)
            if inspect.isawaitable(result):
                await result


class ReplayFeed:
    """Replay series of several symbols, interleaved by close time, as market time passes."""

    def __init__(
        self,
        series_by_symbol: Mapping[str, CandleSeries],
        clock: Clock,
        *,
        start_ms: int | None = None,
        on_gap: GapCallback | None = None,
        drive_clock: bool = False,
        before_advance: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._series = dict(series_by_symbol)
        # Called with a close time before a driven clock moves to it (a backtest runs the jobs
        # due before that close there, every candle closing earlier handled).
        self._before_advance = before_advance
        self._clock = clock
        self._start_ms = start_ms
        self._drive = drive_clock
        if drive_clock and not hasattr(clock, "advance_to"):
            raise ValueError("drive_clock needs a clock with advance_to (SimClock)")
        self._tracker = _GapTracker(clock, on_gap)
        self.gaps = self._tracker.gaps
        self.batch: tuple[tuple[str, Candle], ...] = ()  # see the module docstring

    async def candles(self) -> AsyncIterator[tuple[str, Candle]]:
        """Yield (symbol, candle) once the clock passes each close time; ties by symbol order."""
        symbols = list(self._series)
        closes, sym_idx, rows = [], [], []
        for i, symbol in enumerate(symbols):
            series = self._series[symbol]
            tf_ms = timeframe_to_ms(series.timeframe)
            keep = np.arange(len(series))
            if self._start_ms is not None:
                keep = keep[series.ts_ms >= self._start_ms]
            closes.append(series.ts_ms[keep] + tf_ms)
            sym_idx.append(np.full(len(keep), i))
            rows.append(keep)
        if not symbols:
            return
        close_all = np.concatenate(closes)
        sym_all = np.concatenate(sym_idx)
        row_all = np.concatenate(rows)
        order = np.lexsort((sym_all, close_all))  # by close time, then symbol order
        close_l, sym_l, row_l = (
            close_all[order].tolist(),
            sym_all[order].tolist(),
            row_all[order].tolist(),
        )
        k, total = 0, len(close_l)
        while k < total:
            end = k + 1
            while end < total and close_l[end] == close_l[k]:
                end += 1
            batch = tuple(
                (symbols[i], self._series[symbols[i]].candle(row))
                for i, row in zip(sym_l[k:end], row_l[k:end], strict=True)
            )
            for close_ms, (symbol, candle) in zip(close_l[k:end], batch, strict=True):
                await self._wait(close_ms)
                self.batch = batch  # the candles closing together (one object per close)
                timeframe = self._series[symbol].timeframe
                await self._tracker.see(symbol, timeframe, timeframe_to_ms(timeframe), candle.ts_ms)
                yield symbol, candle
            k = end

    async def _wait(self, ts_ms: int) -> None:
        if self._drive:
            if self._before_advance is not None:
                await self._before_advance(ts_ms)
            if ts_ms > self._clock.now_ms():
                self._clock.advance_to(ts_ms)  # type: ignore[attr-defined]
        else:
            await self._clock.sleep_until(ts_ms)


class PollingFeed:
    """Poll the venue for newly closed candles of several symbols (``qt run``).

    Start with the newest candle closed at the first poll (or ``start_ms``). ``symbols`` may be
    a function (a dynamic universe): asked every round, a symbol it adds starts at its newest
    closed candle, one it drops is no longer polled. Poll ``settle_ms``
    after each close (venues publish a moment late); when a symbol's candle is late, poll again
    every ``retry_after_ms``. A fetch that still fails after retries skips the round for that
    symbol (it is fetched with the next one), so a network blip never ends the feed.
    """

    def __init__(
        self,
        market_data: MarketData,
        symbols: Sequence[str] | Callable[[], Iterable[str]],
        timeframe: str,
        clock: Clock,
        *,
        start_ms: int | None = None,
        settle_ms: int = 2_000,
        retry_after_ms: int = 5_000,
        page_limit: int = 500,
        attempts: int = 3,
        on_gap: GapCallback | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._md = market_data
        self._wanted = symbols if callable(symbols) else None
        self._followed = False  # the symbols function was asked before
        self._symbols = [] if callable(symbols) else list(symbols)
        self.timeframe = timeframe
        self._tf_ms = timeframe_to_ms(timeframe)
        self._clock = clock
        self._start_ms = start_ms
        self._settle_ms = settle_ms
        self._retry_after_ms = retry_after_ms
        self._page_limit = page_limit
        self._attempts = attempts
        self._rng = rng or random.Random()
        self._tracker = _GapTracker(clock, on_gap)
        self.gaps = self._tracker.gaps
        self.batch: tuple[tuple[str, Candle], ...] = ()  # see the module docstring

    async def candles(self) -> AsyncIterator[tuple[str, Candle]]:
        """Yield newly closed (symbol, candle) pairs forever, in open-time then symbol order."""
        tf_ms = self._tf_ms
        if self._start_ms is None:
            start_ms = grid_floor_ms(self._clock.now_ms(), self.timeframe) - tf_ms
        else:
            start_ms = grid_ceil_ms(self._start_ms, self.timeframe)
        next_ms = dict.fromkeys(self._symbols, start_ms)  # next open time wanted per symbol
        while True:
            now_ms = self._clock.now_ms()
            if self._wanted is not None:
                self._follow(next_ms, grid_floor_ms(now_ms, self.timeframe) - tf_ms, start_ms)
            batch: list[tuple[int, int, str, Candle]] = []
            progressed = False
            for i, symbol in enumerate(self._symbols):
                if next_ms[symbol] + tf_ms > now_ms:
                    continue  # its next candle has not closed yet
                series = await self._poll(symbol, next_ms[symbol], now_ms)
                if len(series):
                    progressed = True
                    next_ms[symbol] = int(series.ts_ms[-1]) + tf_ms
                    batch.extend(
                        (int(t), i, symbol, series.candle(j))
                        for j, t in enumerate(series.ts_ms.tolist())
                    )
            batch.sort(key=lambda item: (item[0], item[1]))
            for _, same_open in itertools.groupby(batch, key=lambda item: item[0]):
                together = tuple((symbol, candle) for _, _, symbol, candle in same_open)
                for symbol, candle in together:
                    self.batch = together  # the candles closing together (one object)
                    await self._tracker.see(symbol, self.timeframe, tf_ms, candle.ts_ms)
                    yield symbol, candle
            await self._pause(next_ms, progressed)

    def _follow(self, next_ms: dict[str, int], newest_ms: int, start_ms: int) -> None:
        """Poll what the symbols function wants now: the first time from ``start_ms``, an
        added symbol from its ``newest_ms`` closed candle."""
        wanted = list(dict.fromkeys(self._wanted() if self._wanted is not None else ()))
        first, self._followed = not self._followed, True
        for symbol in [s for s in next_ms if s not in wanted]:
            del next_ms[symbol]
            self._tracker.forget(symbol)  # polled again later: a fresh start, not a gap
        for symbol in wanted:
            next_ms.setdefault(symbol, start_ms if first else newest_ms)
        self._symbols = wanted

    async def _poll(self, symbol: str, since_ms: int, now_ms: int) -> CandleSeries:
        """Return valid candles of ``symbol`` with since <= open and close <= now."""
        tf = self.timeframe

        async def fetch() -> CandleSeries:
            return await self._md.fetch_ohlcv(symbol, tf, since_ms, self._page_limit)

        try:
            raw = await retry(
                fetch,
                attempts=self._attempts,
                base_delay_s=1.0,
                max_delay_s=20.0,
                sleep=self._sleep_s,
                rng=self._rng,
                what=f"poll {symbol} {tf}",
            )
        except DependencyError as exc:
            log.warning("poll %s %s failed, retrying next round: %s", symbol, tf, exc)
            return CandleSeries.empty(symbol, tf)
        closed = raw.between(since_ms, now_ms - self._tf_ms + 1)
        series, report = repair_candles(closed, source=f"poll {symbol} {tf}")
        if report.dropped_rows:
            log.warning("poll %s %s: dropped invalid rows %s", symbol, tf, report.dropped)
        return series

    async def _pause(self, next_ms: Mapping[str, int], progressed: bool) -> None:
        now_ms = self._clock.now_ms()
        due_ms = min((t + self._tf_ms for t in next_ms.values()), default=now_ms)
        if due_ms <= now_ms:
            if progressed:
                return  # catching up page by page: ask again at once
            await self._clock.sleep_until(now_ms + self._retry_after_ms)
        else:
            await self._clock.sleep_until(due_ms + self._settle_ms)

    async def _sleep_s(self, delay_s: float) -> None:
        await self._clock.sleep_until(self._clock.now_ms() + int(delay_s * 1000))
