"""Market rules inferred from candles: the tick the prices sit on, a step that stays tradable."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from core.domain.market import CandleSeries
from core.market.importers import read_candle_file
from core.market.rules_inference import infer_rules
from core.market.synthetic import generate_candles

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
T0 = 1_704_067_200_000
NOW_MS = 4_102_444_800_000  # 2100: every stored candle has closed


def series(prices: list[float], volumes: list[float] | None = None) -> CandleSeries:
    p = np.array(prices, dtype=np.float64)
    v = np.array(volumes if volumes is not None else [1.0] * len(prices), dtype=np.float64)
    ts = T0 + np.arange(len(p), dtype=np.int64) * 3_600_000
    return CandleSeries.from_columns("X/USDT", "1h", ts, p, p * 1.0, p * 1.0, p, v)


@pytest.mark.parametrize(
    ("prices", "tick"),
    [
        ([0.6201, 0.6234, 0.6199], D("0.0001")),  # XRP-like
        ([0.09871, 0.10002, 0.1], D("0.00001")),  # DOGE-like
        ([78205.96, 78087.5, 78100.0], D("0.01")),
        ([78087.6, 78100.0, 78087.5], D("0.1")),
        ([120.0, 121.0, 119.0], D(1)),  # whole prices: never coarser than 1
    ],
)
def test_the_tick_is_the_finest_decimal_the_prices_use(prices: list[float], tick: D) -> None:
    assert infer_rules(series(prices), min_notional=D(5)).price_tick == tick


def test_float_noise_does_not_make_a_finer_tick() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 as a float: still a price on a 0.1 grid.
    assert infer_rules(series([0.1 + 0.2, 0.7, 1.1]), min_notional=D(5)).price_tick == D("0.1")


def test_prices_without_a_short_decimal_get_six_significant_digits_at_the_lowest() -> None:
    walk = generate_candles("X/USDT", "1h", 500, seed=3, start_price=0.0001)
    rules = infer_rules(walk, min_notional=D(5))
    low = float(walk.low.min())
    assert D(str(low)).adjusted() - 5 == rules.price_tick.adjusted()
    high = generate_candles("Y/USDT", "1h", 500, seed=3, start_price=100_000)
    assert infer_rules(high, min_notional=D(5)).price_tick == D("0.1")


def test_the_step_is_the_finest_volume_increment_when_that_keeps_orders_tradable() -> None:
    rules = infer_rules(series([1.5, 1.6], volumes=[12.3, 40.7]), min_notional=D(5))
    assert rules.amount_step == D("0.1") == rules.min_amount


def test_the_step_never_makes_the_minimum_order_worth_less_than_ten_steps() -> None:
    # Whole-coin volumes at 90,000: a step of 1 would make the smallest order 90,000.
    rules = infer_rules(series([90_000.0, 91_000.0], volumes=[3.0, 7.0]), min_notional=D(5))
    assert rules.amount_step * D(91_000) * 10 <= D(5)
    assert rules.amount_step * D(91_000) * 100 > D(5)


def test_cheap_coins_get_coarse_steps_and_dear_ones_fine_steps() -> None:
    cheap = generate_candles("C/USDT", "1h", 300, seed=1, start_price=0.0001)
    dear = generate_candles("D/USDT", "1h", 300, seed=1, start_price=100_000)
    c, d = (infer_rules(s, min_notional=D(5)) for s in (cheap, dear))
    assert c.amount_step >= D(100) and d.amount_step <= D("0.00001")
    for s, r in ((cheap, c), (dear, d)):  # ten steps fit in the minimum notional at every price
        assert r.amount_step * D(str(float(s.high.max()))) * 10 <= D(5)


def test_a_series_without_a_positive_price_is_refused() -> None:
    with pytest.raises(ValueError, match="no positive price"):
        infer_rules(series([0.0, -1.0]), min_notional=D(5))


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not present")
@pytest.mark.parametrize(
    ("name", "tick", "coarsest_step"),
    [
        ("BTC_USDT-1h.csv.gz", D("0.01"), D("0.00001")),  # Binance: tick 0.01, step 0.00001
        ("ETH_USDT-1h.csv.gz", D("0.01"), D("0.0001")),  # Binance: tick 0.01, step 0.0001
    ],
)
def test_real_binance_candles_give_binances_tick_and_a_step_no_coarser_than_its(
    name: str, tick: D, coarsest_step: D
) -> None:
    loaded = read_candle_file(DATA / name, now_ms=NOW_MS).series
    rules = infer_rules(loaded, min_notional=D(5))
    assert rules.price_tick == tick
    assert rules.amount_step <= coarsest_step
