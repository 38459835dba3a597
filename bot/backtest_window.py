"""What a backtest's range must hold, checked before anything is simulated.

A symbol without candles in the range (a --timerange outside the data, a coin listed after
the range, a one-candle file) used to end in an IndexError or "equity_curve needs at least one
candle", some after the whole run. Here each input is held against the range first, and a
refusal names the input (its file, when the caller says which), the range and what the input
covers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.domain.market import CandleSeries, fmt_ts
from core.errors import DataError
from core.market.funding import FundingRates

# A signal at a candle's close fills at the next candle's open: one candle cannot trade.
MIN_CANDLES = 2


@dataclass(frozen=True, slots=True)
class Sources:
    """Where each symbol's inputs came from (a file name, "the database ..."), for messages."""

    candles: Mapping[str, str] = field(default_factory=dict)
    detail: Mapping[str, str] = field(default_factory=dict)
    funding: Mapping[str, str] = field(default_factory=dict)


def trading_start_ms(series: Mapping[str, CandleSeries], start_ms: int | None) -> int:
    """Return when trading starts: ``start_ms``, else the first candle of any symbol."""
    if start_ms is not None:
        return start_ms
    firsts = [int(s.ts_ms[0]) for s in series.values() if len(s)]
    if not firsts:
        raise DataError("a backtest needs candles, and none of its symbols has any")
    return min(firsts)


def check_window(
    series: Mapping[str, CandleSeries],
    *,
    start_ms: int | None,
    end_ms: int | None,
    detail: Mapping[str, CandleSeries] | None = None,
    funding: Mapping[str, FundingRates] | None = None,
    sources: Sources | None = None,
) -> None:
    """Raise ``DataError`` unless every symbol has ``MIN_CANDLES`` candles from the trading
    start to ``end_ms``, and every detail series and funding file something in that range."""
    sources = sources or Sources()
    start = trading_start_ms(series, start_ms)
    span = f"from {fmt_ts(start)} to {'the end' if end_ms is None else fmt_ts(end_ms)}"
    for symbol, candles in series.items():
        _check(symbol, sources.candles, candles.ts_ms.tolist(), start, end_ms, span, MIN_CANDLES)
    for symbol, finer in (detail or {}).items():
        _check(symbol, sources.detail, finer.ts_ms.tolist(), start, end_ms, span, 1)
    for symbol, rates in (funding or {}).items():
        _check(symbol, sources.funding, rates.ts_ms, start, end_ms, span, 1, "funding times")


def _check(
    symbol: str,
    sources: Mapping[str, str],
    ts_ms: Sequence[int],
    start_ms: int,
    end_ms: int | None,
    span: str,
    needed: int,
    what: str = "candles",
) -> None:
    inside = (len(ts_ms) if end_ms is None else bisect_left(ts_ms, end_ms)) - bisect_left(
        ts_ms, start_ms
    )
    if inside >= needed:
        return
    where = f"{symbol} in {sources[symbol]}" if symbol in sources else symbol
    noun = "rates" if what == "funding times" else "candles"
    covers = (
        f"its {noun} cover {fmt_ts(ts_ms[0])} to {fmt_ts(ts_ms[-1])}"
        if len(ts_ms)
        else f"it has no {noun} at all"
    )
    if inside == 0:
        raise DataError(f"{where} has no {what} {span}; {covers}")
    candles = f"{inside} candle{'' if inside == 1 else 's'}"
    raise DataError(
        f"{where} has {candles} {span}; a backtest needs at least {needed} (an order fills at "
        f"the next candle's open); {covers}"
    )
