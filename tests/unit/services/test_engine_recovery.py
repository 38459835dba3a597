"""Start-up is the recovery path: fills the engine missed (it died between the venue's fill and
its own save) are replayed from the venue's order state before trading resumes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.trading import build_engine, paper_exchange
from core.clock import SimClock
from core.domain.enums import OrderType
from core.domain.events import Event, OrderFilled
from core.domain.market import Candle
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.market import MarketService
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.unit.services.engine_harness import (
    SYMBOL,
    T0_MS,
    ScriptedProvider,
    at,
    clean_settings,
)


class _NoFeed:
    async def candles(self) -> AsyncIterator[tuple[str, Candle]]:  # pragma: no cover
        return
        yield


def _candle(i: int, open_: float, close: float) -> Candle:
    return Candle(
        ts_ms=at(i),
        open=open_,
        high=max(open_, close) + 0.2,
        low=min(open_, close) - 0.2,
        close=close,
        volume=1.0,
    )


async def test_a_missed_entry_fill_is_replayed_and_protected_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)
    storage = MemoryStorage()
    clock = SimClock(T0_MS)
    paper = paper_exchange(settings, storage, clock)
    await paper.start()
    provider = ScriptedProvider(entries={at(0): 1})

    def engine_on(bus: EventBus) -> Engine:
        return build_engine(
            settings,
            clock=clock,
            bus=bus,
            exchange=paper,
            trading_state=TradingStateService(storage.state, bus, clock),
            provider=provider,
            state=storage.state,
        )

    first_bus = EventBus(sink=storage.events.append)
    first = engine_on(first_bus)
    market = MarketService(
        feed=_NoFeed(),
        clock=clock,
        candles=None,
        bus=first_bus,
        source="t",
        timeframe="1h",
        venue=paper,
    )
    market.on_candle(first.on_candle)
    await market.process(SYMBOL, _candle(0, 100.0, 100.0))  # decides the entry
    assert first.trades[SYMBOL].plan is None

    # The venue fills the entry on the next candle, and the process dies before it hears of it.
    clock.advance_to(at(2))
    assert len(await paper.on_candle(SYMBOL, _candle(1, 100.0, 100.3))) == 1

    second_bus = EventBus(sink=storage.events.append)
    replayed: list[Event] = []

    async def record(event: Event) -> None:
        replayed.append(event)

    second_bus.subscribe(OrderFilled.topic, record)
    second = engine_on(second_bus)
    await second.start()

    [fill] = replayed
    assert isinstance(fill, OrderFilled)
    assert (fill.amount, fill.price, fill.liquidity) == (D(50), D("100.02"), "unknown")
    plan = second.trades[SYMBOL].plan
    assert plan is not None and plan.amount == D(50)
    resting = await paper.fetch_open_orders(SYMBOL)
    assert sorted((o.request.type.value, o.request.amount) for o in resting) == [
        (OrderType.LIMIT.value, D(15)),
        (OrderType.LIMIT.value, D(15)),
        (OrderType.LIMIT.value, D(20)),
        (OrderType.STOP_MARKET.value, D(50)),
    ]
    # and it is saved: a third start finds nothing more to replay
    third_bus = EventBus(sink=storage.events.append)
    third_bus.subscribe(OrderFilled.topic, record)
    await engine_on(third_bus).start()
    assert len(replayed) == 1
