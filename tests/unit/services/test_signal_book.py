"""The signal book: a seeded whole series and candle-by-candle appends give the same signals."""

from __future__ import annotations

import math

import pytest

from core.brains.regime import Regime, RegimeConfig
from core.market.synthetic import generate_candles
from core.services.signal_book import SignalBook
from core.signals.ema_rsi import EmaRsiConfig, EmaRsiCross


def test_appending_candles_gives_the_signals_of_the_seeded_series() -> None:
    series = generate_candles("BTC/USDT", "1h", 400, seed=4)
    provider = EmaRsiCross(EmaRsiConfig(allow_short=True))
    backtest = SignalBook(provider)
    backtest.seed(series)
    live = SignalBook(provider)
    live.seed(series.slice(0, 100))  # the warm-up history a live process starts with
    entries = 0
    for i in range(100, len(series)):
        candle = series.candle(i)
        live.append("BTC/USDT", "1h", candle)
        live.append("BTC/USDT", "1h", candle)  # a repeated candle is ignored
        a = backtest.signal_at("BTC/USDT", candle.ts_ms)
        b = live.signal_at("BTC/USDT", candle.ts_ms)
        assert a is not None and b is not None
        assert (a.entry, a.exit_long, a.exit_short) == (b.entry, b.exit_long, b.exit_short)
        assert a.confidence == b.confidence
        assert a.atr == b.atr or (math.isnan(a.atr) and math.isnan(b.atr))
        entries += a.entry != 0
    assert entries > 0


def test_unknown_symbol_or_candle_has_no_signal() -> None:
    series = generate_candles("BTC/USDT", "1h", 60, seed=4)
    book = SignalBook(EmaRsiCross())
    book.seed(series)
    assert book.signal_at("ETH/USDT", int(series.ts_ms[0])) is None
    assert book.signal_at("BTC/USDT", int(series.ts_ms[0]) + 1) is None
    assert book.frame("ETH/USDT") is None


def test_history_shorter_than_the_warm_up_is_refused() -> None:
    with pytest.raises(ValueError, match="warm-up"):
        SignalBook(EmaRsiCross(), max_history=10)


def test_the_regimes_of_appended_candles_are_those_of_the_seeded_series() -> None:
    series = generate_candles("BTC/USDT", "1h", 500, seed=9)
    config = RegimeConfig(vol_window=12, vol_history=100, confirm=2)
    backtest = SignalBook(EmaRsiCross(), regime=config)
    backtest.seed(series)
    live = SignalBook(EmaRsiCross(), regime=config)
    live.seed(series.slice(0, 50))  # still warming up: every regime unknown so far
    assert live.regime_at("BTC/USDT", int(series.ts_ms[49])) is Regime.UNKNOWN
    seen = set()
    for i in range(50, len(series)):
        candle = series.candle(i)
        live.append("BTC/USDT", "1h", candle)
        regime = live.regime_at("BTC/USDT", candle.ts_ms)
        assert regime is backtest.regime_at("BTC/USDT", candle.ts_ms)
        seen.add(regime)
    assert len(seen - {Regime.UNKNOWN}) >= 2, "one regime throughout proves little"
    assert live.regime_at("ETH/USDT", int(series.ts_ms[0])) is Regime.UNKNOWN
    assert live.regime_at("BTC/USDT", int(series.ts_ms[0]) + 1) is Regime.UNKNOWN


def test_past_its_bound_the_history_drops_a_fifth_at_once() -> None:
    series = generate_candles("BTC/USDT", "1h", 700, seed=4)
    small = RegimeConfig(vol_window=12, vol_history=100, confirm=2)  # warm-up under 200
    book = SignalBook(EmaRsiCross(), max_history=200, regime=small)
    book.seed(series.slice(0, 150))
    firsts, lengths = set(), []
    for i in range(150, len(series)):
        book.append("BTC/USDT", "1h", series.candle(i))
        assert book.signal_at("BTC/USDT", int(series.ts_ms[i])) is not None
        history = book._books["BTC/USDT"].history
        firsts.add(int(history.ts_ms[0]))
        lengths.append(len(history))
    assert max(lengths) == 200 and min(lengths[60:]) == 160  # bounded, rolled to 4/5
    assert len(firsts) == 14  # the seed, then a roll at the 51st append and every 41 after


