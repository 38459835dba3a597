"""A dynamic universe over history: candidates at a refresh time from the candles themselves.

Point in time: a refresh at ``R`` sees only candles that closed by ``R`` (open + timeframe <=
R), so no volume, price or listing from after it can pick a symbol (no survivorship
look-ahead). A symbol whose candles have not started by then is not a candidate; its listing
time is its first candle, so a young file cannot pass ``min_listing_days``.

Every refresh of a backtest is computed at once per symbol (numpy), then ranked, and the
rules (``core.market.universe``) are checked only for the best few of each refresh.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.domain.market import CandleSeries, timeframe_to_ms
from core.market.universe import DAY_MS, Candidate, UniverseRules, select_ranked

# Ranked by the quote volume of the last 24 h, as the venues' tickers report it live.
VOLUME_WINDOW_MS = DAY_MS
# Rows x candles per window summed at once (bounds the memory of a long 1m backtest).
_CHUNK_CELLS = 1 << 20


def quote_of(symbol: str) -> str:
    """Return the quote of ``BASE/QUOTE`` or a perp's ``BASE/QUOTE:SETTLE``."""
    return symbol.split("/", 1)[1].split(":", 1)[0] if "/" in symbol else ""


@dataclass(frozen=True, slots=True)
class _Trailing:
    """One symbol at each refresh time: the window's quote volume, the last close, and
    whether any candle of the window had closed (else it is no candidate)."""

    volume: npt.NDArray[np.float64]
    last: npt.NDArray[np.float64]
    seen: npt.NDArray[np.bool_]


def _trailing(s: CandleSeries, times_ms: npt.NDArray[np.int64], window_ms: int) -> _Trailing:
    tf_ms = timeframe_to_ms(s.timeframe)
    closed = np.searchsorted(s.ts_ms, times_ms - tf_ms, side="right")  # open + tf <= R
    # The window ends at the last candle close by R (R floored to the grid): a refresh between
    # two closes must see the whole window, not lose its oldest candle (a 1d universe at noon
    # saw nothing and went empty).
    ends = times_ms - times_ms % tf_ms
    first = np.searchsorted(s.ts_ms, ends - window_ms, side="left")
    seen = closed > first  # not started yet, or nothing traded in the window (delisted)
    quote = s.volume * s.close
    width = max(1, -(-window_ms // tf_ms))
    volume = np.zeros(len(times_ms))
    # Summed window by window (not from running totals): a window's sum depends only on its
    # own candles, so two symbols that traded alike tie exactly and rank by symbol.
    rows = max(1, _CHUNK_CELLS // width)
    for lo in range(0, len(times_ms), rows):
        start, stop = first[lo : lo + rows], closed[lo : lo + rows]
        idx = start[:, None] + np.arange(width)
        inside = idx < stop[:, None]
        picked = quote[np.minimum(idx, max(len(quote) - 1, 0))] if len(quote) else idx * 0.0
        volume[lo : lo + rows] = np.where(inside, picked, 0.0).sum(axis=1)
    last = s.close[np.maximum(closed - 1, 0)] if len(s) else np.zeros(len(times_ms))
    return _Trailing(volume=volume, last=np.asarray(last, dtype=np.float64), seen=seen)


def candidates_at(
    series: Mapping[str, CandleSeries], refresh_ms: int, *, window_ms: int = VOLUME_WINDOW_MS
) -> list[Candidate]:
    """Return each symbol's candidate at ``refresh_ms``: quote volume (volume x close) summed
    over the candles of the last ``window_ms`` that closed by then, the last such close, and
    the first candle as its listing. Symbols with no candle in the window are left out."""
    times = np.array([refresh_ms], dtype=np.int64)
    found = []
    for symbol, s in series.items():
        t = _trailing(s, times, window_ms)
        if t.seen[0]:
            found.append(_candidate(symbol, s, float(t.volume[0]), float(t.last[0])))
    return found


def _candidate(symbol: str, s: CandleSeries, volume: float, last: float) -> Candidate:
    return Candidate(
        symbol=symbol,
        quote=quote_of(symbol),
        quote_volume=volume,
        last_price=last,
        listed_ms=int(s.ts_ms[0]),
    )


def refresh_times(start_ms: int, end_ms: int, every_ms: int) -> list[int]:
    """Return the refresh times from ``start_ms`` (the first, as a process refreshes when it
    starts) every ``every_ms`` while before ``end_ms``."""
    if every_ms <= 0:
        raise ValueError(f"every_ms must be > 0, was {every_ms}")
    return list(range(start_ms, max(start_ms + 1, end_ms), every_ms))


def universe_schedule(
    series: Mapping[str, CandleSeries],
    rules: UniverseRules,
    times_ms: Sequence[int],
    *,
    window_ms: int = VOLUME_WINDOW_MS,
) -> list[tuple[int, tuple[str, ...]]]:
    """Return the universe selected at each refresh time, from candles closed by then: the
    same as ``select_universe(candidates_at(series, t), rules, t)`` for every ``t``."""
    symbols = sorted(series)  # a stable sort keeps this order among equal volumes
    if not symbols or not len(times_ms):
        return [(t, ()) for t in times_ms]
    times = np.asarray(times_ms, dtype=np.int64)
    per = [_trailing(series[s], times, window_ms) for s in symbols]
    volume = np.stack([p.volume for p in per], axis=1)
    seen = np.stack([p.seen for p in per], axis=1)
    last = np.stack([p.last for p in per], axis=1)
    key = np.where(seen & ~np.isnan(volume), volume, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")

    def ranked(row: int) -> Iterator[Candidate]:
        for j in order[row].tolist():
            if not seen[row, j]:
                return  # the rest are no candidates either (ranked last)
            s = symbols[j]
            yield _candidate(s, series[s], float(volume[row, j]), float(last[row, j]))

    return [(t, select_ranked(ranked(i), rules, t)) for i, t in enumerate(times.tolist())]
