"""The market loop: take closed candles from a feed, store them, let the simulated venue fill,
publish ``CandleClosed`` and ``OrderFilled``, then hand the candle to the trading cycle.

Events carry the clock's time (when we saw it); the candle's own open time and the fill's
time travel in the payload, so the audit trail's order is the order things happened here.

The same loop runs in demo (replay feed, accelerated clock) and run (polling feed, wall clock);
only the feed and the venue passed in differ.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from core.clock import Clock
from core.domain.events import (
    CandleClosed,
    FundingSettled,
    OrderCanceled,
    OrderFilled,
    fill_event_id,
    new_event_id,
)
from core.domain.market import Candle, CandleSeries, timeframe_to_ms
from core.domain.orders import Fill, Order
from core.domain.portfolio import FundingPayment
from core.errors import InvariantViolation, StorageUnavailable
from core.market.feeds import CandleFeed
from core.market.funding import FundingRates
from core.ports import CandleRepo
from core.services.bus import EventBus

log = logging.getLogger(__name__)

# Fills and the orders placed in reaction, within one candle: an entry, its ladder, the stop
# moved after each take-profit... a few rounds. More means two reactions feed each other.
MAX_REACTIONS_PER_CANDLE = 50
# Detail candles count as covering a candle's range up to float rounding of the two files.
_RANGE_SLACK = 1e-9


class SimulatedVenue(Protocol):
    """A venue that fills resting orders from candles (the paper exchange)."""

    async def on_candle(self, symbol: str, candle: Candle) -> list[Fill]:
        """Fill what the candle reaches; return the fills in the order they happened."""
        ...

    async def on_candle_rest(self, symbol: str) -> list[Fill]:
        """Fill what the rest of the current candle reaches of the orders placed since."""
        ...

    def end_candle(self, symbol: str) -> None:
        """Close the current candle: orders placed from now on wait for the next one."""
        ...

    def take_venue_cancels(self) -> list[Order]:
        """Return the orders the venue canceled on its own since the last call."""
        ...

    async def apply_funding(self, symbol: str, rate: Decimal) -> FundingPayment | None:
        """Settle a funding event on the symbol's position at its last mark (None if none)."""
        ...


CandleHandler = Callable[[str, Candle], Awaitable[None]]
BatchHandler = Callable[[Sequence[tuple[str, Candle]]], Awaitable[None]]


@dataclass(slots=True)
class MarketStats:
    """Counters shown in the status line."""

    candles: int = 0
    fills: int = 0
    last_close: dict[str, float] = field(default_factory=dict)
    last_candle_ms: int | None = None
    detail_fallbacks: int = 0  # candles whose detail did not cover them: filled on themselves


