"""Purged walk-forward: no training label overlaps its test block, with an embargo to spare."""

from __future__ import annotations

import numpy as np
import pytest

from core.ml.splits import purged_walk_forward


def test_hand_made_overlapping_labels_are_purged() -> None:
    start = np.arange(20)
    end = start + 3  # every label spans 4 candles: neighbours overlap
    end[5] = 15  # one long label reaching into the first test block
    folds = list(purged_walk_forward(start, end, train_candles=8, step=4, embargo=1))
    first = folds[0]
    assert (first.test_start, first.test_stop) == (8, 12)
    assert first.test_idx.tolist() == [8, 9, 10, 11]
    # labels ending at 6 or later are not known 1 candle before 8; label 5 (end 15) is purged
    assert first.train_idx.tolist() == [0, 1, 2, 3]
    second = folds[1]
    assert second.test_idx.tolist() == [12, 13, 14, 15]
    assert second.train_from == 4
    assert second.train_idx.tolist() == [4, 6, 7]  # 5 still open at 15; 8 ends at 11, not < 11
    third = folds[2]
    assert third.train_idx.tolist() == [8, 9, 10, 11]  # window 8..15: ends 11..14 < 15
    assert len(folds) == 3


def test_expanding_keeps_everything_known_before_the_block() -> None:
    start = np.arange(30)
    end = start + 2
    folds = list(
        purged_walk_forward(start, end, train_candles=10, step=5, embargo=0, expanding=True)
    )
    assert [f.test_start for f in folds] == [10, 15, 20, 25]
    for f in folds:
        assert f.train_from == 0
        assert f.train_idx.tolist() == list(range(f.test_start - 2))


def test_the_default_step_is_a_week_of_hours() -> None:
    start = np.arange(1000)
    folds = list(purged_walk_forward(start, start + 24, train_candles=500))
    assert [f.test_start for f in folds] == [500, 668, 836]
    assert all(len(f.test_idx) == 168 for f in folds[:2])
    assert all(f.train_idx[-1] + 24 + 24 < f.test_start for f in folds)


@pytest.mark.parametrize("seed", range(5))
def test_random_labels_never_leak_into_training(seed: int) -> None:
    rng = np.random.default_rng(seed)
    start = np.sort(rng.choice(5000, 1500, replace=False))  # a subset: the valid rows only
    end = start + rng.integers(0, 48, len(start))
    embargo = int(rng.integers(0, 30))
    folds = list(purged_walk_forward(start, end, train_candles=800, step=150, embargo=embargo))
    assert folds
    tested: list[int] = []
    for f in folds:
        test_span = (start[f.test_idx].min(), end[f.test_idx].max())
        assert (end[f.train_idx] + embargo < test_span[0]).all()  # ends before, with the gap
        assert (start[f.train_idx] >= f.test_start - 800).all()  # inside the rolling window
        assert ((start[f.test_idx] >= f.test_start) & (start[f.test_idx] < f.test_stop)).all()
        # nothing known by then was left out
        known = (start >= f.test_start - 800) & (end + embargo < f.test_start)
        assert np.flatnonzero(known).tolist() == f.train_idx.tolist()
        tested += f.test_idx.tolist()
    assert tested == sorted(set(tested))  # every test row once, in time order
    assert tested[-1] == len(start) - 1


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted in time"):
        list(purged_walk_forward([3, 1], [4, 2], train_candles=1))
    with pytest.raises(ValueError, match="label 1 ends"):
        list(purged_walk_forward([1, 2], [1, 0], train_candles=1))
    with pytest.raises(ValueError, match="step >= 1"):
        list(purged_walk_forward([1], [2], train_candles=1, step=0))
    with pytest.raises(ValueError, match="one length"):
        list(purged_walk_forward([1, 2], [2], train_candles=1))
    assert list(purged_walk_forward([], [], train_candles=5)) == []


def test_open_times_in_ms_split_like_rows() -> None:
    hour = 3_600_000
    start = np.arange(40)
    end = start + 5
    by_row = list(purged_walk_forward(start, end, train_candles=12, step=7, embargo=2))
    t0 = 1_704_067_200_000
    by_ms = list(
        purged_walk_forward(
            t0 + start * hour,
            t0 + end * hour,
            train_candles=12,
            step=7,
            embargo=2,
            candle_ms=hour,
        )
    )
    assert len(by_row) == len(by_ms) == 4
    for r, m in zip(by_row, by_ms, strict=True):
        assert r.train_idx.tolist() == m.train_idx.tolist()
        assert r.test_idx.tolist() == m.test_idx.tolist()
        assert m.test_start == t0 + r.test_start * hour
