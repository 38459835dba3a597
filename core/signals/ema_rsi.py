"""The baseline provider: EMA fast/slow crossover entries with an RSI filter.

The same rules as the Freqtrade strategy we benchmark against (EMA 20/50 cross, RSI 14 between 30
and 70, volume > 0; exit a long when the fast EMA crosses back below), plus the mirror image for
shorts when ``allow_short`` is set (perpetual futures). Confidence grows with the EMA spread
relative to ATR, capped at 1, so dynamic exits have something honest to scale on.
"""

from __future__ import annotations

import numpy as np
import talib

from core.domain.market import CandleSeries
from core.signals.base import SignalFrame
from core.values import value_class


@value_class(frozen=True, slots=True, kw_only=True)
class EmaRsiConfig:
    """Parameters of the baseline."""

    fast: int = 20
    slow: int = 50
    rsi_period: int = 14
    rsi_low: float = 30.0
    rsi_high: float = 70.0
    atr_period: int = 14
    allow_short: bool = False

    def __post_init__(self) -> None:
        if not 1 < self.fast < self.slow:
            raise ValueError(f"need 1 < fast < slow, was fast={self.fast} slow={self.slow}")
        if not 0 <= self.rsi_low < self.rsi_high <= 100:
            raise ValueError(
                f"need 0 <= rsi_low < rsi_high <= 100, was {self.rsi_low}, {self.rsi_high}"
            )


class EmaRsiCross:
    """EMA crossover with RSI filter (see module docstring)."""

    name = "ema_rsi"

    def __init__(self, config: EmaRsiConfig | None = None) -> None:
        self.config = config or EmaRsiConfig()
        self.warmup_candles = self.config.slow + 1

    def compute(self, series: CandleSeries) -> SignalFrame:
        """Return the signals of every candle (causal: talib indicators look only backwards)."""
        c = self.config
        close = series.close
        fast = talib.EMA(close, c.fast)
        slow = talib.EMA(close, c.slow)
        rsi = talib.RSI(close, c.rsi_period)
        atr = talib.ATR(series.high, series.low, close, c.atr_period)
        above = fast > slow  # NaN compares False: no signal during warm-up
        below = fast < slow
        prev_above = np.concatenate(([False], above[:-1]))
        prev_below = np.concatenate(([False], below[:-1]))
        prev_valid = np.concatenate(([False], ~np.isnan(slow[:-1])))
        crossed_up = above & ~prev_above & prev_valid
        crossed_down = below & ~prev_below & prev_valid
        calm = (rsi > c.rsi_low) & (rsi < c.rsi_high) & (series.volume > 0)
        entry = np.zeros(len(series), dtype=np.int8)
        entry[crossed_up & calm] = 1
        if c.allow_short:
            entry[crossed_down & calm] = -1
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.abs(fast - slow) / atr
        confidence = np.clip(np.nan_to_num(0.5 + spread, nan=0.0), 0.0, 1.0)
        return SignalFrame(
            ts_ms=series.ts_ms,
            entry=entry,
            exit_long=crossed_down & (series.volume > 0),
            exit_short=crossed_up & (series.volume > 0),
            confidence=confidence,
            atr=atr,
        )
