"""The evaluation refuses a prediction whose members were trained on its own candle."""

from __future__ import annotations

import numpy as np
import pytest

from bot.evaluate import _check_out_of_sample
from core.errors import InvariantViolation
from core.ml.ensemble import EnsembleConfig, EnsembleMember, EnsembleProvider
from tests.unit.ml.test_ensemble import Fake, series

HALF_HOUR_MS = 1_800_000


def _provider(active_ms: int, trained_until_ms: int) -> EnsembleProvider:
    provider = EnsembleProvider([], EnsembleConfig(), walk_forward=True)
    member = EnsembleMember(name="m", member=Fake(0.4), trained_until_ms=trained_until_ms)  # type: ignore[arg-type]
    provider.add_set([member], active_ms)
    return provider


def test_every_predicted_row_s_set_was_trained_before_its_candle() -> None:
    s = series(600)
    on_the_grid = _provider(int(s.ts_ms[300]), int(s.ts_ms[300]))
    _check_out_of_sample(on_the_grid, s, np.arange(300, 600))

    # Active half an hour into candle 300 and trained up to then: candle 300 closes after the
    # activation, so the set serves it, but it was trained on part of that candle.
    mid_candle = int(s.ts_ms[300]) + HALF_HOUR_MS
    late = _provider(mid_candle, mid_candle)
    with pytest.raises(InvariantViolation, match="trained on that candle or later"):
        _check_out_of_sample(late, s, np.arange(300, 600))
    with pytest.raises(InvariantViolation, match="came from no set"):
        _check_out_of_sample(on_the_grid, s, np.arange(250, 600))  # before the first set
