"""The mean-reversion baseline: Bollinger z-score extremes, out at the mean.

``z = (close - SMA(period)) / STDDEV(period)`` (TA-Lib, population deviation, as Bollinger
bands use). Enter long when z crosses below ``-entry_z`` (the close fell out of the lower band)
with RSI below ``rsi_high`` (not a breakout up), short the mirror image when ``allow_short``;
leave a long once z is back at ``exit_z`` or above (the mean), a short at ``-exit_z`` or below.
Confidence grows with how far past the band the close is. The counterpart of the EMA/RSI trend
follower, for the meta-strategy to choose between by regime.
"""

from __future__ import annotations

import numpy as np
import talib

from core.domain.market import CandleSeries
from core.signals.base import SignalFrame
from core.values import value_class


@value_class(frozen=True, slots=True, kw_only=True)
class MeanReversionConfig:
    """Parameters of the baseline."""

    period: int = 20
    entry_z: float = 2.0
    exit_z: float = 0.0
    rsi_period: int = 14
    rsi_low: float = 30.0
    rsi_high: float = 70.0
    atr_period: int = 14
    allow_short: bool = False

    def __post_init__(self) -> None:
        if self.period < 2:
            raise ValueError(f"mean reversion period must be >= 2, was {self.period}")
        if not 0 <= self.exit_z < self.entry_z:
            raise ValueError(
                f"need 0 <= exit_z < entry_z, was exit_z={self.exit_z} entry_z={self.entry_z}"
            )
        if not 0 <= self.rsi_low < self.rsi_high <= 100:
            raise ValueError(
                f"need 0 <= rsi_low < rsi_high <= 100, was {self.rsi_low}, {self.rsi_high}"
            )


class MeanReversion:
    """Bollinger z-score reversion (see module docstring)."""

    name = "mean_reversion"

    def __init__(self, config: MeanReversionConfig | None = None) -> None:
        self.config = config or MeanReversionConfig()
        self.warmup_candles = max(self.config.period, self.config.rsi_period) + 1

    def compute(self, series: CandleSeries) -> SignalFrame:
        """Return the signals of every candle (causal: talib indicators look only backwards)."""
        c = self.config
        close = series.close
        n = len(series)
        if n == 0:
            empty = np.zeros(0)
            no = np.zeros(0, dtype=bool)
            return SignalFrame(
                ts_ms=series.ts_ms,
                entry=np.zeros(0, dtype=np.int8),
                exit_long=no,
                exit_short=no,
                confidence=empty,
                atr=empty,
            )
        mean = talib.SMA(close, c.period)
        std = talib.STDDEV(close, c.period, 1.0)
        rsi = talib.RSI(close, c.rsi_period)
        atr = talib.ATR(series.high, series.low, close, c.atr_period)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(std > 0, (close - mean) / std, np.nan)
        prev = np.concatenate(([np.nan], z[:-1]))
        traded = series.volume > 0
        # NaN compares False: no signal during warm-up or on a flat window
        low_cross = (z < -c.entry_z) & (prev >= -c.entry_z) & (rsi < c.rsi_high)
        high_cross = (z > c.entry_z) & (prev <= c.entry_z) & (rsi > c.rsi_low)
        entry = np.zeros(n, dtype=np.int8)
        entry[low_cross & traded] = 1
        if c.allow_short:
            entry[high_cross & traded] = -1
        confidence = np.clip(np.nan_to_num(np.abs(z) / (2.0 * c.entry_z), nan=0.0), 0.0, 1.0)
        return SignalFrame(
            ts_ms=series.ts_ms,
            entry=entry,
            exit_long=(z >= c.exit_z) & traded,
            exit_short=(z <= -c.exit_z) & traded,
            confidence=confidence,
            atr=atr,
        )
