"""The hand-over provider serves one provider, then its successor, and explains as it does."""

from __future__ import annotations

from core.market.synthetic import generate_candles
from core.services.signal_book import SignalBook
from core.signals.handover import HandOverProvider
from tests.unit.services.engine_harness import ScriptedProvider
from tests.unit.services.test_engine_explanations import WHY, Explaining


def test_the_book_serves_the_successor_from_the_hand_over_on() -> None:
    candles = generate_candles("BTC/USDT", "1h", 50, seed=1)
    last = int(candles.ts_ms[-1])
    first, successor = (
        ScriptedProvider(name="ema_rsi"),
        Explaining(entries={last: 1}, name="ensemble"),
    )
    signals = HandOverProvider(first)
    book = SignalBook(signals)
    book.seed(candles)
    signal = book.signal_at("BTC/USDT", last)
    assert signals.name == "ema_rsi" and signal is not None and signal.entry == 0
    assert book.explain("BTC/USDT", last, "unknown") is None  # the baseline says nothing

    signals.hand_over(successor)
    book.invalidate()  # the cached frame was the baseline's
    signal = book.signal_at("BTC/USDT", last)
    assert signals.name == "ensemble" and signal is not None and signal.entry == 1
    assert book.explain("BTC/USDT", last, "unknown") == WHY
