"""Segments: one symbol's consecutive candles, split at the holdout with the purge."""

from __future__ import annotations

import numpy as np

from core.ml.segments import split_segments, validation_labels

H = 3_600_000


def test_a_missing_candle_or_an_undefined_feature_starts_a_new_run() -> None:
    n = 100
    ts = np.arange(n, dtype=np.int64) * H
    ts[60:] += H  # one candle missing after row 59
    x = np.ones((n, 2))
    x[:5, 1] = np.nan  # warm-up
    x[30, 0] = np.nan  # undefined mid-series
    y = (np.arange(n) % 2).astype(np.int8)
    known = np.arange(n) < 97  # the last labels unresolved

    segs = split_segments("A/B", x, y, known, ts, cut_ms=int(ts[80]), purge_ms=4 * H, candle_ms=H)

    assert [(len(s.y), s.train_stop, s.valid_start) for s in segs] == [
        (25, 25, 25),  # rows 5..29: all trained on
        (29, 29, 29),  # rows 31..59
        (40, 16, 20),  # rows 60..99: trained to the purge, validation from the cut
    ]
    assert validation_labels(segs).tolist() == y[80:97].tolist()  # known labels only
    assert segs[2].valid_rows == 17


def test_a_run_inside_the_purge_only_is_left_out() -> None:
    ts = np.arange(10, dtype=np.int64) * H
    segs = split_segments(
        "A/B",
        np.ones((10, 1)),
        np.zeros(10, dtype=np.int8),
        np.ones(10, dtype=bool),
        ts,
        cut_ms=int(ts[9]) + H,
        purge_ms=20 * H,
        candle_ms=H,
    )
    assert segs == []


def test_each_row_keeps_its_open_time_and_the_validation_rows_are_named() -> None:
    import pytest

    from core.ml.segments import Segment, validation_index

    n = 40
    ts = np.arange(n, dtype=np.int64) * H
    ts[20:] += H  # a missing candle: two runs
    known = np.arange(n) != 35  # one label unresolved
    segs = split_segments(
        "A/B",
        np.ones((n, 1)),
        np.zeros(n, dtype=np.int8),
        known,
        ts,
        cut_ms=int(ts[30]),
        purge_ms=2 * H,
        candle_ms=H,
    )

    assert [s.ts_ms.tolist() for s in segs] == [ts[:20].tolist(), ts[20:].tolist()]
    symbols, times = validation_index(segs)
    assert times.tolist() == [int(t) for i, t in enumerate(ts) if i >= 30 and i != 35]
    assert symbols.tolist() == ["A/B"] * 9
    untimed = Segment(
        symbol="C/D", x=np.ones((3, 1)), y=np.zeros(3, dtype=np.int8),
        known=np.ones(3, dtype=bool), train_stop=0, valid_start=0,
    )  # fmt: skip
    none_symbols, none_times = validation_index([])
    assert len(none_symbols) == len(none_times) == 0 and none_times.dtype == np.int64
    with pytest.raises(ValueError, match="segments of C/D carry no open times"):
        validation_index([untimed])
    with pytest.raises(ValueError, match="segment of C/D: 2 open times for 3 rows"):
        Segment(
            symbol="C/D", x=np.ones((3, 1)), y=np.zeros(3, dtype=np.int8),
            known=np.ones(3, dtype=bool), train_stop=0, valid_start=0,
            ts_ms=np.zeros(2, dtype=np.int64),
        )  # fmt: skip
