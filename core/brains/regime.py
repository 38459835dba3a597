"""The market regime of each candle: trend or range, high or low volatility. Pure and causal.

One set of labels for the whole process (the system we replace had four detectors with four
label sets, and its engine read a key none of them wrote):

* **trend** when ADX (TA-Lib, ``adx_period``) is at least ``trend_adx``, else **range**;
* **high volatility** when the realised volatility of the last ``vol_window`` log returns is
  ``high_vol_ratio`` times its own median over the ``vol_history`` candles before, or more,
  else **low** (by the median alone, a calm market would be "high" half the time): a coin's
  volatility is judged against its own past, so the label means the same at 0.0001 and at
  100,000, and needs no threshold fitted on the future.

A raw label becomes the regime only after it held ``confirm`` candles in a row (no flapping on
one noisy candle). Row ``i`` depends on candles ``0..i`` only (tested by cutting the future).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from core.domain.market import CandleSeries
from core.values import value_class


class Regime(IntEnum):
    """A candle's regime; UNKNOWN during warm-up."""

    UNKNOWN = 0
    TREND_LOW_VOL = 1
    TREND_HIGH_VOL = 2
    RANGE_LOW_VOL = 3
    RANGE_HIGH_VOL = 4

    @property
    def label(self) -> str:
        """Return the name events and reports use (``trend_high_vol``)."""
        return self.name.lower()


@value_class(frozen=True, slots=True, kw_only=True)
class RegimeConfig:
    """How regimes are told apart (see module docstring)."""

    adx_period: int = 14
    trend_adx: float = 25.0
    vol_window: int = 24
    vol_history: int = 24 * 30
    high_vol_ratio: float = 1.3
    confirm: int = 3

    def __post_init__(self) -> None:
        for name in ("adx_period", "vol_window", "vol_history", "confirm"):
            if getattr(self, name) < 1:
                raise ValueError(f"regime {name} must be >= 1, was {getattr(self, name)}")
        if not self.high_vol_ratio > 0:
            raise ValueError(f"regime high_vol_ratio must be > 0, was {self.high_vol_ratio}")
        if not 0 < self.trend_adx < 100:
            raise ValueError(f"regime trend_adx must be in (0, 100), was {self.trend_adx}")

    @property
    def warmup_candles(self) -> int:
        """Return the candles needed before the first regime that is not UNKNOWN."""
        return max(2 * self.adx_period, self.vol_window + self.vol_history) + self.confirm


@dataclass(slots=True)
class RegimeMemo:
    """The closes and trailing medians of the last history a caller detected regimes on.

    The median over ``vol_history`` candles is most of the cost; a history that extends the
    last one (live: one candle more, same start) reuses the rows it shares, which causality
    makes exact, and computes the new rows only.
    """

    close: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    typical: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    config: RegimeConfig | None = None  # the medians are of its windows: another's start over


def detect_regimes(
    series: CandleSeries, config: RegimeConfig | None = None, memo: RegimeMemo | None = None
) -> npt.NDArray[np.int8]:
    """Return the ``Regime`` of every candle of ``series`` (int8 codes, see ``Regime``);
    ``memo`` (kept by the caller, per symbol) saves recomputing what an earlier call did."""
    import talib  # C extension: loaded when regimes are first asked for

    cfg = config or RegimeConfig()
    n = len(series)
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    high, low, close = (
        np.ascontiguousarray(a, dtype=np.float64) for a in (series.high, series.low, series.close)
    )
    adx = talib.ADX(high, low, close, timeperiod=cfg.adx_period)
    vol = _realised_vol(close, cfg.vol_window)
    shared = 0
    if memo is not None:
        m = len(memo.close)
        if memo.config == cfg and m <= n and np.array_equal(memo.close, close[:m]):
            shared = m
    typical = _trailing_median(vol, cfg.vol_history, memo.typical[:shared] if memo else None)
    if memo is not None:
        memo.close, memo.typical, memo.config = close.copy(), typical, cfg
    raw = np.zeros(n, dtype=np.int8)
    known = np.isfinite(adx) & np.isfinite(vol) & np.isfinite(typical)
    trend = adx >= cfg.trend_adx
    high_vol = vol >= typical * cfg.high_vol_ratio
    raw[known & trend & ~high_vol] = Regime.TREND_LOW_VOL
    raw[known & trend & high_vol] = Regime.TREND_HIGH_VOL
    raw[known & ~trend & ~high_vol] = Regime.RANGE_LOW_VOL
    raw[known & ~trend & high_vol] = Regime.RANGE_HIGH_VOL
    return _confirmed(raw, cfg.confirm)


def _realised_vol(close: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    """Return the standard deviation of the last ``window`` log returns at each candle."""
    out = np.full(len(close), np.nan)
    if len(close) <= window:
        return out
    returns = np.diff(np.log(close))
    windows = np.lib.stride_tricks.sliding_window_view(returns, window)
    out[window:] = windows.std(axis=1)
    return out


def _trailing_median(
    values: npt.NDArray[np.float64],
    history: int,
    known: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """Return, at each row, the median of the ``history`` values before it (NaN while a NaN
    is among them: not enough yet); ``known`` holds the first rows' already."""
    n = len(values)
    out = np.full(n, np.nan)
    start = history
    if known is not None and len(known):
        out[: len(known)] = known
        start = max(history, len(known))
    if n <= start:
        return out
    # One sorted window slid along (O(history) memory): a matrix of every window would be
    # rows x history floats, gigabytes on years of 5m candles. Same values as np.median.
    vals = values.tolist()
    window = sorted(v for v in vals[start - history : start] if v == v)
    nans = history - len(window)
    mid, odd = history // 2, history % 2
    for i in range(start, n):
        if not nans:
            out[i] = window[mid] if odd else (window[mid - 1] + window[mid]) / 2
        old, new = vals[i - history], vals[i]
        if old == old:  # NaN != NaN: never in the sorted window, only counted
            del window[bisect.bisect_left(window, old)]
        else:
            nans -= 1
        if new == new:
            bisect.insort(window, new)
        else:
            nans += 1
    return out


def _confirmed(raw: npt.NDArray[np.int8], confirm: int) -> npt.NDArray[np.int8]:
    """Return the regimes: a raw label takes over once it held ``confirm`` candles in a row."""
    out = np.zeros(len(raw), dtype=np.int8)
    current, run, last = Regime.UNKNOWN.value, 0, -1
    for i, label in enumerate(raw.tolist()):
        run = run + 1 if label == last else 1
        last = label
        if label != current and run >= confirm:
            current = label
        out[i] = current
    return out


def changes(
    regimes: npt.NDArray[np.int8], ts_ms: npt.NDArray[np.int64]
) -> list[tuple[int, Regime, Regime]]:
    """Return ``(open time, previous, new)`` for every candle where the regime changed."""
    at = np.flatnonzero(regimes[1:] != regimes[:-1]) + 1
    return [(int(ts_ms[i]), Regime(int(regimes[i - 1])), Regime(int(regimes[i]))) for i in at]
