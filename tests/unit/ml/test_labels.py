"""Labels: the Exit Brain's TP1-before-stop, the forward direction, their end rows, and
thresholds fitted on training rows only."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from core.brains.exit_config import DynamicConfig, ExitConfig, LegSpec, Target
from core.brains.exits import PlanRequest, plan_exits
from core.domain.enums import PositionSide
from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles
from core.ml.barriers import first_barriers
from core.ml.labels import (
    band_from_train,
    direction_labels,
    forward_returns,
    grown_triple_barrier_labels,
    percentile_band,
    triple_barrier_labels,
)

HOUR_MS = 3_600_000


def candles(rows: list[tuple[float, float, float, float]]) -> CandleSeries:
    """Return candles from (open, high, low, close) rows."""
    o, h, lo, c = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    n = len(rows)
    return CandleSeries.from_columns(
        "BTC/USDT", "1h", np.arange(n, dtype=np.int64) * HOUR_MS, o, h, lo, c, np.ones(n)
    )


FLAT = (100.0, 100.1, 99.9, 100.0)


# --- triple barrier -----------------------------------------------------------------------------


def test_long_tp1_before_stop_stop_first_same_candle_both_and_horizon() -> None:
    rows = [
        FLAT,  # 0: decides; enters at open[1] = 100
        FLAT,  # 1
        (100.0, 102.0, 99.5, 101.0),  # 2: reaches TP1 +1.95 % (101.95): label 0 and 1 up
        (101.0, 101.5, 97.0, 98.0),  # 3: entry 101 (label 2): stop 98.98 hit; TP1 102.97 not
        (98.0, 100.5, 95.0, 99.0),  # 4: entry 98 (label 3): TP1 99.91 and stop 96.04 both: stop
        (99.0, 99.5, 98.9, 99.2),  # 5
        (99.2, 99.6, 98.9, 99.3),  # 6
    ]
    labels = triple_barrier_labels(candles(rows), horizon=3, atr=np.ones(7))
    assert labels.outcome[:4].tolist() == [1, 1, -1, -1]
    assert labels.end_idx[:4].tolist() == [2, 2, 3, 4]
    assert labels.y[:4].tolist() == [1, 1, 0, 0]
    assert labels.ret[0] == pytest.approx(0.0195)
    assert labels.ret[2] == pytest.approx(-0.02)
    # label 4 enters at 99: nothing reached by the horizon (rows 5-7) but row 7 does not exist
    assert labels.outcome[4] == 0 and not labels.valid[4]
    assert labels.valid[:4].all()


def test_a_timeout_is_a_valid_negative_ending_at_the_horizon() -> None:
    labels = triple_barrier_labels(candles([FLAT] * 8), horizon=3, atr=np.ones(8))
    assert labels.valid[:5].all() and not labels.valid[5:].any()
    assert (labels.outcome[:5] == 0).all() and (labels.y[:5] == 0).all()
    assert labels.end_idx[:5].tolist() == [3, 4, 5, 6, 7]
    assert labels.end_ts_ms[0] == 3 * HOUR_MS


def test_a_label_resolved_before_the_data_ends_is_valid_though_its_horizon_is_past_it() -> None:
    rows = [FLAT, FLAT, (100.0, 103.0, 99.9, 102.0)]
    labels = triple_barrier_labels(candles(rows), horizon=24, atr=np.ones(3))
    # labels 0 and 1 (entry at the open of candle 2) reach TP1 in candle 2; label 2 has no entry
    assert labels.valid.tolist() == [True, True, False]
    assert labels.end_idx[:2].tolist() == [2, 2]


def test_short_mirrors_and_a_gap_through_the_stop_fills_at_the_open() -> None:
    rows = [
        FLAT,
        FLAT,  # 1: entry 100 for label 0; short TP1 98.05, stop 102
        (105.0, 106.0, 104.0, 105.0),  # 2: gaps over the stop: fills at the open, 105
        (105.0, 105.2, 102.0, 102.5),  # 3: label 1 (entry 105): TP1 102.95 reached
    ]
    labels = triple_barrier_labels(
        candles(rows), horizon=3, side=PositionSide.SHORT, atr=np.ones(4)
    )
    assert labels.outcome[:2].tolist() == [-1, 1]
    assert labels.ret[0] == pytest.approx(-0.05)
    assert labels.ret[1] == pytest.approx(0.0195)


def test_a_label_depends_only_on_candles_up_to_its_end() -> None:
    series = generate_candles("ETH/USDT", "1h", 700, seed=11)
    base = triple_barrier_labels(series, horizon=24)
    rng = np.random.default_rng(0)
    for t in rng.integers(20, 600, 12).tolist():
        e = int(base.end_idx[t])
        bump = np.ones(len(series))
        bump[e + 1 :] = np.exp(rng.normal(0, 0.1, len(series) - e - 1))
        later = CandleSeries.from_columns(
            series.symbol,
            series.timeframe,
            series.ts_ms,
            series.open * bump,
            series.high * bump,
            series.low * bump,
            series.close * bump,
            series.volume,
        )
        again = triple_barrier_labels(later, horizon=24)
        assert again.outcome[t] == base.outcome[t] and again.end_idx[t] == e
        assert again.ret[t] == base.ret[t]
    assert {-1, 0, 1} <= set(base.outcome[base.valid].tolist())


@pytest.mark.parametrize("side", [PositionSide.LONG, PositionSide.SHORT])
@pytest.mark.parametrize(
    "exits",
    [
        ExitConfig(dynamic=DynamicConfig(enabled=True)),
        ExitConfig(dynamic=DynamicConfig(enabled=True, scale_stop=False, max_stop_pct=Decimal(3))),
        ExitConfig(
            legs=(LegSpec(target=Target.atr("1.5"), fraction=Decimal(1)),),
            stop=Target.atr(1),
            dynamic=DynamicConfig(enabled=True),
        ),
        ExitConfig(legs=(LegSpec(target=Target.atr(2), fraction=Decimal(1)),)),
    ],
)
def test_barriers_are_where_the_exit_brain_plans_them(
    side: PositionSide, exits: ExitConfig
) -> None:
    rng = np.random.default_rng(1)
    entry = np.round(rng.uniform(0.5, 5000.0, 40), 2)
    atr = entry * rng.uniform(0.002, 0.05, 40)
    confidence = rng.uniform(0.0, 1.0, 40)
    tp, sl = first_barriers(exits, entry, atr, confidence)
    sign = 1.0 if side is PositionSide.LONG else -1.0
    for i in range(40):
        plan = plan_exits(
            PlanRequest(
                side=side,
                entry_price=Decimal(str(entry[i])),
                amount=Decimal(1),
                amount_step=Decimal("0.0001"),
                price_tick=Decimal("0.00000001"),
                atr=float(atr[i]),
                confidence=float(confidence[i]),
                config=exits,
            )
        )
        assert plan.stop is not None
        assert entry[i] * (1 + sign * tp[i]) == pytest.approx(float(plan.legs[0].price), rel=1e-8)
        assert entry[i] * (1 - sign * sl[i]) == pytest.approx(float(plan.stop.price), rel=1e-8)
    assert len(set(np.round(tp, 9).tolist())) > 1  # the scaling was exercised


def test_dynamic_barriers_need_an_atr_and_price_targets_are_refused() -> None:
    series = generate_candles("ETH/USDT", "1h", 100, seed=4)
    labels = triple_barrier_labels(
        series, horizon=5, exits=ExitConfig(dynamic=DynamicConfig(enabled=True))
    )
    assert not labels.valid[:14].any() and labels.valid[14:90].all()  # ATR 14 warm-up
    price_tp = ExitConfig(legs=(LegSpec(target=Target.price(150), fraction=Decimal(1)),))
    with pytest.raises(ValueError, match="TP1 is an absolute price"):
        triple_barrier_labels(series, exits=price_tp)
    with pytest.raises(ValueError, match="atr has 99 rows, the series 100"):
        triple_barrier_labels(series, atr=np.ones(99))


# --- direction --------------------------------------------------------------------------------


def test_direction_with_and_without_a_band() -> None:
    closes = [100.0, 101.0, 100.5, 100.6, 99.0, 99.0]
    series = candles([(c, c + 1, c - 1, c) for c in closes])
    plain = direction_labels(series, 1)
    assert plain.outcome.tolist() == [1, -1, 1, -1, 0, 0]
    assert plain.valid.tolist() == [True, True, True, True, False, False]
    assert plain.end_idx.tolist() == [1, 2, 3, 4, 5, 5]
    banded = direction_labels(series, 1, band=0.002)
    assert banded.outcome.tolist() == [1, -1, 0, -1, 0, 0]
    assert banded.valid.tolist() == [True, True, False, True, False, False]
    assert direction_labels(series, 2).ret[0] == pytest.approx(np.log(100.5 / 100.0))


# --- thresholds from training rows only ---------------------------------------------------------


def test_thresholds_see_only_the_training_rows() -> None:
    series = generate_candles("ETH/USDT", "1h", 2000, seed=8)
    fwd = forward_returns(series, 4)
    train = np.arange(100, 1000)
    band = band_from_train(fwd, train)
    tails = percentile_band(fwd, train)
    future = fwd.copy()
    future[1000:] *= 50.0  # a wild future must not move a threshold fitted before it
    assert band_from_train(future, train) == band
    assert percentile_band(future, train) == tails
    assert (
        band_from_train(future, np.arange(100, 1996)) != band
    )  # it does move the whole-series one
    inside = (np.abs(fwd[train]) <= band[1]).mean()
    assert inside == pytest.approx(1 / 3, abs=0.01)
    assert (fwd[train] > tails[1]).mean() == pytest.approx(0.25, abs=0.01)


def test_a_training_row_without_a_forward_return_is_refused() -> None:
    series = generate_candles("ETH/USDT", "1h", 100, seed=8)
    fwd = forward_returns(series, 4)
    with pytest.raises(ValueError, match="training row 96 has no forward return"):
        band_from_train(fwd, np.arange(50, 100))
    with pytest.raises(ValueError, match="at least one training row"):
        percentile_band(fwd, np.arange(0))


@pytest.mark.parametrize(
    "exits", [ExitConfig(), ExitConfig(dynamic=DynamicConfig(enabled=True))], ids=["fixed", "dyn"]
)
def test_labels_grown_with_the_history_equal_those_computed_whole(exits: ExitConfig) -> None:
    series = generate_candles("BTC/USDT", "1h", 400, seed=5)
    labels = triple_barrier_labels(series.slice(0, 300), horizon=24, exits=exits)
    for n in (301, 302, 310, 311, 400):  # a candle at a time, and several at once
        grown = grown_triple_barrier_labels(labels, series.slice(0, n), horizon=24, exits=exits)
        whole = triple_barrier_labels(series.slice(0, n), horizon=24, exits=exits)
        assert grown.name == whole.name
        for field in ("ts_ms", "y", "outcome", "valid", "end_idx", "end_ts_ms", "ret"):
            assert np.array_equal(getattr(grown, field), getattr(whole, field), equal_nan=True)
        labels = grown
