"""Several symbols' candles of one close (qt run, the demo): the engine appends them all and
computes their signals together in one worker-thread call before the symbols' cycles run,
each of which finds its frame ready; the orders are those of the symbol-by-symbol path."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.config import Settings
from core.domain.events import OrderFilled
from core.domain.market import CandleSeries
from core.market.feeds import ReplayFeed
from core.market.synthetic import generate_candles
from core.services.market import MarketService
from core.signals.base import SignalFrame
from tests.unit.services.engine_harness import T0_MS, Harness, ScriptedProvider, at, clean_settings

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


@pytest.fixture
def st_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    return clean_settings(monkeypatch, tmp_path)


@dataclass
class Batching(ScriptedProvider):
    """Scripted signals that record each compute: alone (symbol) or together (symbols)."""

    computes: list[tuple[str, ...]] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)

    def compute(self, series: CandleSeries) -> SignalFrame:
        self.computes.append((series.symbol,))
        self.threads.add(threading.get_ident())
        return super().compute(series)

    def compute_many(self, series: Sequence[CandleSeries]) -> list[SignalFrame]:
        self.computes.append(tuple(s.symbol for s in series))
        self.threads.add(threading.get_ident())
        return [ScriptedProvider.compute(self, s) for s in series]


async def run(settings: Settings, *, batched: bool) -> tuple[Harness, Batching]:
    provider = Batching(entries={at(3): 1, at(5): 1, at(8): -1}, exit_long={at(9)})
    h = await Harness(settings, provider).start()
    h.engine.signals.offload = True  # a running process: the signals off the loop
    series = {
        s: generate_candles(s, "1h", 12, seed=i, start_ms=T0_MS, start_price=100.0)
        for i, s in enumerate(SYMBOLS)
    }
    market = MarketService(
        feed=ReplayFeed(series, h.clock, drive_clock=True),
        clock=h.clock,
        candles=None,
        bus=h.bus,
        source="test",
        timeframe="1h",
        venue=h.paper,
    )
    market.on_candle(h.engine.on_candle, before_fills=h.engine.before_fills)
    if batched:
        market.before_batch(h.engine.before_batch)
    await market.run()
    return h, provider


async def test_one_close_s_signals_are_computed_together_before_the_cycles(
    st_settings: Settings,
) -> None:
    h, provider = await run(st_settings, batched=True)
    plain, alone = await run(st_settings, batched=False)

    assert provider.computes == [SYMBOLS] * 12  # one compute a close, none in the cycles
    assert alone.computes == [(s,) for _ in range(12) for s in SYMBOLS]
    assert threading.get_ident() not in provider.threads  # in a worker thread
    fills = [(f.symbol, f.side, f.amount, f.price) for f in h.of(OrderFilled)]  # type: ignore[attr-defined]
    assert fills and fills == [
        (f.symbol, f.side, f.amount, f.price)  # type: ignore[attr-defined]
        for f in plain.of(OrderFilled)
    ]
    assert h.engine.decided == plain.engine.decided