class SlowProvider:
    """EMA/RSI computed slowly, in whichever thread asks; records the threads and the loop's
    ticks seen while it computed."""

    name = "slow"

    def __init__(self) -> None:
        import threading

        self.inner = EmaRsiCross()
        self.warmup_candles = self.inner.warmup_candles
        self.threads: list[int] = []
        self.main = threading.get_ident()
        self.gate: object = None

    def compute(self, series):  # type: ignore[no-untyped-def]
        import threading
        import time

        self.threads.append(threading.get_ident())
        time.sleep(0.2)  # a full ensemble compute, in miniature
        return self.inner.compute(series)


async def test_offloaded_signals_are_computed_off_the_loop_and_equal_in_line_ones() -> None:
    import asyncio

    series = generate_candles("BTC/USDT", "1h", 300, seed=5)
    slow = SlowProvider()
    live = SignalBook(slow, offload=True, regime=RegimeConfig(vol_window=12, vol_history=100))
    in_line = SignalBook(EmaRsiCross(), regime=RegimeConfig(vol_window=12, vol_history=100))
    live.seed(series.slice(0, 250))
    in_line.seed(series)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    for i in range(250, 253):
        candle = series.candle(i)
        live.append("BTC/USDT", "1h", candle)
        await live.prepare("BTC/USDT")
        a, b = live.signal_at("BTC/USDT", candle.ts_ms), in_line.signal_at("BTC/USDT", candle.ts_ms)
        assert a is not None and b is not None
        fields = ("entry", "exit_long", "exit_short", "confidence", "atr")
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        assert live.regime_at("BTC/USDT", candle.ts_ms) is in_line.regime_at(
            "BTC/USDT", candle.ts_ms
        )
    ticker.cancel()
    assert len(slow.threads) == 3 and slow.main not in slow.threads  # once a candle, in a worker
    assert ticks >= 30  # the loop ran on while each compute slept 0.2 s


async def test_a_frame_of_a_provider_invalidated_meanwhile_is_not_kept() -> None:
    import asyncio

    series = generate_candles("BTC/USDT", "1h", 300, seed=5)
    slow = SlowProvider()
    book = SignalBook(slow, offload=True, regime=RegimeConfig(vol_window=12, vol_history=100))
    book.seed(series)
    preparing = asyncio.create_task(book.prepare("BTC/USDT"))
    await asyncio.sleep(0.05)
    book.invalidate()  # a hand-over while the old provider computes
    await preparing
    assert len(slow.threads) == 2  # computed again by the provider now serving, in the thread
    book.signal_at("BTC/USDT", int(series.ts_ms[-1]))
    assert len(slow.threads) == 2 and slow.main not in slow.threads  # the loop never computed


async def test_a_frame_of_a_history_seeded_again_meanwhile_is_computed_again_off_the_loop() -> None:
    import asyncio

    series = generate_candles("BTC/USDT", "1h", 300, seed=5)
    slow = SlowProvider()
    book = SignalBook(slow, offload=True, regime=RegimeConfig(vol_window=12, vol_history=100))
    book.seed(series.slice(0, 250))
    preparing = asyncio.create_task(book.prepare("BTC/USDT"))
    await asyncio.sleep(0.05)
    book.seed(series)  # a universe change warms the symbol up again while it computes
    await preparing
    signal = book.signal_at("BTC/USDT", int(series.ts_ms[-1]))
    assert signal is not None and book.regime_at("BTC/USDT", int(series.ts_ms[-1])) is not None
    assert len(slow.threads) == 2 and slow.main not in slow.threads


class CountingProvider(SlowProvider):
    """Slow, and counts the computes running at once."""

    def __init__(self) -> None:
        import threading

        super().__init__()
        self.running = self.most = 0
        self.count_lock = threading.Lock()

    def compute(self, series):  # type: ignore[no-untyped-def]
        with self.count_lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().compute(series)
        finally:
            with self.count_lock:
                self.running -= 1


