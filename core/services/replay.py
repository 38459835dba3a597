"""Fast replay for backtests: the same market loop, minus the candles that cannot matter.

A candle of a symbol can change something only if (a) it carries the signal the engine acts on
in its current state (an entry while flat, the trade's exit while in a trade:
``Engine.watched_signal``), (b) it could reach a resting order on the venue (``ReachBand``) or
a market order waits, (c) the engine watches it (a bot-side stop, an entry awaiting its
fill), (d) it settles funding (perps with funding data) while the engine holds a trade, or
(e) its regime or a choosing provider's pick differs from the one before (the engine publishes
each change on its candle: ``RegimeChanged``, ``StrategySelected``), or (f) it moves the open
trade's stop on its close or ends its holding time (``Engine.watch_band``,
``Engine.exit_due_ms``: the Exit Brain's candle-close moves).
Every other candle would only move the price marks, so it is skipped and its close is
handed to the engine as a price. Candles that can matter go through ``MarketService.process``
exactly as in demo and run, so the orders and fills are the same as a full replay (tested:
``test_fast_replay_parity``).

Processing a candle of one symbol changes only that symbol's orders and trade (the engine acts
on the candle's symbol alone; a fill concerns only the trade its order belongs to), so each
symbol keeps its next candle that can matter until one of its own candles is processed. While
nothing rests on the venue that is simply the next candle with the watched signal (one
lookup); otherwise the candles up to it are scanned for one reaching the band. The expensive
path (events, the paper exchange, the engine cycle) runs only for the few candles where trading
happens, and the quiet ones in between cost next to nothing.

Jobs on simulated time (``DueJobs``): a job due at T runs before the first candle closing after
T, once the engine knows every symbol's last close at or before T, as in a full replay. A job
may change the signals (a retrained model), so after jobs ran the signals are recomputed and
every symbol's plan is made again from its first candle after T.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.clock import SimClock
from core.domain.market import CandleSeries, timeframe_to_ms
from core.domain.orders import Order
from core.exchange.sim import reach_band
from core.market.funding import FundingRates
from core.services.due_jobs import DueJobs
from core.services.engine import Engine
from core.services.market import MarketService

# The orders a candle of a symbol could fill (the venue's own liquidation stop included).
OpenOrders = Callable[[str], Awaitable[list[Order]]]


@dataclass(slots=True)
class ReplayStats:
    """How much of the replay ran the full path."""

    candles: int = 0
    processed: int = 0

    @property
    def skipped(self) -> int:
        """Return the candles that were provably quiet."""
        return self.candles - self.processed


@dataclass(slots=True, kw_only=True)
class _Lane:
    """One symbol's candles as plain lists, and where its replay stands."""

    symbol: str
    series: CandleSeries
    first: int  # the first row replayed (open time >= start); rows first..end follow in order
    close_ms: list[int]  # close time of rows first..end
    low: list[float]
    high: list[float]
    # Per Engine.watched_signal column: for every row, the first row >= it carrying the signal
    # (the row count when none), so skipping to the next signal is one lookup.
    next_signal: dict[str, list[int]]
    observed: int = -1  # last row whose close the engine knows
    next_row: int = 0  # next row that can matter (the row count when none)
    # Per row: the regime code and the pick of a choosing provider ("" none), and the first
    # row >= it where either differs from the row before (the engine publishes those).
    regime: list[int] | None = None
    pick: list[str] | None = None
    next_notice: list[int] | None = None

    @property
    def end(self) -> int:
        """Return the row count (past the last row)."""
        return len(self.low)


