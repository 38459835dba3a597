"""One-line summaries of a backtest's regime changes and the meta-strategy's picks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from core.domain.events import RegimeChanged, StrategySelected


def regimes_line(changes: Sequence[RegimeChanged]) -> str:
    """Return how often the regimes changed, and into which."""
    if not changes:
        return "regimes: none known (the candles end before the detector's warm-up)"
    symbols = len({c.symbol for c in changes})
    into = Counter(c.current for c in changes)
    listed = ", ".join(f"{name} {n}x" for name, n in sorted(into.items()))
    return f"regimes: {len(changes)} change(s) over {symbols} symbol(s), into {listed}"


def selections_line(selections: Sequence[StrategySelected]) -> str:
    """Return how often the meta-strategy's pick changed, and to what (fallbacks apart)."""
    picks = Counter(
        f"{s.provider} (fallback)" if s.score is None else s.provider for s in selections
    )
    listed = ", ".join(f"{name} {n}x" for name, n in sorted(picks.items()))
    return f"meta-strategy: the pick changed {len(selections)} time(s), to {listed}"
