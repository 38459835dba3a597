"""A paper fill published during an outage and kept (``bot.event_keep``) reaches the audit
trail once after a kill, though the engine's state never took it: the restart finds the fill
again in the paper venue's order state, under the id the venue's own report of it had."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.event_keep import FileEventKeep
from bot.trading import build_engine, paper_exchange
from core.clock import SimClock
from core.domain.events import OrderFilled
from core.domain.market import Candle
from core.exchange.paper import PaperExchange
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.market import MarketService
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.fakes import FlakyState
from tests.unit.services.engine_harness import SYMBOL, T0_MS, ScriptedProvider, at, clean_settings
from tests.unit.services.test_events_kept_in_outage import FlakyTrail


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


async def test_a_paper_fill_kept_in_an_outage_is_in_the_trail_once_after_a_kill(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)
    storage = MemoryStorage()
    trail, state = FlakyTrail(storage), FlakyState(storage.state)
    clock = SimClock(T0_MS)
    provider = ScriptedProvider(entries={at(0): 1})
    keep = tmp_path / "qt.db.unsaved-events"

    def process(paper: PaperExchange) -> tuple[Engine, EventBus, MarketService]:
        bus = EventBus(sink=trail.append, keep=FileEventKeep(keep))
        trading_state = TradingStateService(state, bus, clock)  # type: ignore[arg-type]
        bus.on_storage_failure(trading_state.fail_closed)
        engine = build_engine(
            settings,
            clock=clock,
            bus=bus,
            exchange=paper,
            trading_state=trading_state,
            provider=provider,
            state=state,  # type: ignore[arg-type]
        )
        market = MarketService(
            feed=_NoFeed(),
            clock=clock,
            candles=None,
            bus=bus,
            source="t",
            timeframe="1h",
            venue=paper,
        )
        market.on_candle(engine.on_candle)
        return engine, bus, market

    paper = paper_exchange(settings, storage, clock)
    await paper.start()
    first, _, market = process(paper)
    await market.process(SYMBOL, _candle(0, 100.0, 100.0))  # decides the entry
    entry = first.trades[SYMBOL].entry_cid

    # A full disk: the paper venue's rows fit in their pages, the trail's insert and the
    # engine's state do not. The venue fills the entry; its report is kept, then the kill.
    trail.down = state.down = True
    clock.advance_to(at(2))
    await market.process(SYMBOL, _candle(1, 100.0, 100.3))
    assert FileEventKeep(keep).left()  # the fill's report waits beside the database

    trail.down = state.down = False
    restarted = paper_exchange(settings, storage, clock)
    await restarted.start()
    again, bus, _ = process(restarted)
    await bus.flush()
    await again.start()  # finds the fill in the venue's order state (its own state lost it)

    fills = [
        e.payload["amount"]
        for e in await storage.events.list_events(OrderFilled.topic)
        if e.payload["client_order_id"] == entry
    ]
    assert fills == ["50"]  # once, as at the venue
    assert again.trades[SYMBOL].amount == D(50)
