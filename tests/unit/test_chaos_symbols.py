"""The chaos harness's venue and cadence with several symbols (``tests/chaos_venue.py``,
``tests/chaos_bot.py``): each symbol fills at its own price, covers its own position, counts
toward the open positions at once; the cadence of a symbol after the first is shifted so its
entries sometimes coincide with the first symbol's and sometimes not."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np

from core.domain.market import CandleSeries
from tests.chaos_bot import CadenceProvider
from tests.chaos_venue import ChaosVenue, chaos_candles

START_MS = 1_767_225_600_000
TF_MS = 60_000


def venue(tmp_path: Path) -> ChaosVenue:
    """A venue of BTC/USDT and ETH/USDT whose market time stands at the start (speed 0)."""
    series = [chaos_candles(s, "1m", START_MS, 50, seed=7) for s in ("BTC/USDT", "ETH/USDT")]
    return ChaosVenue(
        series, start_ms=START_MS, anchor_wall_ms=0, speed=0.0, state_path=tmp_path / "v.json"
    )


def market(v: ChaosVenue, symbol: str, side: str, qty: str, *, reduce: bool = False) -> None:
    v._post_order(
        {
            "symbol": symbol,
            "newClientOrderId": f"{symbol}-{side}-{len(v.orders)}",
            "side": side,
            "type": "MARKET",
            "quantity": qty,
            "reduceOnly": "true" if reduce else "false",
        }
    )


def stop(v: ChaosVenue, symbol: str, side: str, qty: str, trigger: str) -> None:
    v._post_algoOrder(
        {
            "symbol": symbol,
            "clientAlgoId": f"{symbol}-stop-{len(v.algos)}",
            "side": side,
            "type": "STOP_MARKET",
            "quantity": qty,
            "triggerPrice": trigger,
            "reduceOnly": "true",
        }
    )


def test_each_symbol_fills_at_its_own_price_and_the_most_open_at_once_is_kept(
    tmp_path: Path,
) -> None:
    v = venue(tmp_path)
    btc, eth = v.prices["BTCUSDT"], v.prices["ETHUSDT"]
    assert btc != eth
    market(v, "BTCUSDT", "BUY", "0.1")
    market(v, "ETHUSDT", "SELL", "2")
    assert [t["price"] for t in v.trades] == [str(btc), str(eth)]
    assert v.position == {"BTCUSDT": Decimal("0.1"), "ETHUSDT": Decimal(-2)}
    assert v.max_open["count"] == 2 and v.max_open["symbols"] == ["BTCUSDT", "ETHUSDT"]

    market(v, "ETHUSDT", "BUY", "5", reduce=True)  # closes ETH, never reverses it
    assert v.position["ETHUSDT"] == 0 and v.max_open["count"] == 2  # the most, not the now
    v.save()
    again = venue(tmp_path)
    again.load()
    assert again.max_open == v.max_open  # a restarted venue keeps it


def test_a_position_is_covered_only_by_a_stop_of_its_own_symbol(tmp_path: Path) -> None:
    v = venue(tmp_path)
    market(v, "BTCUSDT", "BUY", "0.1")
    stop(v, "ETHUSDT", "SELL", "0.1", "1000")  # another symbol's stop covers nothing here
    v._watch_naked()
    assert set(v.naked_since) == {"BTCUSDT"}
    stop(v, "BTCUSDT", "SELL", "0.1", "40000")
    v._watch_naked()
    assert v.naked_since == {}
    [span] = v.naked_spans
    assert span["symbol"] == "BTCUSDT"
    assert [s["symbol"] for s in v.snapshot()["naked_open"]] == []


def series(symbol: str, n: int) -> CandleSeries:
    ts = START_MS + TF_MS * np.arange(n, dtype=np.int64)
    ones = np.ones(n)
    return CandleSeries.from_columns(symbol, "1m", ts, ones, ones, ones, ones, ones)


def test_the_cadence_of_a_later_symbol_sometimes_coincides_with_the_first_and_sometimes_not() -> (
    None
):
    provider = CadenceProvider(every=6, tf_ms=TF_MS, symbols=("BTC/USDT", "ETH/USDT"))
    n = 6 * 4 * 20  # 20 epochs
    btc = provider.compute(series("BTC/USDT", n))
    eth = provider.compute(series("ETH/USDT", n))
    k = (btc.ts_ms // TF_MS) % 6
    assert set(k[btc.entry != 0]) == {0}  # the first symbol: the plain cadence
    btc_on = set(np.flatnonzero(btc.entry != 0))
    eth_on = set(np.flatnonzero(eth.entry != 0))
    assert btc_on & eth_on and eth_on - btc_on  # some on the same candle, some not
    shifts = {i - max(b for b in btc_on if b <= i) for i in eth_on if i >= min(btc_on)}
    assert shifts == {0, 1, 3}  # on BTC's candle, one later, on BTC's exit candle
    again = provider.compute(series("ETH/USDT", n))  # a restarted process decides the same
    assert np.array_equal(again.entry, eth.entry)
