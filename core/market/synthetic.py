"""A seeded synthetic market: our own model, good enough to exercise every part offline.

The model, per bar:

* a hidden regime (calm, trending up, trending down, volatile) follows a Markov chain whose
  mean durations are set in days, so the chain looks alike on every timeframe;
* standardised shocks follow GARCH(1,1) with Student-t innovations (fat tails, volatility
  clustering); the regime scales them and adds its drift;
* each bar opens at the previous close; wicks extend beyond open/close by exponential amounts
  proportional to the bar's volatility;
* volume is log-normal and rises with the bar's volatility and with the size of its move.

The same (seed, symbol) always gives the same arrays; the symbol enters through a stable hash
(sha256, not Python's per-process ``hash()``), so symbols differ under one seed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.domain.market import CandleSeries, grid_floor_ms, timeframe_to_ms

DAY_MS = 86_400_000
DEFAULT_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


@dataclass(frozen=True, slots=True, kw_only=True)
class Regime:
    """One hidden market state."""

    name: str
    drift_per_day: float  # log-return drift
    vol_mult: float  # scales the base volatility
    mean_days: float  # mean time spent in the regime


REGIMES: tuple[Regime, ...] = (
    Regime(name="calm", drift_per_day=0.0, vol_mult=0.6, mean_days=12.0),
    Regime(name="trend_up", drift_per_day=0.006, vol_mult=0.9, mean_days=8.0),
    Regime(name="trend_down", drift_per_day=-0.007, vol_mult=1.1, mean_days=6.0),
    Regime(name="volatile", drift_per_day=0.0, vol_mult=2.0, mean_days=3.0),
)
# Where a regime goes when it ends (rows: from, columns: to; the diagonal is unused).
_NEXT = np.array(
    [
        [0.0, 0.4, 0.35, 0.25],
        [0.6, 0.0, 0.15, 0.25],
        [0.5, 0.2, 0.0, 0.3],
        [0.5, 0.25, 0.25, 0.0],
    ]
)
DAILY_VOL = 0.03  # base volatility of log returns per day
# beta^2 + 2*alpha*beta + kurt(z)*alpha^2 < 1 keeps the return kurtosis finite (about 10-20 on 1h).
GARCH_ALPHA = 0.06
GARCH_BETA = 0.92
STUDENT_DF = 5.0


def symbol_seed(seed: int, symbol: str) -> int:
    """Derive a stable 64-bit sub-seed from ``seed`` and ``symbol``."""
    digest = hashlib.sha256(f"{seed}|{symbol}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def generate_candles(
    symbol: str,
    timeframe: str,
    n: int,
    *,
    seed: int,
    start_ms: int = DEFAULT_START_MS,
    start_price: float = 100.0,
    trend_scale: float = 1.0,
) -> CandleSeries:
    """Return ``n`` synthetic candles starting at ``start_ms`` (which must lie on the grid).

    ``trend_scale`` multiplies every regime's drift: the demo's market trends harder, so its
    models find something to learn in a few months of history (a real market is harder).
    """
    tf_ms = timeframe_to_ms(timeframe)
    if n < 0:
        raise ValueError(f"n must be >= 0, was {n}")
    if grid_floor_ms(start_ms, timeframe) != start_ms:
        raise ValueError(f"start_ms {start_ms} is not on the {timeframe} grid")
    if not start_price > 0:
        raise ValueError(f"start_price must be > 0, was {start_price}")
    if not trend_scale >= 0:
        raise ValueError(f"trend_scale must be >= 0, was {trend_scale}")
    rng = np.random.default_rng(symbol_seed(seed, symbol))
    days_per_bar = tf_ms / DAY_MS

    regimes = _regime_path(rng, n, days_per_bar)
    drift = np.array([r.drift_per_day for r in REGIMES])[regimes] * days_per_bar * trend_scale
    sigma_base = DAILY_VOL * math.sqrt(days_per_bar)
    scale = np.array([r.vol_mult for r in REGIMES])[regimes] * sigma_base

    shocks, cond_sd = _garch_shocks(rng, n)
    bar_sd = scale * cond_sd  # the bar's volatility of log returns
    log_ret = drift + scale * shocks

    log_close = math.log(start_price) + np.cumsum(log_ret)
    close = np.exp(log_close)
    open_ = np.empty(n)
    if n:
        open_[0] = start_price
        open_[1:] = close[:-1]
    # Multiplying by exp(x >= 0) can only keep or raise a float, so high >= max(open, close).
    wick_up = np.exp(bar_sd * rng.exponential(0.5, n))
    wick_down = np.exp(-bar_sd * rng.exponential(0.5, n))
    high = np.maximum(open_, close) * wick_up
    low = np.minimum(open_, close) * wick_down

    base_volume = 1_000.0 * days_per_bar * 24.0
    log_volume = (
        math.log(base_volume)
        + 0.8 * np.log(bar_sd / sigma_base)
        + 0.5 * np.abs(shocks)
        + rng.normal(0.0, 0.3, n)
    )
    volume = np.exp(log_volume)
    ts_ms = start_ms + np.arange(n, dtype=np.int64) * tf_ms
    return CandleSeries.from_columns(symbol, timeframe, ts_ms, open_, high, low, close, volume)


def with_crash(series: CandleSeries, at: int, drop_pct: float) -> CandleSeries:
    """Return ``series`` with a crash at candle ``at``: it opens ``drop_pct`` % below the
    previous close (a gap no stop can fill at its price) and every later price is scaled by
    the same factor, so the market stays where the crash left it."""
    if not 0.0 < drop_pct < 100.0:
        raise ValueError(f"a crash drops by a percentage in (0, 100), was {drop_pct}")
    if not 0 < at < len(series):
        raise ValueError(
            f"a crash candle must be inside the series (1..{len(series) - 1}), was {at}"
        )
    factor = np.ones(len(series))
    factor[at:] = 1.0 - drop_pct / 100.0
    return CandleSeries.from_columns(
        series.symbol,
        series.timeframe,
        series.ts_ms,
        series.open * factor,
        series.high * factor,
        series.low * factor,
        series.close * factor,
        series.volume * np.where(factor < 1.0, 5.0, 1.0),  # panic volume
    )


def _regime_path(rng: np.random.Generator, n: int, days_per_bar: float) -> npt.NDArray[np.intp]:
    """Return the regime index of every bar, drawn segment by segment (geometric durations)."""
    path = np.empty(n, dtype=np.intp)
    state = int(rng.integers(len(REGIMES)))
    pos = 0
    while pos < n:
        # Per-bar chance to leave, so mean duration in days holds on every timeframe.
        leave_p = min(1.0, max(1e-6, days_per_bar / REGIMES[state].mean_days))
        length = int(rng.geometric(leave_p))
        path[pos : pos + length] = state
        pos += length
        state = int(rng.choice(len(REGIMES), p=_NEXT[state]))
    return path


def _garch_shocks(
    rng: np.random.Generator, n: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return GARCH(1,1) shocks with unit unconditional variance and their conditional sd."""
    z = rng.standard_t(STUDENT_DF, n) * math.sqrt((STUDENT_DF - 2.0) / STUDENT_DF)
    omega = 1.0 - GARCH_ALPHA - GARCH_BETA
    alpha, beta = GARCH_ALPHA, GARCH_BETA
    var = np.empty(n)
    h, e = 1.0, 0.0
    # The recursion is sequential by nature; plain floats keep 100k bars around 50 ms.
    for t, zt in enumerate(z.tolist()):
        h = omega + alpha * e * e + beta * h
        e = math.sqrt(h) * zt
        var[t] = h
    cond_sd = np.sqrt(var)
    return cond_sd * z, cond_sd


def on_grid(series: CandleSeries, *, tick: float, step: float) -> CandleSeries:
    """Return ``series`` with its prices on ``tick`` and its volumes on ``step``, as a venue
    prints them (a price never below one tick, high and low kept outermost)."""

    def snap(values: npt.NDArray[np.float64], unit: float) -> npt.NDArray[np.float64]:
        decimals = max(0, -math.floor(math.log10(unit)))
        return np.round(np.maximum(np.round(values / unit), 1) * unit, decimals)

    o, h, lo, c = (snap(v, tick) for v in (series.open, series.high, series.low, series.close))
    high, low = np.maximum.reduce([o, h, lo, c]), np.minimum.reduce([o, h, lo, c])
    return CandleSeries.from_columns(
        series.symbol, series.timeframe, series.ts_ms, o, high, low, c, snap(series.volume, step)
    )
