"""Fast replay for backtests: the same market loop, minus the candles that cannot matter.

A candle of a symbol can change something only if (a) its signals say anything (an entry or an
exit), (b) it could reach a resting order on the venue (``ReachBand``) or a market order waits,
or (c) the engine watches it (a bot-side stop, an entry awaiting its fill). Every other candle
would only move the price marks, so it is skipped and its close is handed to the engine as a
price. Candles that can matter go through ``MarketService.process`` exactly as in demo and run,
so the orders and fills are the same as a full replay (tested: ``test_fast_replay_parity``).

The skip test is a few float comparisons per candle; the expensive path (events, the paper
exchange, the engine cycle) runs only for the few candles where trading happens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import numpy as np

from core.clock import SimClock
from core.domain.market import CandleSeries, timeframe_to_ms
from core.domain.orders import Order
from core.exchange.sim import reach_band
from core.services.engine import Engine
from core.services.market import MarketService

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
    ) -> None:
        self._series = dict(series)
        self._start_ms = start_ms
        self._clock = clock
        self._market = market
        self._engine = engine
        self._open_orders = open_orders
        self.stats = ReplayStats()

    def _active(self, symbol: str, series: CandleSeries) -> list[bool]:
        frame = self._engine.signals.frame(symbol)
        if frame is None or not np.array_equal(frame.ts_ms, series.ts_ms):
            return [True] * len(series)  # no precomputed signals: nothing can be skipped
        return (frame.entry != 0) | frame.exit_long | frame.exit_short  # type: ignore[return-value]

    async def run(self) -> ReplayStats:
        """Replay every candle from ``start_ms``; return how many took the full path."""
        symbols = list(self._series)
        closes, sym_idx, rows = [], [], []
        for k, symbol in enumerate(symbols):
            s = self._series[symbol]
            keep = np.flatnonzero(s.ts_ms >= self._start_ms)
            closes.append(s.ts_ms[keep] + timeframe_to_ms(s.timeframe))
            sym_idx.append(np.full(len(keep), k))
            rows.append(keep)
        if not symbols:
            return self.stats
        close_all = np.concatenate(closes)
        order = np.lexsort((np.concatenate(sym_idx), close_all))
        active = [list(self._active(s, self._series[s])) for s in symbols]
        lows = [self._series[s].low.tolist() for s in symbols]
        highs = [self._series[s].high.tolist() for s in symbols]
        bands = [await self._band(s) for s in symbols]
        seen = [-1] * len(symbols)  # last row each symbol reached, processed or not
        observed = [-1] * len(symbols)  # last row whose close the engine knows
        for close_ms, k, i in zip(
            close_all[order].tolist(),
            np.concatenate(sym_idx)[order].tolist(),
            np.concatenate(rows)[order].tolist(),
            strict=True,
        ):
            self.stats.candles += 1
            seen[k] = i
            down, up, every = bands[k]
            if not (every or active[k][i] or lows[k][i] <= down or highs[k][i] >= up):
                continue
            for j, symbol in enumerate(symbols):  # the engine values holdings at these prices
                if observed[j] != seen[j] and j != k:
                    self._engine.observe_price(symbol, float(self._series[symbol].close[seen[j]]))
                    observed[j] = seen[j]
            if close_ms > self._clock.now_ms():
                self._clock.advance_to(close_ms)
            await self._market.process(symbols[k], self._series[symbols[k]].candle(i))
            observed[k] = i
            self.stats.processed += 1
            bands = [await self._band(s) for s in symbols]
        return self.stats

    async def _band(self, symbol: str) -> tuple[float, float, bool]:
        venue = reach_band(await self._open_orders(symbol))
        down, up, every = self._engine.watch_band(symbol)
        return max(venue.down, down), min(venue.up, up), every or venue.market
