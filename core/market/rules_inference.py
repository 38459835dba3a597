"""Market rules inferred from a symbol's candles, for a candle file no venue rules are known of.

A venue prints prices on its tick and trades amounts on its step, so the candles carry both:

* the price tick is the finest decimal increment in the open, high, low and close columns
  (Binance BTC/USDT's 78205.96 gives 0.01, its futures' 78087.6 gives 0.1);
* volumes are sums of trade amounts, each a multiple of the step, so the finest increment in
  the volume column is at most the step (BTC/USDT's 328.10255 gives 0.00001, its real step).

Prices stored as binary floats are matched to a decimal within a relative 1e-13; a series
whose prices carry no short decimal (synthetic random walks) gets a tick of six significant
digits at its lowest price. The step is never coarser than one that buys ten steps within the
minimum notional at the highest price, so the smallest order stays tradable.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from core.domain.market import CandleSeries
from core.domain.market_rules import MarketRules

MAX_DECIMALS = 10  # finer than any venue's tick or step
MAX_DIGITS = 12  # a "decimal" needing more significant digits is float noise, not a grid
_REL_TOL = 1e-13  # a float holds a short decimal to ~1e-16 of its size
_SIGNIFICANT = 6  # the tick of prices with no short decimal: 12345.6 -> 0.1, 0.000123456 -> 1e-9
_STEPS_IN_MIN_NOTIONAL = 10


def infer_rules(series: CandleSeries, *, min_notional: Decimal) -> MarketRules:
    """Return rules for ``series``'s symbol from its candles (see module docstring).

    ``min_notional`` is the minimum order value to assume (the settings' fallback); the
    minimum amount is one step. ValueError for a series without a positive price.
    """
    prices = np.concatenate([series.open, series.high, series.low, series.close])
    prices = prices[np.isfinite(prices) & (prices > 0)]
    if not prices.size:
        raise ValueError(f"{series.symbol}: no positive price to infer market rules from")
    tick = _finest_increment(prices)
    if tick is None:
        tick = _power_of_ten(float(prices.min())) - (_SIGNIFICANT - 1)
    # The step that keeps the minimum notional worth ten steps at the highest price.
    reference = max(float(min_notional), 1.0)
    tradable = _power_of_ten(reference / _STEPS_IN_MIN_NOTIONAL / float(prices.max()))
    volumes = series.volume[np.isfinite(series.volume) & (series.volume > 0)]
    traded = _finest_increment(volumes) if volumes.size else None
    step = tradable if traded is None else min(traded, tradable)
    step_d = Decimal(1).scaleb(step)
    return MarketRules(
        symbol=series.symbol,
        amount_step=step_d,
        price_tick=Decimal(1).scaleb(tick),
        min_amount=step_d,
        min_notional=min_notional,
    )


def _finest_increment(values: npt.NDArray[np.float64]) -> int | None:
    """Return the exponent of the finest power of ten every value is a multiple of (-2 for
    0.01), or None when some value needs more than ``MAX_DECIMALS`` decimals or the largest
    more than ``MAX_DIGITS`` significant digits (random floats: no grid to find)."""
    values = np.unique(values)  # candles repeat prices: fewer values to check
    tolerance = np.abs(values) * _REL_TOL
    whole_digits = max(_power_of_ten(float(values.max())) + 1, 1)
    for decimals in range(min(MAX_DECIMALS, MAX_DIGITS - whole_digits) + 1):
        if np.all(np.abs(np.round(values, decimals) - values) <= tolerance):
            return -decimals  # whole numbers give 1: coarser would be a guess from round prices
    return None


def _power_of_ten(x: float) -> int:
    """Return the exponent of the largest power of ten not above ``x``."""
    return math.floor(math.log10(x))
