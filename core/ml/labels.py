"""Training targets, each with the row where it resolved (its END, which drives purging).

Two kinds:

* ``direction_labels``: the sign of the forward log return over ``horizon`` candles from the
  decision candle's close, optionally outside a no-trade band (rows inside it are not labelled);
* ``triple_barrier_labels`` (the default target): does the price reach the Exit Brain's TP1
  before its stop within ``horizon`` candles, entering as the bot does, at the next candle's
  open. The barriers come from the ``ExitConfig`` and are scaled as the Exit Brain scales them
  (``core.ml.barriers``). A candle touching both counts as the stop (the fill model's rule).

Label ``t`` uses candles ``t..end_idx[t]`` only. Thresholds that depend on the data (a band
from a quantile, percentile classes) are fitted by the functions at the bottom from the
training rows passed in, never from the whole series: the system we replace took them from
the whole history, future included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import talib

from core.brains.exit_config import ExitConfig
from core.domain.enums import PositionSide
from core.domain.market import CandleSeries
from core.ml.barriers import first_barriers

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ATR_PERIOD = 14  # the ATR the providers hand the Exit Brain (SignalFrame.atr)


@dataclass(frozen=True, slots=True, kw_only=True)
class Labels:
    """One target per candle. Use rows where ``valid``; ``y`` is the binary class (1 = up / TP1
    first), ``outcome`` the three-way result (+1 up or TP1, -1 down or stop, 0 in the band or
    at the horizon), ``ret`` the return realised to the end (in the trade's direction)."""

    name: str
    ts_ms: IntArray
    y: npt.NDArray[np.int8]
    outcome: npt.NDArray[np.int8]
    valid: npt.NDArray[np.bool_]
    end_idx: IntArray
    end_ts_ms: IntArray
    ret: FloatArray

    def __len__(self) -> int:
        return len(self.ts_ms)

    @property
    def start_idx(self) -> IntArray:
        """Return each label's first row (its decision candle)."""
        return np.arange(len(self.ts_ms), dtype=np.int64)


def atr_of(series: CandleSeries) -> FloatArray:
    """Return the series' ATR (``ATR_PERIOD``), the one the labels' barriers and the
    providers' frames use: compute it once and hand it to both."""
    if not len(series):
        return np.zeros(0)
    return np.asarray(talib.ATR(series.high, series.low, series.close, ATR_PERIOD), np.float64)


def forward_returns(series: CandleSeries, horizon: int) -> FloatArray:
    """Return log(close[t + horizon] / close[t]), NaN where the horizon is past the data."""
    _check_horizon(horizon)
    out = np.full(len(series), np.nan)
    if horizon < len(series):
        out[:-horizon] = np.log(series.close[horizon:] / series.close[:-horizon])
    return out


def direction_labels(
    series: CandleSeries, horizon: int, band: float | tuple[float, float] | None = None
) -> Labels:
    """Label the direction of the ``horizon``-candle forward return.

    ``band`` is a no-trade band on the log return: a half-width ``b`` (up above +b, down below
    -b) or explicit ``(low, high)`` from ``band_from_train``/``percentile_band``. Rows inside it,
    and rows whose horizon is past the data, are not valid.
    """
    fwd = forward_returns(series, horizon)
    low, high = (-band, band) if isinstance(band, float | int) else band or (0.0, 0.0)
    if low > high:
        raise ValueError(f"band low {low} is above band high {high}")
    outcome = np.where(fwd > high, 1, np.where(fwd < low, -1, 0)).astype(np.int8)
    n = len(series)
    end = np.minimum(np.arange(n, dtype=np.int64) + horizon, max(n - 1, 0))
    return Labels(
        name=f"direction:h{horizon}:band{low:g},{high:g}",
        ts_ms=series.ts_ms,
        y=(outcome > 0).astype(np.int8),
        outcome=outcome,
        valid=np.isfinite(fwd) & (outcome != 0),
        end_idx=end,
        end_ts_ms=series.ts_ms[end] if n else series.ts_ms,
        ret=fwd,
    )


def triple_barrier_labels(
    series: CandleSeries,
    *,
    horizon: int = 24,
    side: PositionSide = PositionSide.LONG,
    exits: ExitConfig | None = None,
    atr: FloatArray | None = None,
    confidence: float | FloatArray = 0.5,
    entry: Literal["next_open", "close"] = "next_open",
    slippage_bps: float = 0.0,
) -> Labels:
    """Label whether TP1 is reached before the stop within ``horizon`` candles of the entry.

    The decision is at candle ``t``'s close; the entry fills at ``open[t + 1]`` (plus
    ``slippage_bps`` against us), and candles ``t + 1 .. t + horizon`` are searched, the entry
    candle whole (the ladder exists from the open). ``atr`` (price units, per decision row)
    defaults to TA-Lib ATR 14, the one the providers pass to the Exit Brain; ``confidence``
    matters only in dynamic mode (0.5 is neutral). A label that reached neither barrier by the
    horizon is a negative (``outcome`` 0). Rows whose horizon is past the data and that hit
    nothing yet, and rows with no barrier (ATR warm-up in dynamic mode), are not valid.
    """
    _check_horizon(horizon)
    cfg = exits or ExitConfig()
    n = len(series)
    o, h, lo, c = series.open, series.high, series.low, series.close
    if atr is not None and len(atr) != n:
        raise ValueError(f"atr has {len(atr)} rows, the series {n}")
    if np.ndim(confidence) and len(np.asarray(confidence)) != n:
        raise ValueError(f"confidence has {len(np.asarray(confidence))} rows, the series {n}")
    atr_t = talib.ATR(h, lo, c, ATR_PERIOD) if atr is None and n else atr
    if atr_t is None:
        atr_t = np.full(n, np.nan)
    sign = 1.0 if side is PositionSide.LONG else -1.0
    fill = np.full(n, np.nan)
    if entry == "next_open":
        fill[:-1] = o[1:]
    else:
        fill[:] = c
    fill *= 1.0 + sign * slippage_bps / 10_000.0
    tp_frac, sl_frac = first_barriers(cfg, fill, np.asarray(atr_t, dtype=np.float64), confidence)
    tp = fill * (1.0 + sign * tp_frac)
    sl = fill * (1.0 - sign * sl_frac)
    step = np.zeros(n, dtype=np.int64)  # the k of the first touch, 0 while none
    hit_sl = np.zeros(n, dtype=bool)
    for k in range(1, horizon + 1):
        if k >= n:
            break
        rows = slice(0, n - k)
        open_rows = step[rows] == 0
        if side is PositionSide.LONG:
            stop_now, take_now = lo[k:] <= sl[rows], h[k:] >= tp[rows]
        else:
            stop_now, take_now = h[k:] >= sl[rows], lo[k:] <= tp[rows]
        touched = open_rows & (stop_now | take_now)
        step[: n - k][touched] = k  # basic slices are views: this writes into step
        hit_sl[: n - k][touched] = stop_now[touched]  # both touched: the stop, conservatively
    t = np.arange(n, dtype=np.int64)
    resolved = step > 0
    barriers_ok = np.isfinite(tp) & np.isfinite(sl)
    end = np.where(resolved, t + step, np.minimum(t + horizon, max(n - 1, 0)))
    complete = resolved | (t + horizon <= n - 1)
    outcome = np.where(resolved, np.where(hit_sl, -1, 1), 0).astype(np.int8)
    ret = _realised(series, end, fill, tp, sl, outcome, sign)
    label = (
        f"triple_barrier:{side.value}:h{horizon}:tp1={cfg.legs[0].target.kind}"
        f"{cfg.legs[0].target.value}:sl={cfg.stop.kind}{cfg.stop.value}"
        f":dynamic={cfg.dynamic.enabled}:entry={entry}"
    )
    return Labels(
        name=label,
        ts_ms=series.ts_ms,
        y=(outcome > 0).astype(np.int8),
        outcome=outcome,
        valid=complete & barriers_ok,
        end_idx=end,
        end_ts_ms=series.ts_ms[end] if n else series.ts_ms,
        ret=ret,
    )


def grown_triple_barrier_labels(
    previous: Labels,
    series: CandleSeries,
    *,
    horizon: int = 24,
    side: PositionSide = PositionSide.LONG,
    exits: ExitConfig | None = None,
    atr: FloatArray | None = None,
) -> Labels:
    """Return ``triple_barrier_labels(series, ...)`` (neutral confidence, next-open entry)
    when ``series`` is the history ``previous`` was computed on with candles appended.

    A label reads candles ``t..t + horizon`` only, so only the last ``horizon`` rows of
    ``previous`` can change (resolved since, or at the end of the data no more): those and the
    new rows are computed again, the rest kept (the same floats, not an approximation). ``atr``
    is that of the whole ``series`` (an EMA-type average: it must start where the history does).
    """
    n, n0 = len(series), len(previous)
    if not 0 < n0 <= n:
        return triple_barrier_labels(series, horizon=horizon, side=side, exits=exits, atr=atr)
    lo = max(0, n0 - horizon - 1)  # one more than can change: the last row had no entry yet
    if atr is None:
        atr = atr_of(series)
    tail = triple_barrier_labels(
        series.slice(lo), horizon=horizon, side=side, exits=exits, atr=atr[lo:]
    )
    if tail.name != previous.name:
        raise ValueError(f"labels {previous.name!r} cannot grow into {tail.name!r}")
    end = np.concatenate([previous.end_idx[:lo], tail.end_idx + lo])
    return Labels(
        name=tail.name,
        ts_ms=series.ts_ms,
        y=np.concatenate([previous.y[:lo], tail.y]),
        outcome=np.concatenate([previous.outcome[:lo], tail.outcome]),
        valid=np.concatenate([previous.valid[:lo], tail.valid]),
        end_idx=end,
        end_ts_ms=series.ts_ms[end],
        ret=np.concatenate([previous.ret[:lo], tail.ret]),
    )


def _realised(
    series: CandleSeries,
    end: IntArray,
    fill: FloatArray,
    tp: FloatArray,
    sl: FloatArray,
    outcome: npt.NDArray[np.int8],
    sign: float,
) -> FloatArray:
    """Return the trade's simple return to the label's end: TP1's price, the stop's (a gap
    through it fills at the open, as the fill model does) or the horizon's close."""
    if not len(end):
        return np.zeros(0)
    # the worse of the stop and the open of the candle that reached it (the entry candle opens
    # at the fill, inside the stop, so it gets the stop)
    stop_fill = sign * np.minimum(sign * sl, sign * series.open[end])
    exit_price = np.where(outcome > 0, tp, np.where(outcome < 0, stop_fill, series.close[end]))
    with np.errstate(invalid="ignore"):
        return np.asarray(sign * (exit_price / fill - 1.0), dtype=np.float64)


def _check_horizon(horizon: int) -> None:
    if horizon < 1:
        raise ValueError(f"label horizon must be >= 1 candle, was {horizon}")


# --- thresholds fitted on training rows only ---------------------------------------------------


def _train_values(values: FloatArray, train_idx: npt.NDArray[np.integer]) -> FloatArray:
    idx = np.asarray(train_idx)
    if idx.ndim != 1 or not len(idx):
        raise ValueError("threshold needs at least one training row, was given none")
    picked = values[idx]
    missing = ~np.isfinite(picked)
    if missing.any():
        raise ValueError(
            f"training row {int(idx[np.argmax(missing)])} has no forward return (its horizon is "
            "past the data): purge it from the training rows first"
        )
    return picked


def band_from_train(
    fwd: FloatArray, train_idx: npt.NDArray[np.integer], quantile: float = 1 / 3
) -> tuple[float, float]:
    """Return a symmetric no-trade band: the ``quantile`` of |forward return| on training rows.

    With 1/3, about a third of the training rows fall inside the band and are not labelled.
    """
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0, 1), was {quantile}")
    half = float(np.quantile(np.abs(_train_values(fwd, train_idx)), quantile))
    return -half, half


def percentile_band(
    fwd: FloatArray, train_idx: npt.NDArray[np.integer], tail: float = 0.25
) -> tuple[float, float]:
    """Return (low, high): the ``tail`` and ``1 - tail`` quantiles on training rows.

    The old system's classes (top 25 % up, bottom 25 % down), fitted where they may be.
    """
    if not 0.0 < tail <= 0.5:
        raise ValueError(f"tail must be in (0, 0.5], was {tail}")
    values = _train_values(fwd, train_idx)
    return float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))
