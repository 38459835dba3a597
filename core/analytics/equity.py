"""Rebuild the account's equity at every candle close from the fills (vectorised).

Holdings only change at fills, so we walk the (few) fills once to get step functions of cash
and position per symbol, then value them at every close with numpy. A fill belongs to the
candle it happened in (``fill.ts_ms`` is within that candle), so the equity at a candle's
close includes it. Spot: equity = cash + sum(holdings * close). Perpetuals: cash holds realized
PnL and fees, equity adds ``position * (close - average entry)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from core.domain.enums import MarketType, Side
from core.domain.market import CandleSeries, grid_floor_ms, timeframe_to_ms
from core.domain.orders import Fill

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def equity_curve(
    fills: Sequence[Fill],
    series: Mapping[str, CandleSeries],
    *,
    starting_balance: Decimal,
    market_type: MarketType,
    start_ms: int | None = None,
    cash_flows: Sequence[tuple[int, Decimal]] = (),
) -> tuple[IntArray, FloatArray]:
    """Return ``(close_ts_ms, equity)`` on the union of candle close times from ``start_ms``.

    The first point is the starting balance one candle before the first close, so that fees
    and losses of the first candle show as a drawdown. ``cash_flows`` are ``(ts_ms, amount)``
    payments outside fills (funding), counted from the first close at or after ``ts_ms``.
    """
    grids = []
    for s in series.values():
        part = s.between(start_ms, None)
        grids.append(part.ts_ms + timeframe_to_ms(s.timeframe))
    close_ts = np.unique(np.concatenate(grids)) if grids else np.empty(0, np.int64)
    if len(close_ts) == 0:
        raise ValueError("equity_curve needs at least one candle")
    cash = np.full(len(close_ts), float(starting_balance))
    value = np.zeros(len(close_ts))
    ordered = sorted(fills, key=lambda f: f.ts_ms)
    for symbol, s in series.items():
        mine = [f for f in ordered if f.symbol == symbol]
        tf_ms = timeframe_to_ms(s.timeframe)
        closes = _close_on_grid(s, close_ts, tf_ms)
        # Index of the first equity point that includes each fill (its candle's close or later).
        fill_close = np.array(
            [grid_floor_ms(f.ts_ms, s.timeframe) + tf_ms for f in mine], dtype=np.int64
        )
        at = np.searchsorted(close_ts, fill_close, side="left")
        cash_delta, pos_after, entry_after = _walk(mine, market_type)
        cash += _step(at, cash_delta, len(close_ts), cumulative=True)
        pos = _step(at, pos_after, len(close_ts), cumulative=False)
        if market_type is MarketType.PERP:
            entry = _step(at, entry_after, len(close_ts), cumulative=False)
            value += np.where(pos != 0, pos * (closes - entry), 0.0)
        else:
            value += np.where(pos != 0, pos * closes, 0.0)
    if cash_flows:
        flow_at = np.searchsorted(close_ts, [ts for ts, _ in cash_flows], side="left")
        flows = np.array([float(amount) for _, amount in cash_flows], dtype=np.float64)
        cash += _step(flow_at, flows, len(close_ts), cumulative=True)
    first_ts = (
        close_ts[0] - int(np.min(np.diff(close_ts))) if len(close_ts) > 1 else close_ts[0] - 1
    )
    ts = np.concatenate(([first_ts], close_ts)).astype(np.int64)
    equity = np.concatenate(([float(starting_balance)], cash + value))
    return ts, equity


def _close_on_grid(s: CandleSeries, close_ts: IntArray, tf_ms: int) -> FloatArray:
    """Return the symbol's last known close at each grid time (NaN before its first candle)."""
    own_close_ts = s.ts_ms + tf_ms
    idx = np.searchsorted(own_close_ts, close_ts, side="right") - 1
    out = np.where(idx >= 0, s.close[np.clip(idx, 0, None)], np.nan)
    return np.nan_to_num(out, nan=0.0)


def _walk(fills: Sequence[Fill], market_type: MarketType) -> tuple[FloatArray, ...]:
    """Return per fill: cash change, signed position after, average entry after."""
    cash_delta, pos_after, entry_after = [], [], []
    pos = Decimal(0)
    entry = Decimal(0)
    for f in fills:
        signed = f.amount if f.side is Side.BUY else -f.amount
        if market_type is MarketType.SPOT:
            cash_delta.append(float(-signed * f.price - f.fee))
        else:
            realized = Decimal(0)
            if pos != 0 and (pos > 0) != (signed > 0):  # reducing (or flipping)
                closed = min(abs(signed), abs(pos))
                realized = closed * (f.price - entry) * (1 if pos > 0 else -1)
            cash_delta.append(float(realized - f.fee))
            new_pos = pos + signed
            if new_pos == 0:
                entry = Decimal(0)
            elif pos == 0 or (pos > 0) != (new_pos > 0):
                entry = f.price  # opened, or flipped through zero
            elif (pos > 0) == (signed > 0):
                entry = (entry * abs(pos) + f.price * abs(signed)) / abs(new_pos)
        pos += signed
        pos_after.append(float(pos))
        entry_after.append(float(entry))
    return (
        np.array(cash_delta, dtype=np.float64),
        np.array(pos_after, dtype=np.float64),
        np.array(entry_after, dtype=np.float64),
    )


def _step(at: IntArray, values: FloatArray, n: int, *, cumulative: bool) -> FloatArray:
    """Return a length-``n`` step function: sum of deltas, or the last value set, up to each i."""
    out = np.zeros(n)
    if len(at) == 0:
        return out
    if cumulative:
        np.add.at(out, np.clip(at, 0, n - 1), values * (at < n))
        return np.cumsum(out)
    last = np.full(n, -1, dtype=np.int64)
    valid = at < n
    last[at[valid]] = np.flatnonzero(valid)  # the last fill landing on each index wins
    last = np.maximum.accumulate(last)
    return np.where(last >= 0, values[np.clip(last, 0, None)], 0.0)
