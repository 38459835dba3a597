"""The torch members' windows: causal, normalised per window, missing values as 0."""

from __future__ import annotations

import numpy as np

from core.ml.members.windows import make_windows, target_paths


def test_each_window_holds_rows_up_to_its_own_normalised() -> None:
    ret = np.array([0.01, -0.02, 0.03, 0.04])
    feat = np.array([1.0, 2.0, 3.0, 5.0])
    w = make_windows(np.column_stack([ret, feat]), [0, 1], 3)

    assert w.inputs.shape == (4, 2, 3) and w.full.tolist() == [False, False, True, True]
    last = ret[1:]
    rms = np.sqrt((last**2).mean())
    np.testing.assert_allclose(w.inputs[3, 0], last / rms, rtol=1e-6)  # sign and drift kept
    z = (feat[1:] - feat[1:].mean()) / feat[1:].std()
    np.testing.assert_allclose(w.inputs[3, 1], z, rtol=1e-6)
    # Row 0 has no past: its missing slots are 0, its one return is scaled by itself.
    np.testing.assert_allclose(w.inputs[0, 0], [0, 0, 1], atol=1e-7)
    np.testing.assert_allclose(w.scale[0], 0.01)


def test_the_target_is_the_path_of_the_next_returns_in_the_windows_scale() -> None:
    ret = np.array([0.0, 0.01, 0.02, -0.01, np.nan, 0.03])
    scale = np.full(6, 0.01)

    path, known = target_paths(ret, scale, 2)

    np.testing.assert_allclose(path[0], [1.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(path[1], [2.0, 1.0], rtol=1e-6)
    assert known.tolist() == [True, True, False, False, False, False]  # a NaN or the end


def test_windows_from_a_first_row_equal_those_of_every_row_from_there() -> None:
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.normal(0, 0.01, 50), rng.normal(5, 2, 50)])
    x[[3, 20], 1] = np.nan  # missing values inside the windows too
    every = make_windows(x, [0, 1], 8)

    for first in (0, 5, 7, 30, 49):
        tail = make_windows(x, [0, 1], 8, first)
        assert np.array_equal(tail.inputs, every.inputs[first:])  # the same floats
        assert np.array_equal(tail.scale, every.scale[first:])
        assert np.array_equal(tail.full, every.full[first:])
