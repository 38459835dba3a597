"""A hand-driven process for engine tests: paper exchange, memory storage, SimClock, real wiring.

Candles are fed one at a time through ``MarketService.process`` (fills first, then the engine's
cycle), exactly as the demo and the backtest do; a scripted signal provider decides on which
candles the engine wants in or out.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pytest

from bot.trading import build_engine
from core.clock import SimClock
from core.config import Settings, load_settings
from core.domain.events import Event
from core.domain.market import Candle, CandleSeries
from core.domain.orders import Order
from core.domain.policy import Policy
from core.exchange.paper import PaperExchange
from core.exchange.sim import FillModelConfig
from core.market.rules_book import RulesBook
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.market import MarketService
from core.services.sizing_service import SizingService
from core.services.sizing_sources import SizingSource
from core.services.trading_state import TradingStateService
from core.signals.base import SignalFrame
from storage.memory import MemoryStorage

SYMBOL = "BTC/USDT"
T0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
HOUR_MS = 3_600_000


def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Settings:
    """Return the default settings, but for one round position: no .env (an empty dir), no
    QT__ variables except a 5_001 USDT position cap (the percent cap lifted) with 2 % risk,
    so every entry decided at 100 is exactly 50 units at the expected fill of 100.02 (100 plus
    2 bps of slippage)."""
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    monkeypatch.setenv("QT__RISK__RISK_PER_TRADE", "0.02")
    monkeypatch.setenv("QT__RISK__MAX_POSITION_NOTIONAL", "5001")
    monkeypatch.setenv("QT__RISK__MAX_POSITION_PCT", "1")
    return load_settings()


def at(i: int) -> int:
    """Return the open time of candle ``i``."""
    return T0_MS + i * HOUR_MS


@dataclass
class ScriptedProvider:
    """Signals at chosen candles (by open time): +1/-1 entries, long/short exits."""

    entries: dict[int, int] = field(default_factory=dict)
    exit_long: set[int] = field(default_factory=set)
    exit_short: set[int] = field(default_factory=set)
    name: str = "scripted"
    warmup_candles: int = 1

    def compute(self, series: CandleSeries) -> SignalFrame:
        """Return the scripted signals (causal by construction: each row reads only its ts)."""
        ts = [int(t) for t in series.ts_ms]
        n = len(ts)
        return SignalFrame(
            ts_ms=series.ts_ms,
            entry=np.array([self.entries.get(t, 0) for t in ts], dtype=np.int8),
            exit_long=np.array([t in self.exit_long for t in ts], dtype=np.bool_),
            exit_short=np.array([t in self.exit_short for t in ts], dtype=np.bool_),
            confidence=np.full(n, 0.5),
            atr=np.full(n, np.nan),
        )


class _NoFeed:
    """The harness pushes candles itself; ``run()`` is never called."""

    async def candles(self) -> AsyncIterator[tuple[str, Candle]]:  # pragma: no cover
        return
        yield


class Harness:
    """The process under test, with every event recorded."""

    def __init__(
        self,
        settings: Settings,
        provider: ScriptedProvider,
        *,
        paper_class: type[PaperExchange] = PaperExchange,
        persist: bool = False,
        book: RulesBook | None = None,
        policy: Callable[[], Policy] | None = None,
        sizing: SizingSource | None = None,
    ) -> None:
        self.settings = settings
        self.clock = SimClock(T0_MS)
        self.storage = MemoryStorage()
        self.events: list[Event] = []
        self.bus = EventBus(sink=self.storage.events.append)
        self.bus.subscribe("*", self._record, name="harness.record")
        self.paper = paper_class(
            storage=self.storage,
            clock=self.clock,
            fill_config=FillModelConfig(
                maker_fee=settings.paper.maker_fee,
                taker_fee=settings.paper.taker_fee,
                slippage_bps=settings.paper.slippage_bps,
            ),
            starting_balance=settings.paper.starting_balance,
            quote_currency=settings.trading.quote_currency,
            market_type=settings.exchange.market_type,
            max_leverage=settings.trading.max_leverage,
            margin=settings.margin.config(),
            rules=None if book is None else book.rules,  # refuses off-grid orders, like a venue
        )
        self.trading_state = TradingStateService(self.storage.state, self.bus, self.clock)
        self.engine: Engine = build_engine(
            settings,
            clock=self.clock,
            bus=self.bus,
            exchange=self.paper,
            trading_state=self.trading_state,
            provider=provider,
            state=self.storage.state if persist else None,  # the engine's trades kept
            book=book,
            policy=policy,  # the policy in force (None: the settings' static one)
            # each entry's size multiplier (None: the one the settings choose)
            sizing=None
            if sizing is None
            else SizingService(bus=self.bus, clock=self.clock, source=sizing),
        )
        self.market = MarketService(
            feed=_NoFeed(),
            clock=self.clock,
            candles=None,
            bus=self.bus,
            source="test",
            timeframe="1h",
            venue=self.paper,
        )
        self.market.on_candle(self.engine.on_candle, before_fills=self.engine.before_fills)

    async def _record(self, event: Event) -> None:
        self.events.append(event)

    async def start(self) -> Harness:
        """Start the paper exchange (seeds the starting balance)."""
        await self.paper.start()
        return self

    async def candle(
        self, i: int, open_: float, high: float, low: float, close: float, *, symbol: str = SYMBOL
    ) -> None:
        """Close candle ``i`` of ``symbol`` now: advance the clock to its close and process it."""
        assert low <= min(open_, close) and high >= max(open_, close), "malformed test candle"
        self.clock.advance_to(at(i) + HOUR_MS)
        candle = Candle(ts_ms=at(i), open=open_, high=high, low=low, close=close, volume=1.0)
        await self.market.process(symbol, candle)
        assert self.bus.handler_failures == 0, "an event handler raised; see the log"

    async def candles(self, rows: Iterable[tuple[int, float, float, float, float]]) -> None:
        """Process several candles given as ``(i, open, high, low, close)``."""
        for row in rows:
            await self.candle(*row)

    def of(self, kind: type[Event]) -> list[Event]:
        """Return the recorded events of one type, oldest first."""
        return [e for e in self.events if isinstance(e, kind)]

    async def open_orders(self) -> list[Order]:
        """Return the exchange's open orders of the test symbol."""
        return await self.paper.fetch_open_orders(SYMBOL)

    async def quote_total(self) -> Decimal:
        """Return the quote balance (free + reserved)."""
        return (await self.paper.fetch_balances())[self.settings.trading.quote_currency].total