class FastReplay:
    """Drive a backtest over ``series`` in close-time order (see module docstring)."""

    def __init__(
        self,
        *,
        series: Mapping[str, CandleSeries],
        start_ms: int,
        clock: SimClock,
        market: MarketService,
        engine: Engine,
        open_orders: OpenOrders,
        funding: Mapping[str, FundingRates] | None = None,
        jobs: DueJobs | None = None,
    ) -> None:
        self._series = dict(series)
        self._jobs = jobs
        self._funding = dict(funding or {})
        self._start_ms = start_ms
        self._clock = clock
        self._market = market
        self._engine = engine
        self._open_orders = open_orders
        self.stats = ReplayStats()

    def _lane(self, symbol: str, series: CandleSeries) -> _Lane:
        first = int(series.ts_ms.searchsorted(self._start_ms))  # open times are sorted
        return _Lane(
            symbol=symbol,
            series=series,
            first=first,
            close_ms=(series.ts_ms[first:] + timeframe_to_ms(series.timeframe)).tolist(),
            low=series.low.tolist(),
            high=series.high.tolist(),
            next_signal=self._next_signal(symbol, series),
        )

    def _notices(self, lane: _Lane) -> None:
        """Note where the symbol's regime or pick changes (None: every row is processed)."""
        lane.regime = lane.pick = lane.next_notice = None
        try:
            regimes = self._engine.signals.regimes(lane.symbol)
            frame = self._engine.signals.frame(lane.symbol)
        except Exception:  # noqa: BLE001 - a provider bug: the cycles fail it, as in a full replay
            return
        ts = lane.series.ts_ms
        if regimes is None or frame is None or not np.array_equal(frame.ts_ms, ts):
            return
        changed = np.zeros(len(ts), dtype=bool)
        changed[1:] = regimes[1:] != regimes[:-1]
        pick = [""] * len(ts)
        if frame.chosen is not None:
            chosen = frame.chosen
            changed[1:] |= chosen[1:] != chosen[:-1]
            names = [*frame.sources, ""]  # -1: none
            pick = [names[c] for c in chosen.tolist()]
        lane.regime, lane.pick = regimes.tolist(), pick
        lane.next_notice = _next_true(changed)

    def _unnoticed(self, lane: _Lane, row: int) -> bool:
        """Return whether row ``row`` tells the engine a regime or pick it does not know."""
        if lane.regime is None or lane.pick is None:
            return True
        known = self._engine.regimes.get(lane.symbol, 0)
        pick = lane.pick[row]
        return lane.regime[row] != known or bool(
            pick and pick != self._engine.strategies.get(lane.symbol, "")
        )

    def _next_signal(self, symbol: str, series: CandleSeries) -> dict[str, list[int]]:
        try:
            frame = self._engine.signals.frame(symbol)
        except Exception:  # noqa: BLE001 - a provider bug: every candle fails, as in a full replay
            frame = None  # (the engine's cycle fails the symbol closed; see Engine.on_candle)
        if frame is None or not np.array_equal(frame.ts_ms, series.ts_ms):
            every = list(range(len(series)))  # no precomputed signals: nothing can be skipped
            return {"entry": every, "exit_long": every, "exit_short": every}
        columns = {
            "entry": frame.entry != 0,
            "exit_long": frame.exit_long,
            "exit_short": frame.exit_short,
        }
        return {name: _next_true(flags) for name, flags in columns.items()}

    async def run(self) -> ReplayStats:
        """Replay every candle from ``start_ms``; return how many took the full path."""
        lanes = [self._lane(symbol, s) for symbol, s in self._series.items()]
        for lane in lanes:
            self._notices(lane)
        self.stats.candles = sum(len(lane.close_ms) for lane in lanes)
        for lane in lanes:
            await self._plan_next(lane, lane.first)
        end_ms = max((lane.close_ms[-1] for lane in lanes if lane.close_ms), default=0)
        while True:
            # The next candle that can matter, in (close time, symbol order) like a full replay.
            close_ms, k = min(
                (
                    (lane.close_ms[lane.next_row - lane.first], k)
                    for k, lane in enumerate(lanes)
                    if lane.next_row < lane.end
                ),
                default=(0, -1),
            )
            jobs = self._jobs
            due_ms = jobs.next_due_ms() if jobs is not None else None
            if (
                jobs is not None
                and due_ms is not None
                and due_ms <= end_ms
                and (k < 0 or due_ms < close_ms)
            ):
                await self._run_jobs(jobs, lanes, due_ms)
                continue
            if k < 0:
                return self.stats
            lane = lanes[k]
            self._observe_others(lanes, k, close_ms)
            if close_ms > self._clock.now_ms():
                self._clock.advance_to(close_ms)
            row = lane.next_row
            await self._market.process(lane.symbol, lane.series.candle(row))
            lane.observed = row
            self.stats.processed += 1
            await self._plan_next(lane, row + 1)

    async def _run_jobs(self, jobs: DueJobs, lanes: list[_Lane], due_ms: int) -> None:
        """Run the jobs due at ``due_ms`` once the engine knows every close up to it; after
        a job changed the signals or the policy, plan every symbol again from its next candle
        (on signals computed again when a job may have changed them)."""
        for lane in lanes:
            count = bisect_right(lane.close_ms, due_ms)
            seen = lane.first + count - 1
            if count and seen != lane.observed:
                self._engine.observe_price(lane.symbol, float(lane.series.close[seen]))
                lane.observed = seen
        if not await jobs.run_due(due_ms):
            return
        if jobs.signals_changed:
            self._engine.signals.invalidate()
        elif not jobs.policy_changed:
            return  # the plans stand: nothing they were made from changed
        for lane in lanes:
            # Rows up to ``observed`` closed by now and were skipped or processed; the plan
            # starts again after them, on the new signals.
            lane.next_signal = self._next_signal(lane.symbol, lane.series)
            self._notices(lane)
            await self._plan_next(lane, max(lane.first, lane.observed + 1))

    def _observe_others(self, lanes: list[_Lane], k: int, close_ms: int) -> None:
        """Give the engine the latest close of every other symbol (it values holdings at them):
        that of its last candle before ``(close_ms, k)`` in the replay order."""
        for j, lane in enumerate(lanes):
            if j == k:
                continue
            # Candles closing at the same time replay in symbol order.
            before = bisect_right if j < k else bisect_left
            count = before(lane.close_ms, close_ms)
            seen = lane.first + count - 1
            if count and seen != lane.observed:
                self._engine.observe_price(lane.symbol, float(lane.series.close[seen]))
                lane.observed = seen

    async def _plan_next(self, lane: _Lane, row: int) -> None:
        """Set ``lane.next_row``: the first row from ``row`` on that can matter (see module)."""
        if row >= lane.end:
            lane.next_row = lane.end
            return
        venue = reach_band(await self._open_orders(lane.symbol))
        down, up, every = self._engine.watch_band(lane.symbol)
        if every or venue.market or self._unnoticed(lane, row):
            lane.next_row = row
            return
        down, up = max(venue.down, down), min(venue.up, up)
        stop = min(
            lane.next_signal[self._engine.watched_signal(lane.symbol)][row],
            self._next_funding_row(lane, row),
            row if lane.next_notice is None else lane.next_notice[row],
            self._hold_ends_row(lane, row),
        )
        if down == float("-inf") and up == float("inf"):
            lane.next_row = stop  # nothing to reach: only the signal can matter
            return
        low, high = lane.low, lane.high
        while row < stop and not (low[row] <= down or high[row] >= up):
            row += 1
        lane.next_row = row

    def _hold_ends_row(self, lane: _Lane, row: int) -> int:
        """Return the first row from ``row`` closing when the open trade's maximum holding time
        is up (the row count when it has none)."""
        due_ms = self._engine.exit_due_ms(lane.symbol)
        if due_ms is None:
            return lane.end
        return max(row, lane.first + bisect_left(lane.close_ms, due_ms))

    def _next_funding_row(self, lane: _Lane, row: int) -> int:
        """Return the first row from ``row`` whose candle holds a funding event, while the
        engine has a trade in the symbol (the row count when there is none to settle)."""
        rates = self._funding.get(lane.symbol)
        if rates is None or lane.symbol not in self._engine.trades:
            return lane.end
        open_ms = lane.close_ms[row - lane.first] - timeframe_to_ms(lane.series.timeframe)
        funding_ms = rates.next_after(open_ms + 1)  # a candle settles (open, close]
        if funding_ms is None:
            return lane.end
        return lane.first + bisect_left(lane.close_ms, funding_ms)


def _next_true(flags: npt.NDArray[np.bool_]) -> list[int]:
    """Return, for every index, the first index >= it where ``flags`` is set (len when none)."""
    n = len(flags)
    at = np.where(flags, np.arange(n), n)
    return np.minimum.accumulate(at[::-1])[::-1].tolist()  # type: ignore[no-any-return]
