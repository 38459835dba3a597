"""The meta-strategy: per regime, the candidate with the better resolved record; the fallback
while records are thin; an outcome counts only from the candle where it resolved."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from core.brains.exit_config import ExitConfig, LegSpec, Target
from core.brains.regime import Regime, RegimeConfig, detect_regimes
from core.domain.market import CandleSeries
from core.domain.policy import Policy
from core.market.synthetic import generate_candles
from core.ml.labels import triple_barrier_labels
from core.signals.base import Signal, SignalFrame
from core.signals.meta import MetaConfig, MetaStrategy

REGIME = RegimeConfig(vol_window=12, vol_history=48, confirm=2)
# TP1 +1 %, stop -1 %: outcomes resolve within a few candles on this synthetic market
EXITS = ExitConfig(legs=(LegSpec(target=Target.pct(1), fraction=Decimal(1)),), stop=Target.pct(1))


class Every:
    """Enter long every ``k`` candles (from ``offset``), exit on every ``m``-th."""

    def __init__(self, name: str, k: int, offset: int = 0, *, short: bool = False) -> None:
        self.name, self.k, self.offset, self.short = name, k, offset, short
        self.warmup_candles = 1

    def compute(self, series: CandleSeries) -> SignalFrame:
        n = len(series)
        rows = np.arange(n)
        entry = np.where((rows % self.k) == self.offset, -1 if self.short else 1, 0)
        return SignalFrame(
            ts_ms=series.ts_ms,
            entry=entry.astype(np.int8),
            exit_long=(rows % 7) == 3,
            exit_short=(rows % 5) == 1,
            confidence=np.full(n, 0.6 if self.short else 0.4),
            atr=np.full(n, float(self.k)),
        )


def meta(*candidates: Every, min_record: int = 5, window: int = 0) -> MetaStrategy:
    return MetaStrategy(
        candidates,
        MetaConfig(min_record=min_record, window=window, horizon=12, fallback="a", regime=REGIME),
        exits=EXITS,
    )


def falling(n: int = 600) -> CandleSeries:
    """Return a market falling 0.3 % a candle on average: longs lose, shorts win."""
    rng = np.random.default_rng(3)
    close = 100.0 * np.exp(np.cumsum(rng.normal(-0.003, 0.006, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    wick = np.abs(rng.normal(0, 0.002, n)) + 0.0005
    return CandleSeries.from_columns(
        "BTC/USDT",
        "1h",
        1_704_067_200_000 + np.arange(n, dtype=np.int64) * 3_600_000,
        open_,
        np.maximum(open_, close) * (1 + wick),
        np.minimum(open_, close) * (1 - wick),
        close,
        np.ones(n),
    )


def test_the_candidate_with_the_better_record_is_picked_and_its_signal_used() -> None:
    series = falling()  # longs lose, shorts win: "b" (short) earns the better record
    m = meta(Every("a", 3), Every("b", 3, 1, short=True))
    frame = m.compute(series)
    assert frame.sources == ("a", "b") and frame.chosen is not None
    late = slice(400, None)
    picked_b = frame.chosen[late] == 1
    assert picked_b.mean() > 0.9
    rows = np.flatnonzero(frame.chosen == 1)
    assert (frame.entry[rows] == np.where(rows % 3 == 1, -1, 0)).all()  # b's own entries
    assert (frame.confidence[rows] == 0.6).all() and (frame.atr[rows] == 3.0).all()
    assert frame.score is not None and np.isfinite(frame.score[rows]).all()
    assert frame.record is not None and (frame.record[rows] >= 5).all()
    # every candidate's exits ride along; the frame's are any candidate's
    i = int(rows[-1])
    signal = Signal.at(frame, i)
    assert signal.provider == "b"
    assert signal.wants_exit(long=True, opened_by="a") == bool(i % 7 == 3)
    assert signal.wants_exit(long=False, opened_by="b") == bool(i % 5 == 1)
    assert (frame.exit_long == ((np.arange(len(series)) % 7) == 3)).all()


def test_the_fallback_trades_while_records_are_thin_or_the_regime_is_unknown() -> None:
    series = falling()
    regimes = detect_regimes(series, REGIME)
    frame = meta(Every("a", 3), Every("b", 3, 1, short=True), min_record=10_000).compute(series)
    assert frame.chosen is not None and frame.score is not None
    assert (frame.chosen == 0).all()  # nobody reaches the record size: "a", the fallback
    assert np.isnan(frame.score).all()
    unknown = regimes == Regime.UNKNOWN
    assert unknown[:40].all()
    frame = meta(Every("a", 3), Every("b", 3, 1, short=True)).compute(series)
    assert frame.chosen is not None and (frame.chosen[unknown] == 0).all()


class Once(Every):
    """Enter long on one row only."""

    def __init__(self, name: str, row: int) -> None:
        super().__init__(name, 1)
        self.row = row

    def compute(self, series: CandleSeries) -> SignalFrame:
        frame = super().compute(series)
        entry = np.zeros(len(series), dtype=np.int8)
        if self.row < len(series):
            entry[self.row] = 1
        return replace(frame, entry=entry)


def test_an_outcome_counts_only_from_the_candle_where_it_resolved() -> None:
    series, t = falling(), 100
    regimes = detect_regimes(series, REGIME)
    assert regimes[t] != Regime.UNKNOWN
    label = triple_barrier_labels(series, horizon=12, exits=EXITS)
    assert label.outcome[t] != 0  # resolved (the stop, on a falling market) before the horizon
    resolved_at = int(label.end_idx[t])
    frame = meta(Once("a", t), Every("b", 1000, 999), min_record=10_000).compute(series)
    assert frame.record is not None and frame.chosen is not None
    assert (frame.chosen == 0).all()  # thin records: "a" throughout, so its record is shown
    rows = np.arange(len(series))
    expected = (rows >= resolved_at) & (regimes == regimes[t])
    assert np.array_equal(frame.record, expected.astype(np.int64))
    assert resolved_at > t


@pytest.mark.parametrize("window", [0, 8])
def test_cutting_the_future_leaves_every_row_unchanged(window: int) -> None:
    series = generate_candles("BTC/USDT", "1h", 400, seed=11)
    m = meta(Every("a", 4), Every("b", 5, 2, short=True), min_record=3, window=window)
    whole = m.compute(series)
    for cut in (60, 61, 150, 233, 399):
        part = m.compute(series.slice(0, cut + 1))
        for name in ("entry", "exit_long", "exit_short", "confidence", "atr", "chosen"):
            a, b = getattr(whole, name)[: cut + 1], getattr(part, name)
            assert np.array_equal(a, b, equal_nan=True), (name, cut)
        assert whole.score is not None and part.score is not None
        assert np.array_equal(whole.score[: cut + 1], part.score, equal_nan=True)


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="fallback 'a' is not among"):
        MetaStrategy([Every("x", 2)], MetaConfig(fallback="a"))
    with pytest.raises(ValueError, match="distinct candidates"):
        MetaStrategy([Every("a", 2), Every("a", 3)], MetaConfig(fallback="a"))
    with pytest.raises(ValueError, match="below min_record"):
        MetaConfig(window=3, min_record=5)


class Explaining(Every):
    """A candidate that explains its entries (as the ensemble does), recording what it was asked."""

    def __init__(self, name: str, k: int, offset: int = 0) -> None:
        super().__init__(name, k, offset)
        self.asked: list[tuple[str, int, str | None]] = []

    def explain(self, symbol: str, ts_ms: int, regime: str | None = None) -> object:
        self.asked.append((symbol, ts_ms, regime))
        return f"{self.name} at {ts_ms} in {regime}"


def test_an_entry_is_explained_by_the_candidate_picked_at_its_candle() -> None:
    series = falling()
    plain, explaining = Every("a", 5), Explaining("b", 3)
    m = meta(plain, explaining)
    frame = m.compute(series)
    assert frame.chosen is not None
    by_b = np.flatnonzero(frame.chosen == 1)
    by_a = np.flatnonzero(frame.chosen == 0)
    assert len(by_a) and len(by_b)  # the falling market gives both a turn
    ts_b, ts_a = int(series.ts_ms[by_b[-1]]), int(series.ts_ms[by_a[0]])
    assert m.explain(series.symbol, ts_b, "trend_low_vol") == f"b at {ts_b} in trend_low_vol"
    assert explaining.asked == [(series.symbol, ts_b, "trend_low_vol")]
    assert m.explain(series.symbol, ts_a, "trend_low_vol") is None  # a baseline: nothing to say
    assert m.explain("OTHER/USDT", ts_b) is None


def test_the_strategy_brains_choices_in_force_bind_the_pick() -> None:
    series = falling()  # "b" (short) earns the better record
    regimes = detect_regimes(series, REGIME)
    m = meta(Every("a", 3), Every("b", 3, 1, short=True), Every("c", 3, 2))
    free = m.compute(series)
    assert free.chosen is not None and (free.chosen[400:] == 1).mean() > 0.9
    assert not m.use_policy(Policy())  # nothing chosen: nothing changes
    # b disabled: never picked (its record notwithstanding); the next best record trades
    assert m.use_policy(Policy(disabled_strategies=("b",)))
    frame = m.compute(series)
    assert frame.chosen is not None and not (frame.chosen == 1).any()
    assert not m.use_policy(Policy(disabled_strategies=("b",)))  # the same: unchanged
    # the primary stands in for the configured fallback while no record qualifies
    thin = MetaStrategy(m.candidates, replace(m.config, min_record=10_000), exits=EXITS)
    thin.use_policy(Policy(primary_strategy="c", fallback_strategy="b"))
    frame = thin.compute(series)
    assert frame.chosen is not None and (frame.chosen == 2).all()
    thin.use_policy(Policy(fallback_strategy="b", disabled_strategies=("a",)))
    frame = thin.compute(series)
    assert (
        frame.chosen is not None and (frame.chosen == 1).all()
    )  # the configured "a" is out: the fallback
    thin.use_policy(Policy(disabled_strategies=("a",)))  # none named: the first enabled
    frame = thin.compute(series)
    assert frame.chosen is not None and (frame.chosen == 1).all()
    # every candidate disabled (by hand: the brain never does): no entry at all
    thin.use_policy(Policy(disabled_strategies=("a", "b", "c")))
    frame = thin.compute(series)
    assert (frame.entry == 0).all()
    # a regime's provider is picked on every candle of that regime, whatever the records
    label = Regime(int(regimes[-1])).label
    m.use_policy(Policy(regime_strategies=((label, "a"),)))
    frame = m.compute(series)
    assert frame.chosen is not None
    there = regimes == int(regimes[-1])
    assert (frame.chosen[there] == 0).all() and (
        frame.chosen[~there & (free.chosen == 1)] == 1
    ).any()
    # a disabled provider named for a regime, or an unknown one, is not picked there
    m.use_policy(Policy(regime_strategies=((label, "zz"),)))
    assert m.compute(series).chosen is not None
    m.use_policy(Policy(regime_strategies=((label, "a"),), disabled_strategies=("a",)))
    frame = m.compute(series)
    assert frame.chosen is not None and not (frame.chosen[there] == 0).any()
