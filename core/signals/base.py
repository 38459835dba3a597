"""The signal-provider protocol and the columnar signals it returns.

Providers are vectorised and CAUSAL: row ``i`` of ``compute(series)`` depends only on candles
``0..i``. That lets the backtest compute a whole series once while the live path recomputes on
the history it has, with identical results for the same history start (tested for every
provider). It is also our guard against look-ahead leakage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from core.domain.market import CandleSeries

FloatArray = npt.NDArray[np.float64]
Int8Array = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalFrame:
    """Signals per candle, aligned with the series they were computed on.

    ``entry`` is +1 (open long), -1 (open short) or 0; ``exit_long``/``exit_short`` ask to close
    an open position of that side; ``confidence`` is in [0, 1]; ``atr`` is the average true range
    in price units (NaN during warm-up) for sizing and dynamic exits.
    """

    ts_ms: npt.NDArray[np.int64]
    entry: Int8Array
    exit_long: BoolArray
    exit_short: BoolArray
    confidence: FloatArray
    atr: FloatArray

    def __len__(self) -> int:
        return len(self.ts_ms)

    def index_of(self, ts_ms: int) -> int | None:
        """Return the row of the candle that opened at ``ts_ms``, or None if not covered."""
        i = int(self.ts_ms.searchsorted(ts_ms))  # the method: np.searchsorted's wrapper costs more
        return i if i < len(self.ts_ms) and int(self.ts_ms[i]) == ts_ms else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """The signals of one candle."""

    entry: int
    exit_long: bool
    exit_short: bool
    confidence: float
    atr: float

    @classmethod
    def at(cls, frame: SignalFrame, i: int) -> Signal:
        """Return row ``i`` of ``frame``."""
        return cls(
            entry=int(frame.entry[i]),
            exit_long=bool(frame.exit_long[i]),
            exit_short=bool(frame.exit_short[i]),
            confidence=float(frame.confidence[i]),
            atr=float(frame.atr[i]),
        )


class SignalProvider(Protocol):
    """Turns candles into signals. Must be causal (see module docstring)."""

    name: str
    warmup_candles: int  # candles needed before the first meaningful signal

    def compute(self, series: CandleSeries) -> SignalFrame:
        """Return signals for every candle of ``series``."""
        ...