class MarketService:
    """Drive the process from a candle feed."""

    def __init__(
        self,
        *,
        feed: CandleFeed,
        clock: Clock,
        candles: CandleRepo | None,
        bus: EventBus,
        source: str,
        timeframe: str,
        venue: SimulatedVenue | None = None,
        detail: Mapping[str, CandleSeries] | None = None,
        funding: Mapping[str, FundingRates] | None = None,
    ) -> None:
        self._feed = feed
        self._clock = clock
        self._candles = candles
        self._bus = bus
        self._source = source
        self._timeframe = timeframe
        self._tf_ms = timeframe_to_ms(timeframe)
        self._venue = venue
        # Finer candles (e.g. 5m under a 1h strategy) the venue fills against, one at a time,
        # so that exits react to fills inside the strategy candle as they would live.
        self._detail = dict(detail or {})
        # Funding events the venue settles at the close of the candle they fall in.
        self._funding = dict(funding or {})
        self._funded_until: dict[str, int] = {}  # per symbol: close of the last candle settled
        self._handlers: list[CandleHandler] = []
        self._before_fills: list[CandleHandler] = []
        self._before_batch: list[BatchHandler] = []
        self.stats = MarketStats()

    def on_candle(
        self, handler: CandleHandler, *, before_fills: CandleHandler | None = None
    ) -> None:
        """Call ``handler`` after each candle is stored and the venue has filled, and
        ``before_fills`` (if given) before the venue fills it: the last moment to withdraw an
        order the candle would otherwise fill (a halt cancels a waiting entry)."""
        self._handlers.append(handler)
        if before_fills is not None:
            self._before_fills.append(before_fills)

    def before_batch(self, handler: BatchHandler) -> None:
        """Call ``handler`` with every candle of one close (several symbols') before the first
        of them is handled, when the feed says which close together (``feed.batch``): the
        engine computes all their signals at once, so each symbol's cycle finds its ready."""
        self._before_batch.append(handler)

    async def run(self) -> None:
        """Consume the feed until it ends or the task is cancelled; publish the gaps it finds."""
        gaps_published = 0
        announced: object = None
        async for symbol, candle in self._feed.candles():
            for gap in self._feed.gaps[gaps_published:]:  # found before this candle was yielded
                await self._bus.publish(gap)
            gaps_published = len(self._feed.gaps)
            batch = getattr(self._feed, "batch", None) if self._before_batch else None
            if batch is not None and batch is not announced:  # the first candle of a close
                announced = batch
                for hook in self._before_batch:
                    await hook(batch)
            await self.process(symbol, candle)

    async def process(self, symbol: str, candle: Candle) -> None:
        """Handle a closed candle: store it (if a repo is given), fill, publish, run handlers."""
        if self._candles is not None:
            series = CandleSeries.from_columns(
                symbol,
                self._timeframe,
                [candle.ts_ms],
                [candle.open],
                [candle.high],
                [candle.low],
                [candle.close],
                [candle.volume],
            )
            try:
                await self._candles.upsert(self._source, series)
            except StorageUnavailable as e:
                # The candle still trades; stored candles can be downloaded again.
                log.warning("%s: candle not stored, the database is unavailable: %s", symbol, e)
        if self._venue is not None:
            try:
                await self._let_venue_fill(self._venue, symbol, candle)
            except StorageUnavailable as e:
                # The paper venue keeps its book only once stored: nothing filled, the next
                # candle fills what this one would have. The bus has halted trading.
                log.error("%s: no fills this candle, the database is unavailable: %s", symbol, e)
        if self._bus.wants(CandleClosed.topic):
            await self._bus.publish(
                CandleClosed(
                    ts_ms=self._clock.now_ms(),
                    symbol=symbol,
                    timeframe=self._timeframe,
                    open_ms=candle.ts_ms,
                    open=candle.open,
                    high=candle.high,
                    low=candle.low,
                    close=candle.close,
                    volume=candle.volume,
                )
            )
        self.stats.candles += 1
        self.stats.last_close[symbol] = candle.close
        self.stats.last_candle_ms = candle.ts_ms
        for handler in self._handlers:
            await handler(symbol, candle)

    async def _let_venue_fill(self, venue: SimulatedVenue, symbol: str, candle: Candle) -> None:
        for before in self._before_fills:
            await before(symbol, candle)
        for step in self._fill_steps(symbol, candle):
            await self._fill_step(venue, symbol, step)
        await self._settle_funding(venue, symbol, candle)

    async def _fill_step(self, venue: SimulatedVenue, symbol: str, step: Candle) -> None:
        """Let the venue fill ``step``, publish what happened, and repeat on the rest of the
        candle while the reactions (exit orders after an entry fill, a stop moved after a
        take-profit) place orders that candle could still fill."""
        fills = await venue.on_candle(symbol, step)
        try:
            for _ in range(MAX_REACTIONS_PER_CANDLE):
                canceled = venue.take_venue_cancels()
                if not fills and not canceled:
                    return
                for fill in fills:
                    self.stats.fills += 1
                    await self._bus.publish(_filled_event(fill, self._clock.now_ms()))
                for order in canceled:
                    await self._bus.publish(
                        OrderCanceled(
                            ts_ms=self._clock.now_ms(),
                            client_order_id=order.client_order_id,
                            symbol=order.symbol,
                            reason=f"venue: {order.reason}",
                        )
                    )
                fills = await venue.on_candle_rest(symbol)
            raise InvariantViolation(
                f"{symbol}: orders kept filling within one candle after "
                f"{MAX_REACTIONS_PER_CANDLE} rounds of reactions"
            )
        finally:
            venue.end_candle(symbol)

    async def _settle_funding(self, venue: SimulatedVenue, symbol: str, candle: Candle) -> None:
        """Settle the funding events since the last candle handled, up to this one's close."""
        rates = self._funding.get(symbol)
        if rates is None:
            return
        close_ms = candle.ts_ms + self._tf_ms
        since = self._funded_until.get(symbol, candle.ts_ms)
        for funding_ms, rate in rates.between(since, close_ms):
            paid = await venue.apply_funding(symbol, rate)
            if paid is not None:
                await self._bus.publish(
                    FundingSettled(
                        ts_ms=self._clock.now_ms(),
                        symbol=symbol,
                        funding_ms=funding_ms,
                        side=paid.side.value,
                        amount=paid.amount,
                        price=paid.price,
                        rate=rate,
                        cash=paid.cash,
                    )
                )
        self._funded_until[symbol] = max(close_ms, since)

    def _fill_steps(self, symbol: str, candle: Candle) -> list[Candle]:
        """Return the candles the venue fills against: the detail inside ``candle`` when it
        covers the candle whole (every finer candle there, spanning exactly its high and low),
        else the candle itself: a detail file with a gap must not hide part of the range, nor
        one from another market add prices it never traded."""
        finer = self._detail.get(symbol)
        if finer is None:
            return [candle]
        part = finer.between(candle.ts_ms, candle.ts_ms + self._tf_ms)
        expected = self._tf_ms // timeframe_to_ms(finer.timeframe)
        complete = len(part) == expected and _same_range(part, candle)
        if not complete:
            self.stats.detail_fallbacks += 1
            return [candle]
        return [part.candle(i) for i in range(len(part))]


def _same_range(part: CandleSeries, candle: Candle) -> bool:
    """Return True when ``part`` spans exactly the candle's high and low (within float
    rounding): a detail file from another market (futures under spot) must not fill at prices
    the strategy candle never traded."""
    high, low = float(part.high.max()), float(part.low.min())
    return (
        abs(high - candle.high) <= candle.high * _RANGE_SLACK
        and abs(low - candle.low) <= candle.low * _RANGE_SLACK
    )


def _filled_event(fill: Fill, now_ms: int) -> OrderFilled:
    known = fill.order_filled  # then named as a restart finding it in the order's state names it
    return OrderFilled(
        event_id=new_event_id() if known is None else fill_event_id(fill.client_order_id, known),
        ts_ms=now_ms,
        fill_ts_ms=fill.ts_ms,
        client_order_id=fill.client_order_id,
        symbol=fill.symbol,
        side=fill.side.value,
        amount=fill.amount,
        price=fill.price,
        fee=fill.fee,
        liquidity=fill.liquidity.value,
    )
