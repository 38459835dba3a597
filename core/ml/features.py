"""The feature set of the ML members: ``feature_set(config)`` names it, ``compute_features``
computes it from candles, vectorised and causal (row i uses candles 0..i only; tested by
altering and removing later candles, the higher-timeframe and reference blocks included).

Columns, all scale-free (``core.ml.candle_features`` says how): log returns over 1-48 candles,
candle shape (body, wicks, range, close position, gap), RSI 7/14/28, MACD line/signal/hist
over price, stochastic %K/%D, ADX/+DI/-DI, distances to EMA 9/21/50/200 and SMA 20/50, EMA
slope, ATR over price and its short/long ratio, Bollinger %b and width, volume ratios, OBV
slope, MFI, CCI, acceleration, realised volatility over 6-168 candles and its ratio, position
in the 24/168-candle range, hour of day and day of week (sin/cos). Optional: the same trend and
volatility indicators on a higher timeframe (``htf4h_*``) and on a reference series
(``ref_*``: BTC for alts, with rolling correlation, beta and relative return).
"""

from __future__ import annotations

import functools

import numpy as np

from core.domain.market import CandleSeries, timeframe_to_ms
from core.ml.candle_features import LOOKBACK, PARAMS, indicator_block, indicator_columns
from core.ml.context_features import (
    HTF_KEEP,
    HTF_LOOKBACK,
    PAIR_WINDOW,
    REF_KEEP,
    TIME_COLUMNS,
    higher_timeframe_block,
    htf_columns,
    ref_columns,
    reference_block,
    time_columns,
)
from core.ml.feature_set import (
    FEATURE_SET_NAME,
    FEATURE_SET_VERSION,
    FeatureConfig,
    FeatureMatrix,
    FeatureSet,
)

# An EMA of period p forgets its seed by (1 - 2/(p+1))**(5p), about e**-10, after 5p candles.
CONVERGENCE = 5

__all__ = ["FeatureConfig", "FeatureMatrix", "FeatureSet", "compute_features", "feature_set"]


def feature_set(config: FeatureConfig | None = None, timeframe: str = "1h") -> FeatureSet:
    """Return the feature set ``config`` describes on ``timeframe`` candles (columns,
    parameters, hash, warm-up). The timeframe is in the hash: RSI 14 on 1h is not RSI 14 on 5m.
    """
    cfg = config or FeatureConfig()
    columns = (*indicator_columns(), *TIME_COLUMNS)
    warmup, history = LOOKBACK, CONVERGENCE * LOOKBACK
    if cfg.higher_timeframe is not None:
        columns += htf_columns(cfg.higher_timeframe)
        ratio = timeframe_to_ms(cfg.higher_timeframe) // timeframe_to_ms(timeframe)
        warmup = max(warmup, (HTF_LOOKBACK + 1) * ratio)
        history = max(history, (CONVERGENCE * HTF_LOOKBACK + 1) * ratio)
    if cfg.reference_symbol is not None:
        columns += ref_columns()
        warmup = max(warmup, PAIR_WINDOW + 1)
    params: dict[str, object] = {
        "timeframe": timeframe,
        "indicators": {k: list(v) if isinstance(v, tuple) else v for k, v in PARAMS.items()},
        "higher_timeframe": cfg.higher_timeframe,
        "htf_keep": list(HTF_KEEP),
        "reference_symbol": cfg.reference_symbol,
        "ref_keep": list(REF_KEEP),
        "pair_window": PAIR_WINDOW,
        "dtype": cfg.dtype,
    }
    return FeatureSet(
        name=FEATURE_SET_NAME,
        version=FEATURE_SET_VERSION,
        columns=columns,
        params=params,
        warmup_candles=warmup,
        history_candles=history,
    )


def compute_features(
    series: CandleSeries,
    config: FeatureConfig | None = None,
    *,
    reference: CandleSeries | None = None,
    previous: FeatureMatrix | None = None,
) -> FeatureMatrix:
    """Return the features of every candle of ``series`` (NaN, never inf, where undefined).

    ``reference`` is required when the config names a reference symbol, and must be that
    symbol's candles; it may cover more or less time than ``series`` (rows it does not cover
    are NaN in the ``ref_*`` columns).

    ``previous``: the features of the history ``series`` grew from by appending candles (the
    caller checked: same first candle on). Its rows are kept and only the new rows assembled:
    the same floats (causal, and every step after the indicators is row by row). The
    indicators themselves still run on the whole series: TA-Lib's EMA-type averages and
    running sums remember every candle since the first, so a tail alone would not match.
    """
    cfg = config or FeatureConfig()
    fs, set_hash = _feature_set_and_hash(cfg, series.timeframe)
    n = len(series)
    n0 = 0  # the rows kept from ``previous`` (a reference series may have moved: none)
    if previous is not None and previous.set_hash == set_hash and len(previous) <= n:
        n0 = 0 if cfg.reference_symbol is not None else len(previous)
    block = indicator_block(series.open, series.high, series.low, series.close, series.volume)
    cols = [col[n0:] for col in block] + time_columns(series.ts_ms[n0:])
    if cfg.higher_timeframe is not None:
        cols += [col[n0:] for col in higher_timeframe_block(series, cfg.higher_timeframe)]
    if cfg.reference_symbol is not None:
        if reference is None or reference.symbol != cfg.reference_symbol:
            got = "none" if reference is None else reference.symbol
            raise ValueError(
                f"feature set needs the reference series {cfg.reference_symbol}, was given {got}"
            )
        ret_24 = block[indicator_columns().index("ret_24")]
        cols += [col[n0:] for col in reference_block(series, reference, ret_24)]
    values = np.empty((n - n0, len(cols)), dtype=cfg.dtype)
    for j, col in enumerate(cols):
        values[:, j] = col
    values[~np.isfinite(values)] = np.nan  # inf from a zero range or volume: undefined, not huge
    finite = np.isfinite(values).all(axis=1)
    first = n0 + int(np.argmax(finite)) if finite.any() else n
    if previous is not None and n0:
        if previous.first_valid < n0:  # else none of its rows was valid
            first = previous.first_valid
        values = np.concatenate([previous.values, values])
    return FeatureMatrix(
        ts_ms=series.ts_ms,
        values=values,
        columns=fs.columns,
        set_hash=set_hash,
        first_valid=first,
    )


@functools.lru_cache(maxsize=64)
def _feature_set_and_hash(config: FeatureConfig, timeframe: str) -> tuple[FeatureSet, str]:
    """Return the feature set and its hash (a JSON dump and a sha256: once per config)."""
    fs = feature_set(config, timeframe)
    return fs, fs.hash