async def test_a_compute_cancelled_meanwhile_finishes_before_the_next_starts() -> None:
    import asyncio

    counting = CountingProvider()
    book = SignalBook(counting, offload=True, regime=RegimeConfig(vol_window=12, vol_history=100))
    for symbol in ("BTC/USDT", "ETH/USDT"):
        book.seed(generate_candles(symbol, "1h", 300, seed=5))
    first = asyncio.create_task(book.prepare("BTC/USDT"))
    await asyncio.sleep(0.05)
    first.cancel()  # a stop while the thread computes: the thread runs on
    with pytest.raises(asyncio.CancelledError):
        await first
    await book.prepare("ETH/USDT")
    assert len(counting.threads) == 2 and counting.most == 1  # never two at once


async def test_without_offload_prepare_computes_nothing() -> None:
    series = generate_candles("BTC/USDT", "1h", 300, seed=5)
    slow = SlowProvider()
    book = SignalBook(slow, regime=RegimeConfig(vol_window=12, vol_history=100))
    book.seed(series)
    await book.prepare("BTC/USDT")
    assert slow.threads == []  # the backtest's look-ups compute, in line


class BatchProvider(SlowProvider):
    """Slow, and computes several histories at once (as the ensemble does)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def compute_many(self, series):  # type: ignore[no-untyped-def]
        import threading
        import time

        self.threads.append(threading.get_ident())
        self.batches.append([s.symbol for s in series])
        time.sleep(0.2)
        return [self.inner.compute(s) for s in series]


SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


async def test_prepare_many_computes_the_symbols_in_one_worker_call_equal_to_in_line() -> None:
    import asyncio

    regime = RegimeConfig(vol_window=12, vol_history=100)
    series = {s: generate_candles(s, "1h", 300, seed=5 + i) for i, s in enumerate(SYMBOLS)}
    batch = BatchProvider()
    live = SignalBook(batch, offload=True, regime=regime)
    in_line = SignalBook(EmaRsiCross(), regime=regime)
    for s in SYMBOLS:
        live.seed(series[s].slice(0, 250))
        in_line.seed(series[s])
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    for i in range(250, 253):
        for s in SYMBOLS:
            live.append(s, "1h", series[s].candle(i))
        await live.prepare_many([*SYMBOLS, "XRP/USDT"])  # one not held: ignored
        for s in SYMBOLS:
            await live.prepare(s)  # what each cycle does next: ready, nothing computed
            ts = int(series[s].ts_ms[i])
            a, b = live.signal_at(s, ts), in_line.signal_at(s, ts)
            assert a is not None and b is not None
            fields = ("entry", "exit_long", "exit_short", "confidence", "atr")
            assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
            assert live.regime_at(s, ts) is in_line.regime_at(s, ts)
    ticker.cancel()
    assert batch.batches == [list(SYMBOLS)] * 3  # one call a candle, all three symbols
    assert batch.main not in batch.threads and ticks >= 30  # in a worker, the loop ran on


async def test_prepare_many_computes_again_what_an_invalidate_made_stale() -> None:
    import asyncio

    regime = RegimeConfig(vol_window=12, vol_history=100)
    batch = BatchProvider()
    book = SignalBook(batch, offload=True, regime=regime)
    for i, s in enumerate(SYMBOLS):
        book.seed(generate_candles(s, "1h", 300, seed=5 + i))
    preparing = asyncio.create_task(book.prepare_many(SYMBOLS))
    await asyncio.sleep(0.05)
    book.invalidate()  # a hand-over while the old provider computes
    await preparing
    assert batch.batches == [list(SYMBOLS)] * 2  # all again, in the thread
    for s in SYMBOLS:
        assert book.frame(s) is not None
    assert len(batch.threads) == 2 and batch.main not in batch.threads


async def test_without_offload_prepare_many_computes_nothing() -> None:
    batch = BatchProvider()
    book = SignalBook(batch, regime=RegimeConfig(vol_window=12, vol_history=100))
    book.seed(generate_candles("BTC/USDT", "1h", 300, seed=5))
    await book.prepare_many(["BTC/USDT"])
    assert batch.threads == [] and batch.batches == []
