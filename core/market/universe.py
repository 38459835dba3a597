"""Which symbols to trade: the top N by quote volume after filters (Freqtrade's VolumePairList).

A pure function of the candidates and the rules: no I/O, no clock. The live refresh builds the
candidates from the venue's tickers and markets, a backtest from the candles closed before each
refresh time (``core.market.universe_history``); both then rank here, so a backtest selects by
the same rules the process does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class UniverseRules:
    """The filters and the size of a dynamic universe (``QT__UNIVERSE__*``)."""

    top_n: int
    quote: str
    min_price: float = 0.0
    min_quote_volume: float = 0.0
    blacklist: tuple[str, ...] = ()  # glob patterns on the symbol: "*DOWN/*", "USDC/USDT"
    min_listing_days: float = 0.0

    def __post_init__(self) -> None:
        if self.top_n < 1:
            raise ValueError(f"top_n must be at least 1, was {self.top_n}")
        if not self.quote:
            raise ValueError("quote must name a currency")


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One symbol as the venue (or the candles) show it at a refresh time."""

    symbol: str
    quote: str
    quote_volume: float  # traded in the last 24 h, in the quote currency
    last_price: float
    listed_ms: int | None  # when trading began; None: unknown (too young to tell it apart)
    active: bool = True


def is_blacklisted(symbol: str, patterns: Iterable[str]) -> bool:
    """Return True if ``symbol`` matches one of the glob ``patterns`` (case-sensitive, as
    symbols are)."""
    return any(fnmatchcase(symbol, pattern) for pattern in patterns)


def eligible(candidate: Candidate, rules: UniverseRules, now_ms: int) -> bool:
    """Return whether ``candidate`` passes every filter at ``now_ms``."""
    c = candidate
    if not c.active or c.quote != rules.quote or is_blacklisted(c.symbol, rules.blacklist):
        return False
    # A NaN volume or price compares False everywhere: never selected.
    if not (c.last_price > 0 and c.last_price >= rules.min_price):
        return False
    if not (c.quote_volume > 0 and c.quote_volume >= rules.min_quote_volume):
        return False
    if rules.min_listing_days > 0:
        if c.listed_ms is None:
            return False  # its age cannot be told: it cannot be shown old enough
        if now_ms - c.listed_ms < rules.min_listing_days * DAY_MS:
            return False
    return True


def select_universe(
    candidates: Iterable[Candidate], rules: UniverseRules, now_ms: int
) -> tuple[str, ...]:
    """Return the symbols of the universe at ``now_ms``, best first: the ``top_n`` eligible
    candidates by quote volume, ties broken by symbol (the same input always ranks the same).
    A symbol given twice counts once, with its largest eligible volume."""
    ranked = sorted(candidates, key=lambda c: (-_rank_volume(c), c.symbol))
    return select_ranked(ranked, rules, now_ms)


def select_ranked(
    ranked: Iterable[Candidate], rules: UniverseRules, now_ms: int
) -> tuple[str, ...]:
    """Return the first ``top_n`` eligible symbols of candidates already ranked (by quote
    volume, then symbol), looking no further than needed: a backtest ranks every refresh at
    once and checks only the best few."""
    picked: list[str] = []
    for c in ranked:
        if len(picked) == rules.top_n:
            break
        if c.symbol not in picked and eligible(c, rules, now_ms):
            picked.append(c.symbol)
    return tuple(picked)


def _rank_volume(c: Candidate) -> float:
    """Return the volume to rank by: NaN (never eligible) ranks last."""
    return c.quote_volume if c.quote_volume == c.quote_volume else float("-inf")
