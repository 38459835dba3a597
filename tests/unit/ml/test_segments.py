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
