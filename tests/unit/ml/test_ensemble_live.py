"""The live path (qt run: a candle appended to the SignalBook, its signal asked for) reuses the
ensemble's work on the rows before; it must give what a whole compute gives on that history,
across a member set added on the way and the history rolling over at the book's bound."""

from __future__ import annotations

import numpy as np

from core.market.synthetic import generate_candles
from core.ml.ensemble import EnsembleConfig, EnsembleFrame, EnsembleMember, EnsembleProvider
from core.ml.members import MEMBERS
from core.ml.training import TrainConfig, fit_member, prepare
from core.services.signal_book import SignalBook
from tests.unit.ml.test_ensemble import Counting, Fake
from tests.unit.ml.test_training import TINY_TORCH

HOUR_MS = 3_600_000


def test_the_live_path_equals_a_whole_compute_across_a_new_set_and_a_roll_over() -> None:
    s = generate_candles("BTC/USDT", "1h", 1240, seed=4)
    data = prepare([s.slice(0, 800)], TrainConfig())
    # two threads: the one-row predictions switch to one, the whole computes do not
    xgb = MEMBERS["xgb"].from_files(fit_member("xgb", data, {"n_estimators": 20}).files)
    nhits = MEMBERS["nhits"].from_files(fit_member("nhits", data, TINY_TORCH).files)
    end = int(s.ts_ms[799]) + HOUR_MS
    at = int(s.ts_ms[1179]) + HOUR_MS  # the second set: rows closing after candle 1179

    def first(fake: Fake) -> list[EnsembleMember]:
        return [
            EnsembleMember(name="fake", member=fake, trained_until_ms=end),  # type: ignore[arg-type]
            EnsembleMember(name="xgb", member=xgb, trained_until_ms=end),
            EnsembleMember(name="nhits", member=nhits, trained_until_ms=end),
        ]

    def second(fake2: Fake) -> list[EnsembleMember]:
        return [
            EnsembleMember(name="fake2", member=fake2, trained_until_ms=at),  # type: ignore[arg-type]
            EnsembleMember(name="xgb", member=xgb, trained_until_ms=end),
        ]

    config = EnsembleConfig(min_labels=24, window=48, threshold=0.51)
    counting, counting2 = Counting(0.45), Counting(0.55, 0.05)
    live = EnsembleProvider(first(counting), config)
    book = SignalBook(live, max_history=1200)  # past 1,200 candles: the newest 960 kept
    book.seed(s.slice(0, 1160))
    book.frame("BTC/USDT")
    new_rows, rolled, entries = [], False, 0
    for k in range(1160, 1230):
        if k == 1180:
            live.add_set(second(counting2), at)
        book.append("BTC/USDT", "1h", s.candle(k))
        before = counting.rows + counting2.rows
        assert book.signal_at("BTC/USDT", int(s.ts_ms[k])) is not None
        new_rows.append(counting.rows + counting2.rows - before)
        frame = book.frame("BTC/USDT")
        history = book._books["BTC/USDT"].history
        rolled |= int(history.ts_ms[0]) != int(s.ts_ms[0])
        if k % 3 and k not in (1180, 1181, 1200, 1201):  # around the new set and the roll
            continue
        whole = EnsembleProvider(first(Fake(0.45)), config)
        if k >= 1180:
            whole.add_set(second(Fake(0.55, 0.05)), at)
        full = whole.compute(history)
        assert isinstance(frame, EnsembleFrame) and frame.members == full.members
        assert np.array_equal(frame.entry, full.entry), k
        assert np.allclose(frame.p_up, full.p_up, rtol=0, atol=1e-6, equal_nan=True), k
        assert np.allclose(frame.member_p, full.member_p, rtol=0, atol=1e-6, equal_nan=True)
        assert np.allclose(frame.weights, full.weights, rtol=0, atol=1e-9), k
        assert np.array_equal(frame.confidence, full.confidence, equal_nan=True) or np.allclose(
            frame.confidence, full.confidence, rtol=0, atol=1e-6
        )
        assert live.exclusions == whole.exclusions
        entries += int(np.count_nonzero(frame.entry))

    assert rolled and entries  # it rolled over, and there were decisions to compare
    # the fast path ran: each candle sent its row only through the members, but when the set
    # was added (its rows so far) and when the history rolled over (every row again)
    # (set 2 from its training end on: the weights and health look back on those rows)
    roll = 1200 - 1160
    assert new_rows[:20] == [1] * 20 and new_rows[20] > 300 and new_rows[21:roll] == [1] * 19
    assert new_rows[roll] > 300 and new_rows[roll + 1 :] == [1] * 29
