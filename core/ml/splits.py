"""Purged walk-forward splits: train strictly on labels resolved before each test block.

The system we replace split overlapping labels at random, so a test label's future sat in the
training set. Here the data is cut into test blocks of ``step`` candles (the retrain cadence,
weekly on 1h by default); each block is predicted by a model trained on the labels that had
*ended* ``embargo`` candles before the block began, from a rolling window of
``train_candles`` or everything before (expanding). A training label's [start, end] therefore
never overlaps the test span, and the embargo leaves a gap for the serial correlation of
features across the boundary. These are exactly the labels a live retrain at the block's start
could know.

Positions are candle rows (``Labels.start_idx`` / ``end_idx``, or any sorted subset of them,
e.g. the valid rows only), or open times in ms with ``candle_ms`` set (``Labels.ts_ms`` /
``end_ts_ms``: several symbols pooled in time order); the windows are counted in candles
either way. The indices yielded point into the arrays passed in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """One walk-forward fold: sample indices to train on and to predict, and the candle spans.

    ``test_start``..``test_stop`` (exclusive) is the test block in candle rows;
    ``train_from`` is the first candle the window allows.
    """

    train_idx: IntArray
    test_idx: IntArray
    train_from: int
    test_start: int
    test_stop: int


def _check(start: IntArray, end: IntArray, train_candles: int, step: int, embargo: int) -> None:
    if start.ndim != 1 or start.shape != end.shape:
        raise ValueError(
            f"start and end must be 1-D of one length, were {start.shape} and {end.shape}"
        )
    if len(start) and (np.diff(start) < 0).any():
        raise ValueError("label starts must be sorted in time")
    if (end < start).any():
        i = int(np.argmax(end < start))
        raise ValueError(f"label {i} ends ({end[i]}) before it starts ({start[i]})")
    if train_candles < 1 or step < 1 or embargo < 0:
        raise ValueError(
            "need train_candles >= 1, step >= 1, embargo >= 0; were "
            f"{train_candles}, {step}, {embargo}"
        )


def purged_walk_forward(
    start: npt.ArrayLike,
    end: npt.ArrayLike,
    *,
    train_candles: int,
    step: int = 168,
    embargo: int = 24,
    expanding: bool = False,
    first_test: int | None = None,
    min_train: int = 1,
    candle_ms: int | None = None,
) -> Iterator[Split]:
    """Yield the purged walk-forward folds over labels spanning ``[start[i], end[i]]``.

    The first test block starts at ``first_test`` (default: the first label's start plus
    ``train_candles``); blocks without a test label, or with fewer than ``min_train`` training
    labels, are skipped. With ``candle_ms``, ``start``/``end``/``first_test`` are ms and
    the spans in the ``Split`` are ms too.
    """
    s = np.asarray(start, dtype=np.int64)
    e = np.asarray(end, dtype=np.int64)
    _check(s, e, train_candles, step, embargo)
    if not len(s):
        return
    if candle_ms is not None:
        if candle_ms < 1:
            raise ValueError(f"candle_ms must be >= 1, was {candle_ms}")
        train_candles, step, embargo = (x * candle_ms for x in (train_candles, step, embargo))
    block = int(s[0]) + train_candles if first_test is None else first_test
    last = int(s[-1])
    while block <= last:
        stop = block + step
        lo, hi = np.searchsorted(s, [block, stop], side="left")
        train_from = int(s[0]) if expanding else block - train_candles
        # a training label must have ended, with the embargo to spare, before the block starts
        candidates = np.arange(np.searchsorted(s, train_from, side="left"), lo)
        train = candidates[e[candidates] + embargo < block]
        if hi > lo and len(train) >= min_train:
            yield Split(
                train_idx=train.astype(np.int64),
                test_idx=np.arange(lo, hi, dtype=np.int64),
                train_from=train_from,
                test_start=block,
                test_stop=stop,
            )
        block = stop
