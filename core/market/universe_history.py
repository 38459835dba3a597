"""A dynamic universe over history: candidates at a refresh time from the candles themselves.

Point in time: a refresh at ``R`` sees only candles that closed by ``R`` (open + timeframe <=
R), so no volume, price or listing from after it can pick a symbol (no survivorship
look-ahead). A symbol whose candles have not started by then is not a candidate; its listing
time is its first candle, so a young file cannot pass ``min_listing_days``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from core.domain.market import CandleSeries, timeframe_to_ms
from core.market.universe import DAY_MS, Candidate, UniverseRules, select_universe

# Ranked by the quote volume of the last 24 h, as the venues' tickers report it live.
VOLUME_WINDOW_MS = DAY_MS


def quote_of(symbol: str) -> str:
    """Return the quote of ``BASE/QUOTE`` or a perp's ``BASE/QUOTE:SETTLE``."""
    return symbol.split("/", 1)[1].split(":", 1)[0] if "/" in symbol else ""


def candidates_at(
    series: Mapping[str, CandleSeries], refresh_ms: int, *, window_ms: int = VOLUME_WINDOW_MS
) -> list[Candidate]:
    """Return each symbol's candidate at ``refresh_ms``: quote volume (volume x close) summed
    over the candles of the last ``window_ms`` that closed by then, the last such close, and
    the first candle as its listing. Symbols with no candle in the window are left out."""
    found = []
    for symbol, s in series.items():
        tf_ms = timeframe_to_ms(s.timeframe)
        closed = int(np.searchsorted(s.ts_ms, refresh_ms - tf_ms, side="right"))
        first = int(np.searchsorted(s.ts_ms, refresh_ms - window_ms, side="left"))
        if closed <= first:
            continue  # not started yet, or nothing traded in the window (delisted)
        volume = float(np.dot(s.volume[first:closed], s.close[first:closed]))
        found.append(
            Candidate(
                symbol=symbol,
                quote=quote_of(symbol),
                quote_volume=volume,
                last_price=float(s.close[closed - 1]),
                listed_ms=int(s.ts_ms[0]),
            )
        )
    return found


def refresh_times(start_ms: int, end_ms: int, every_ms: int) -> list[int]:
    """Return the refresh times from ``start_ms`` (the first, as a process refreshes when it
    starts) every ``every_ms`` while before ``end_ms``."""
    if every_ms <= 0:
        raise ValueError(f"every_ms must be > 0, was {every_ms}")
    return list(range(start_ms, max(start_ms + 1, end_ms), every_ms))


def universe_schedule(
    series: Mapping[str, CandleSeries],
    rules: UniverseRules,
    times_ms: list[int],
) -> list[tuple[int, tuple[str, ...]]]:
    """Return the universe selected at each refresh time, from candles closed by then."""
    return [(t, select_universe(candidates_at(series, t), rules, t)) for t in times_ms]
