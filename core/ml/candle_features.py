"""The indicator block of the feature set: one series' OHLCV in, named scale-free columns out.

Every column is a ratio, a log-ratio or a bounded oscillator, so a coin at 0.0001 and one at
100,000 get the same values. Prices and volumes are first scaled by a power of two taken from
the first candle: that is exact in binary floating point (no value changes by even one bit) and
keeps TA-Lib's absolute zero tests (|x| < 1e-8 in RSI, ADX, ...) from firing on tiny prices.
Indicators are TA-Lib's; all look only backwards, so row i depends on candles 0..i.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import talib
from talib._ta_lib import MA_Type

FloatArray = npt.NDArray[np.float64]

RETURN_LAGS = (1, 2, 4, 8, 12, 24, 48)
RSI_PERIODS = (7, 14, 28)
EMA_PERIODS = (9, 21, 50, 200)
SMA_PERIODS = (20, 50)
RV_WINDOWS = (6, 24, 72, 168)
RANGE_WINDOWS = (24, 168)
VOLUME_WINDOWS = (20, 50)
MACD = (12, 26, 9)
STOCH = (14, 3, 3)
BBANDS = (20, 2.0)
ADX_PERIOD = 14
ATR_PERIODS = (7, 14, 28)
CCI_PERIOD = 20
MFI_PERIOD = 14
OBV_WINDOW = 20
ACCEL_LAG = 5
EMA_SLOPE = (21, 5)

PARAMS: dict[str, object] = {
    "return_lags": RETURN_LAGS,
    "rsi": RSI_PERIODS,
    "ema": EMA_PERIODS,
    "sma": SMA_PERIODS,
    "rv": RV_WINDOWS,
    "range": RANGE_WINDOWS,
    "volume": VOLUME_WINDOWS,
    "macd": MACD,
    "stoch": STOCH,
    "bbands": BBANDS,
    "adx": ADX_PERIOD,
    "atr": ATR_PERIODS,
    "cci": CCI_PERIOD,
    "mfi": MFI_PERIOD,
    "obv": OBV_WINDOW,
    "accel": ACCEL_LAG,
    "ema_slope": EMA_SLOPE,
}
SIMPLE_MA = MA_Type.SMA  # the stubs say Enum, the runtime passes 0; both accept this
LOOKBACK = 200  # the longest window (EMA 200); first_valid is measured, this is for loading


def indicator_columns() -> tuple[str, ...]:
    """Return the column names ``indicator_block`` produces, in order."""
    return (
        *(f"ret_{k}" for k in RETURN_LAGS),
        "body",
        "upper_wick",
        "lower_wick",
        "range",
        "close_pos",
        "gap",
        *(f"rsi_{p}" for p in RSI_PERIODS),
        "macd",
        "macd_signal",
        "macd_hist",
        "stoch_k",
        "stoch_d",
        "adx",
        "plus_di",
        "minus_di",
        *(f"dist_ema_{p}" for p in EMA_PERIODS),
        *(f"dist_sma_{p}" for p in SMA_PERIODS),
        "ema_slope",
        "natr_14",
        "natr_ratio",
        "bb_pctb",
        "bb_width",
        *(f"vol_ratio_{w}" for w in VOLUME_WINDOWS),
        "obv_slope",
        "mfi",
        "cci",
        "accel",
        *(f"rv_{w}" for w in RV_WINDOWS),
        "rv_ratio",
        *(f"range_pos_{w}" for w in RANGE_WINDOWS),
    )


def power_of_two_scale(values: FloatArray) -> float:
    """Return 2**-e that brings the first positive finite value into [0.5, 1) (1 if none)."""
    usable = values[np.isfinite(values) & (values > 0)]
    if not len(usable):
        return 1.0
    _, exponent = math.frexp(float(usable[0]))
    return math.ldexp(1.0, -exponent)


def _lag(x: FloatArray, k: int) -> FloatArray:
    out = np.full_like(x, np.nan)
    if k < len(x):
        out[k:] = x[:-k]
    return out


def _div(a: FloatArray, b: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(a / b, dtype=np.float64)


def _log_ratio(a: FloatArray, b: FloatArray) -> FloatArray:
    # log of the ratio, not a difference of logs: a ratio is exact under power-of-two scaling
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.log(a / b), dtype=np.float64)


def indicator_block(
    open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray
) -> list[FloatArray]:
    """Return the columns of ``indicator_columns()`` for one series (NaN in warm-up)."""
    s = power_of_two_scale(close)
    o, h, lo, c = open_ * s, high * s, low * s, close * s
    v = volume * power_of_two_scale(volume)
    cols: list[FloatArray] = [_log_ratio(c, _lag(c, k)) for k in RETURN_LAGS]
    r1 = cols[0]
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    cols += [
        _div(c - o, c),
        _div(h - top, c),
        _div(bottom - lo, c),
        _div(h - lo, c),
        np.where(h > lo, _div(c - lo, h - lo), 0.5),  # a flat candle closes mid-range
        _log_ratio(o, _lag(c, 1)),
    ]
    cols += [(talib.RSI(c, p) - 50.0) / 50.0 for p in RSI_PERIODS]
    macd, signal, hist = talib.MACD(c, *MACD)
    cols += [_div(macd, c), _div(signal, c), _div(hist, c)]
    k, d = talib.STOCH(h, lo, c, STOCH[0], STOCH[1], SIMPLE_MA, STOCH[2], SIMPLE_MA)
    cols += [k / 100.0 - 0.5, d / 100.0 - 0.5]
    cols += [
        talib.ADX(h, lo, c, ADX_PERIOD) / 100.0,
        talib.PLUS_DI(h, lo, c, ADX_PERIOD) / 100.0,
        talib.MINUS_DI(h, lo, c, ADX_PERIOD) / 100.0,
    ]
    emas = {p: talib.EMA(c, p) for p in EMA_PERIODS}
    cols += [_log_ratio(c, emas[p]) for p in EMA_PERIODS]
    cols += [_log_ratio(c, talib.SMA(c, p)) for p in SMA_PERIODS]
    slope_ema = talib.EMA(c, EMA_SLOPE[0])
    cols.append(_log_ratio(slope_ema, _lag(slope_ema, EMA_SLOPE[1])))
    natr = {p: talib.NATR(h, lo, c, p) / 100.0 for p in ATR_PERIODS}
    cols += [natr[14], _log_ratio(natr[7], natr[28])]
    upper, middle, lower = talib.BBANDS(c, BBANDS[0], BBANDS[1], BBANDS[1], SIMPLE_MA)
    cols += [_div(c - lower, upper - lower), _div(upper - lower, middle)]
    cols += [np.log1p(_div(v, talib.SMA(v, w))) for w in VOLUME_WINDOWS]
    obv = talib.OBV(c, v)
    cols.append(_div(obv - _lag(obv, OBV_WINDOW), talib.SUM(v, OBV_WINDOW)))
    cols.append(talib.MFI(h, lo, c, v, MFI_PERIOD) / 100.0 - 0.5)
    cols.append(talib.CCI(h, lo, c, CCI_PERIOD) / 100.0)
    ret_k = _log_ratio(c, _lag(c, ACCEL_LAG))
    cols.append(ret_k - _lag(ret_k, ACCEL_LAG))
    rv = {w: talib.STDDEV(r1, w) for w in RV_WINDOWS}
    cols += [rv[w] for w in RV_WINDOWS]
    cols.append(_log_ratio(rv[24], rv[168]))
    for w in RANGE_WINDOWS:
        hi, low_w = talib.MAX(h, w), talib.MIN(lo, w)
        cols.append(_div(c - low_w, hi - low_w))
    return cols
