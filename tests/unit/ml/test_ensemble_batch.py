"""A candle closing on several symbols (qt run): ``compute_many`` sends the new rows of all of
them through each member in one call and gives what ``compute`` gives each symbol alone,
across a history grown candle by candle, a member set added on the way and a roll-over."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles
from core.ml.ensemble import EnsembleConfig, EnsembleFrame, EnsembleMember, EnsembleProvider
from core.ml.members import MEMBERS
from core.ml.training import TrainConfig, fit_member, prepare
from core.services.signal_book import SignalBook
from core.signals.ema_rsi import EmaRsiCross
from core.signals.handover import HandOverProvider, compute_many
from core.signals.meta import MetaStrategy
from tests.unit.ml.test_ensemble import Fake
from tests.unit.ml.test_training import TINY_TORCH

HOUR_MS = 3_600_000
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


@dataclass
class Calls(Fake):
    """A Fake that counts its calls and the rows of each."""

    calls: list[int] = field(default_factory=list)

    def predict_proba(
        self, x: npt.NDArray[np.float64], *, columns: Sequence[str], feature_set_hash: str
    ) -> npt.NDArray[np.float64]:
        self.calls.append(len(x))
        return super().predict_proba(x, columns=columns, feature_set_hash=feature_set_hash)


class Spy:
    """Wrap a real member, counting its calls (of either kind)."""

    def __init__(self, member: object) -> None:
        self.member, self.calls = member, 0

    def __getattr__(self, name: str) -> object:
        attr: Any = getattr(self.member, name)
        if name in ("predict_proba", "predict_proba_from", "predict_proba_windows"):

            def counted(*args: object, **kw: object) -> object:
                self.calls += 1
                return attr(*args, **kw)

            return counted
        return attr


@pytest.mark.parametrize("net", [False, True])
def test_compute_many_equals_compute_per_symbol_with_one_call_per_member_a_candle(
    net: bool,
) -> None:
    series = {
        sym: generate_candles(sym, "1h", 1240, seed=4 + i, start_price=(100.0, 10.0, 1.0)[i])
        for i, sym in enumerate(SYMBOLS)
    }
    data = prepare([series["BTC/USDT"].slice(0, 800)], TrainConfig())
    xgb = MEMBERS["xgb"].from_files(fit_member("xgb", data, {"n_estimators": 20}).files)
    nhits = MEMBERS["nhits"].from_files(fit_member("nhits", data, TINY_TORCH).files)
    t0 = series["BTC/USDT"].ts_ms
    end = int(t0[799]) + HOUR_MS
    at = int(t0[1179]) + HOUR_MS  # the second set: rows closing after candle 1179
    spy_xgb, spy_nhits = Spy(xgb), Spy(nhits)

    def first(fake: Fake, trees: object, forecaster: object) -> list[EnsembleMember]:
        return [
            EnsembleMember(name="fake", member=fake, trained_until_ms=end),  # type: ignore[arg-type]
            EnsembleMember(name="xgb", member=trees, trained_until_ms=end),  # type: ignore[arg-type]
        ] + [EnsembleMember(name="nhits", member=forecaster, trained_until_ms=end)] * net  # type: ignore[arg-type]

    def second(fake2: Fake, trees: object) -> list[EnsembleMember]:
        return [
            EnsembleMember(name="fake2", member=fake2, trained_until_ms=at),  # type: ignore[arg-type]
            EnsembleMember(name="xgb", member=trees, trained_until_ms=end),  # type: ignore[arg-type]
        ]

    config = EnsembleConfig(min_labels=24, window=48, threshold=0.51)
    fake, fake2 = Calls(0.45), Calls(0.55, 0.05)
    batched = EnsembleProvider(first(fake, spy_xgb, spy_nhits), config)
    alone = EnsembleProvider(first(Fake(0.45), xgb, nhits), config)
    books = [SignalBook(p, max_history=1200) for p in (batched, alone)]  # rolls past 1,200
    for book in books:
        for c in series.values():
            book.seed(c.slice(0, 1160))
    compute_many(batched, [books[0]._books[sym].history for sym in SYMBOLS])
    entries, rolled = 0, False
    for k in range(1160, 1215):
        if k == 1180:
            batched.add_set(second(fake2, spy_xgb), at)
            alone.add_set(second(Fake(0.55, 0.05), xgb), at)
        histories = [grown(books[0], series, sym, k) for sym in SYMBOLS]
        calls = (len(fake.calls), spy_xgb.calls, spy_nhits.calls, len(fake2.calls))
        frames = compute_many(batched, histories)
        # One call per member serving new rows, for the three symbols: the first set's
        # until the second serves, then the second's (xgb serves in both: one call for both
        # sets' rows), every member at the roll-over (every row again).
        called = (1, 1, net, 0) if k < 1180 else (1, 1, net, 1) if k == 1200 else (0, 1, 0, 1)
        now = (len(fake.calls), spy_xgb.calls, spy_nhits.calls, len(fake2.calls))
        assert tuple(b - a for a, b in zip(calls, now, strict=True)) == called, k
        if k not in (1180, 1200):
            assert (fake.calls if k < 1180 else fake2.calls)[-1] == len(SYMBOLS)  # a row each
        rolled |= int(histories[0].ts_ms[0]) != int(t0[0])
        for sym, frame in zip(SYMBOLS, frames, strict=True):
            books[1].append(sym, "1h", series[sym].candle(k))
            full = books[1].frame(sym)  # the symbol alone, as each candle computed it before
            assert isinstance(frame, EnsembleFrame) and isinstance(full, EnsembleFrame)
            assert_same(frame, full, (k, sym), exact=not net)
            assert batched.excluded(sym) == alone.excluded(sym)
            entries += int(np.count_nonzero(frame.entry[-1]))
    assert rolled and entries  # it rolled over, and there were decisions to compare


def grown(book: SignalBook, series: dict[str, CandleSeries], symbol: str, k: int) -> CandleSeries:
    """Append candle ``k`` of the symbol to the book; return its history now."""
    book.append(symbol, "1h", series[symbol].candle(k))
    held = book._books[symbol]
    book._flush(held)
    return held.history


def assert_same(frame: EnsembleFrame, full: EnsembleFrame, where: object, *, exact: bool) -> None:
    """Assert a batched frame is the one computed alone: to the bit without a network; with
    one, its predictions up to float32 rounding (a batch of windows through the network) and
    what they weigh (P(up), the weights) within 1e-6."""
    assert frame.members == full.members and frame.excluded == full.excluded
    assert np.array_equal(frame.entry, full.entry), where
    atol = 0.0 if exact else 1e-6
    for column in ("p_up", "member_p", "weights", "confidence"):
        a, b = getattr(frame, column), getattr(full, column)
        assert np.allclose(a, b, rtol=0, atol=atol, equal_nan=True), (column, where)


def test_compute_many_takes_one_history_per_symbol() -> None:
    s = generate_candles("BTC/USDT", "1h", 300, seed=4)
    start = int(s.ts_ms[0])
    provider = EnsembleProvider(
        [EnsembleMember(name="f", member=Fake(0.4), trained_until_ms=start)]  # type: ignore[arg-type]
    )
    with pytest.raises(ValueError, match="one history per symbol"):
        provider.compute_many([s, s.slice(0, 200)])


def test_the_meta_strategy_and_the_hand_over_batch_their_candidates() -> None:
    series = [generate_candles(sym, "1h", 600, seed=i) for i, sym in enumerate(SYMBOLS)]
    start = int(series[0].ts_ms[0])

    def ensemble(fake: Fake) -> EnsembleProvider:
        return EnsembleProvider(
            [EnsembleMember(name="f", member=fake, trained_until_ms=start)],  # type: ignore[arg-type]
            EnsembleConfig(threshold=0.51),
        )

    calls = Calls(0.5, 0.1)
    meta = MetaStrategy([EmaRsiCross(), ensemble(calls)])
    alone = MetaStrategy([EmaRsiCross(), ensemble(Fake(0.5, 0.1))])
    handed = HandOverProvider(EmaRsiCross())
    handed.hand_over(meta)
    frames = compute_many(handed, series)
    assert len(calls.calls) == 1  # the three symbols' rows in one call
    for s, frame in zip(series, frames, strict=True):
        full = alone.compute(s)
        for column in ("entry", "exit_long", "exit_short", "chosen", "confidence"):
            assert np.array_equal(getattr(frame, column), getattr(full, column)), column
