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
