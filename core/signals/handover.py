"""A signal provider that serves one provider's signals until another is ready, then that one's.

The engine's ``SignalBook`` holds one provider for the life of the process; the demo starts
trading on the baseline while its ensemble trains in a worker process, then hands over. The
book caches frames: after ``hand_over`` call ``SignalBook.invalidate`` so the next look-up is
computed by the new provider (the next candle would recompute anyway; this makes it exact).
"""

from __future__ import annotations

from collections.abc import Mapping

from core.domain.explanations import EntryExplanation
from core.domain.market import CandleSeries
from core.signals.base import SignalFrame, SignalProvider


def explain(
    provider: SignalProvider, symbol: str, ts_ms: int, regime: str | None = None
) -> EntryExplanation | None:
    """Return ``provider``'s explanation of an entry, None when it gives none (the baseline);
    ``regime``: the label the process knows for that candle (None: the provider finds it)."""
    method = getattr(provider, "explain", None)
    return None if method is None else method(symbol, ts_ms, regime)


def excluded_members(provider: SignalProvider, symbol: str) -> Mapping[str, str]:
    """Return the members ``provider`` left out of its newest compute of ``symbol``, and why
    (the ensemble's; none for a provider without members)."""
    method = getattr(provider, "excluded", None)
    return {} if method is None else method(symbol)


class HandOverProvider:
    """Serve ``first`` until ``hand_over`` names its successor (see module docstring)."""

    def __init__(self, first: SignalProvider, *, warmup_candles: int | None = None) -> None:
        self.current = first
        self.name = first.name  # the serving provider's
        # The book checks its history bound against this once: give the larger of both.
        self.warmup_candles = first.warmup_candles if warmup_candles is None else warmup_candles

    def hand_over(self, successor: SignalProvider) -> None:
        """Serve ``successor``'s signals from the next compute on."""
        self.current = successor
        self.name = successor.name

    def compute(self, series: CandleSeries) -> SignalFrame:
        """Return the serving provider's signals."""
        return self.current.compute(series)

    def explain(
        self, symbol: str, ts_ms: int, regime: str | None = None
    ) -> EntryExplanation | None:
        """Return the serving provider's explanation, if it gives any."""
        return explain(self.current, symbol, ts_ms, regime)

    def excluded(self, symbol: str) -> Mapping[str, str]:
        """Return the members the serving provider left out, and why."""
        return excluded_members(self.current, symbol)
