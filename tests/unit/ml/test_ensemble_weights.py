"""The weights' arithmetic: rolling log-loss over known labels, bounded softmax."""

from __future__ import annotations

import numpy as np

from core.market.synthetic import generate_candles
from core.ml.ensemble_weights import (
    bounded_softmax,
    resolved_losses,
    rolling_log_loss,
    windowed_loss,
)
from core.ml.labels import triple_barrier_labels


def test_a_label_counts_from_the_row_where_it_resolved_within_the_window() -> None:
    p = np.array([[0.9], [0.9], [0.9], [0.9]])
    y = np.array([1, 0, 1, 1])
    known_at = np.array([2, 3, 3, 9])  # label 3 resolves after the data
    loss, count = rolling_log_loss(p, y, known_at=known_at, usable=np.ones((4, 1), bool), window=2)

    assert count[:, 0].tolist() == [0, 0, 1, 2]
    assert np.isnan(loss[:2, 0]).all()
    assert loss[2, 0] == np.float64(-np.log(0.9))
    assert np.isclose(loss[3, 0], (-np.log(0.1) - np.log(0.9)) / 2)  # the last two resolved


def test_weights_keep_their_bounds_and_sum_to_one() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=5, size=(500, 3))
    active = rng.random((500, 3)) > 0.2

    w = bounded_softmax(logits, active, min_weight=0.1, max_weight=0.6)

    some = active.sum(axis=1)
    assert np.allclose(w[some > 0].sum(axis=1), 1.0)
    assert (w[~active] == 0).all()
    three = some == 3
    assert (w[three] >= 0.1 - 1e-9).all() and (w[three] <= 0.6 + 1e-9).all()
    alone = some == 1
    assert np.allclose(w[alone].max(axis=1), 1.0)  # bounds relaxed: one member takes it all
    assert (w[some == 0] == 0).all()


def test_a_few_rows_bisected_on_floats_equal_the_array_bisection_float_for_float() -> None:
    # bounded_softmax bisects up to SCALAR_ROWS rows (a live decision's one row) on Python
    # floats: each row's weights must be those the array path gives it among many rows.
    rng = np.random.default_rng(7)
    for k in range(1, 8):
        for scale, bounds in ((0.3, (0.1, 0.9)), (5.0, (0.0, 1.0)), (40.0, (0.2, 0.3))):
            logits = rng.normal(scale=scale, size=(60, k))
            active = rng.random((60, k)) > 0.25
            many = bounded_softmax(logits, active, min_weight=bounds[0], max_weight=bounds[1])
            for i in range(60):
                one = bounded_softmax(
                    logits[i : i + 1], active[i : i + 1], min_weight=bounds[0], max_weight=bounds[1]
                )
                assert np.array_equal(one[0], many[i]), (k, scale, i)


def test_losses_extended_with_a_grown_history_equal_those_summed_again() -> None:
    s = generate_candles("BTC/USDT", "1h", 400, seed=3)
    p = np.random.default_rng(2).uniform(0.05, 0.95, 400)
    p[:30] = np.nan  # not predicted there
    previous = None
    for n in (200, 201, 202, 230, 231, 400):  # a candle at a time, and many at once
        labels = triple_barrier_labels(s.slice(0, n), horizon=24)
        usable = labels.valid & (np.arange(n) >= 50)  # out of sample from row 50
        end = labels.end_idx
        whole = resolved_losses(p[:n], labels.y, known_at=end, usable=usable)
        grown = resolved_losses(p[:n], labels.y, known_at=end, usable=usable, previous=previous)
        assert np.array_equal(grown.ends, whole.ends)
        assert np.array_equal(grown.costs, whole.costs)  # the same floats
        rows = np.arange(n)
        for a, b in zip(
            windowed_loss(grown, rows, 48), windowed_loss(whole, rows, 48), strict=True
        ):
            assert np.array_equal(a, b, equal_nan=True)
        previous = grown
    assert previous is not None and len(previous.ends) > 200
