"""The signal-provider protocol and the columnar signals it returns.

Providers are vectorised and CAUSAL: row ``i`` of ``compute(series)`` depends only on candles
``0..i``. That lets the backtest compute a whole series once while the live path recomputes on
the history it has, with identical results for the same history start (tested for every
provider). It is also our guard against look-ahead leakage.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from core.domain.market import CandleSeries
from core.values import value_class

FloatArray = npt.NDArray[np.float64]
Int8Array = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]


@value_class(frozen=True, slots=True, kw_only=True)
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
    # A provider choosing among others (the meta-strategy): per row, which of ``sources``
    # gave the signal (-1: none), that one's record (mean outcome, NaN: a fallback pick) and
    # record size, and every source's own exits (rows, sources), so a trade leaves on the
    # exits of the provider that opened it.
    sources: tuple[str, ...] = ()
    chosen: Int8Array | None = None
    score: FloatArray | None = None
    record: npt.NDArray[np.int64] | None = None
    exit_long_by: npt.NDArray[np.bool_] | None = None
    exit_short_by: npt.NDArray[np.bool_] | None = None

    def __len__(self) -> int:
        return len(self.ts_ms)

    def index_of(self, ts_ms: int) -> int | None:
        """Return the row of the candle that opened at ``ts_ms``, or None if not covered."""
        i = int(self.ts_ms.searchsorted(ts_ms))  # the method: np.searchsorted's wrapper costs more
        return i if i < len(self.ts_ms) and int(self.ts_ms[i]) == ts_ms else None


@value_class(frozen=True, slots=True, kw_only=True)
class Signal:
    """The signals of one candle."""

    entry: int
    exit_long: bool
    exit_short: bool
    confidence: float
    atr: float
    provider: str = ""  # the source a choosing provider took this row from ("": itself)
    score: float = float("nan")  # that source's record (NaN: picked as the fallback)
    record: int = 0
    exits_by: tuple[tuple[str, bool, bool], ...] = ()  # (source, exit_long, exit_short)

    @classmethod
    def at(cls, frame: SignalFrame, i: int) -> Signal:
        """Return row ``i`` of ``frame``."""
        provider, score, record = "", float("nan"), 0
        exits_by: tuple[tuple[str, bool, bool], ...] = ()
        if frame.chosen is not None and frame.chosen[i] >= 0:
            provider = frame.sources[int(frame.chosen[i])]
            score = float(frame.score[i]) if frame.score is not None else score
            record = int(frame.record[i]) if frame.record is not None else 0
        if frame.exit_long_by is not None and frame.exit_short_by is not None:
            exits_by = tuple(
                (name, bool(frame.exit_long_by[i, j]), bool(frame.exit_short_by[i, j]))
                for j, name in enumerate(frame.sources)
            )
        return cls(
            entry=int(frame.entry[i]),
            exit_long=bool(frame.exit_long[i]),
            exit_short=bool(frame.exit_short[i]),
            confidence=float(frame.confidence[i]),
            atr=float(frame.atr[i]),
            provider=provider,
            score=score,
            record=record,
            exits_by=exits_by,
        )

    def wants_exit(self, long: bool, opened_by: str = "") -> bool:
        """Return whether a trade of that side, opened on a signal of ``opened_by``, should
        leave: on that source's own exits when this row carries them, else on the row's."""
        for name, exit_long, exit_short in self.exits_by:
            if name == opened_by:
                return exit_long if long else exit_short
        return self.exit_long if long else self.exit_short


class SignalProvider(Protocol):
    """Turns candles into signals. Must be causal (see module docstring)."""

    name: str
    warmup_candles: int  # candles needed before the first meaningful signal

    def compute(self, series: CandleSeries) -> SignalFrame:
        """Return signals for every candle of ``series``."""
        ...
