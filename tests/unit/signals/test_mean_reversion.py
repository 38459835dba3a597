"""The mean-reversion baseline: entries where the z-score leaves the band, exits at the mean."""

from __future__ import annotations

import numpy as np
import pytest

from core.signals.mean_reversion import MeanReversion, MeanReversionConfig
from tests.unit.signals.test_ema_rsi import series_of

# A period of 5 and an RSI that never filters (0..100), so a dozen candles make the case.
SMALL = MeanReversionConfig(period=5, entry_z=1.5, rsi_period=3, rsi_low=0, rsi_high=100)


def test_a_drop_out_of_the_band_enters_long_and_the_return_to_the_mean_exits() -> None:
    closes = [100, 100.5, 99.5, 100, 100.5, 99.5, 100, 94, 95, 97, 100, 101]
    frame = MeanReversion(SMALL).compute(series_of(closes))
    # z at the 94 close: (94 - mean of the last 5) / their deviation, far below -1.5
    assert frame.entry.tolist() == [0] * 7 + [1] + [0] * 4
    # back above its mean: 97 at row 9 is still below 97.1 (99.5 100 94 95 97), 100 at row 10
    # above 97.2
    first_exit = int(np.flatnonzero(frame.exit_long[8:])[0]) + 8
    assert first_exit == 10
    assert frame.confidence[7] >= 0.5  # past the band: at least half confident


def test_shorts_mirror_longs_only_when_allowed() -> None:
    closes = [100, 100.5, 99.5, 100, 100.5, 99.5, 100, 106, 105, 103, 100, 99]
    longs_only = MeanReversion(SMALL).compute(series_of(closes))
    both = MeanReversion(
        MeanReversionConfig(
            period=5, entry_z=1.5, rsi_period=3, rsi_low=0, rsi_high=100, allow_short=True
        )
    ).compute(series_of(closes))
    assert not longs_only.entry.any()
    assert both.entry.tolist() == [0] * 7 + [-1] + [0] * 4
    assert bool(both.exit_short[10])


def test_no_trade_without_volume_and_nothing_during_warm_up() -> None:
    closes = [100, 100.5, 99.5, 100, 100.5, 99.5, 100, 94]
    volume = [1.0] * 7 + [0.0]
    frame = MeanReversion(SMALL).compute(series_of(closes, volume))
    assert not frame.entry.any()
    assert not frame.exit_long[:4].any() and np.isnan(frame.atr[:3]).all()
    assert len(MeanReversion(SMALL).compute(series_of(closes).slice(0, 0))) == 0


def test_bad_parameters_are_refused_with_their_values() -> None:
    with pytest.raises(ValueError, match=r"exit_z=2\.0 entry_z=2\.0"):
        MeanReversionConfig(entry_z=2.0, exit_z=2.0)
    with pytest.raises(ValueError, match="period must be >= 2"):
        MeanReversionConfig(period=1)
