"""Each symbol's market rules in force, and where they came from (README: Market rules).

One book per process: the engine sizes and rounds orders by it and the paper venue refuses
what it refuses, so the two can never disagree about a symbol's tick, step or minimums.

Precedence, most trusted first: the venue's markets as fetched by this process, an operator's
override in settings (fields it leaves out keep the rules below it), the venue's rules stored
by an earlier fetch, rules inferred from the candles, and the settings' global values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from core.domain.market import CandleSeries
from core.domain.market_rules import MarketRules, RulesInForce, RulesSource, StoredRules
from core.market.rules_inference import RECENT_CANDLES, infer_rules

OVERRIDABLE = ("price_tick", "amount_step", "min_amount", "min_notional")


class RulesBook:
    """The rules orders of each symbol are sized, rounded and checked by."""

    def __init__(self, default: MarketRules) -> None:
        self.default = default  # for a symbol the book holds nothing of
        self._by_symbol: dict[str, RulesInForce] = {}

    def rules(self, symbol: str) -> MarketRules:
        """Return the rules of ``symbol`` (the default's for one the book does not hold)."""
        held = self._by_symbol.get(symbol)
        return self.default if held is None else held.rules

    def in_force(self, symbol: str) -> RulesInForce:
        """Return the rules of ``symbol`` and where they came from."""
        held = self._by_symbol.get(symbol)
        if held is None:
            return RulesInForce(
                rules=replace(self.default, symbol=symbol), source=RulesSource.DEFAULT
            )
        return held

    def use(self, rules: Mapping[str, RulesInForce]) -> None:
        """Hold these symbols' rules from now on (the others keep theirs)."""
        self._by_symbol.update(rules)

    def use_venue(self, rules: Mapping[str, MarketRules], note: str = "") -> None:
        """Hold the venue's own rules of these symbols, as just fetched."""
        self.use(
            {
                s: RulesInForce(rules=r, source=RulesSource.VENUE, note=note)
                for s, r in rules.items()
            }
        )


def resolve_rules(
    symbols: Iterable[str],
    *,
    default: MarketRules,
    overrides: Mapping[str, Mapping[str, Decimal]],
    stored: Mapping[str, StoredRules] | None = None,
    series: Mapping[str, CandleSeries] | None = None,
) -> dict[str, RulesInForce]:
    """Return the rules in force of each symbol by the module's precedence (venue rules of this
    process come later, through ``RulesBook.use_venue``).

    ``overrides``: per symbol, the fields an operator set (``amount_step``, ``price_tick``,
    ``min_amount``, ``min_notional``); ``stored``: the venue's rules fetched earlier, by
    symbol; ``series``: candles to infer the rules of a symbol nothing else is known of. A
    symbol with none of these gets the default.
    """
    stored, series = stored or {}, series or {}
    out: dict[str, RulesInForce] = {}
    for symbol in symbols:
        base = _base(symbol, default, stored.get(symbol), series.get(symbol))
        override = overrides.get(symbol)
        out[symbol] = base if override is None else _overridden(base, override)
    return out


def fetched_note(exchange: str, fetched_ms: int) -> str:
    """Return how a note names a venue fetch: ``binance, 2024-01-01 00:00 UTC``."""
    when = datetime.fromtimestamp(fetched_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    return f"{exchange}, {when} UTC"


def _base(
    symbol: str, default: MarketRules, stored: StoredRules | None, series: CandleSeries | None
) -> RulesInForce:
    if stored is not None:
        return RulesInForce(
            rules=stored.rules,
            source=RulesSource.STORED,
            note=fetched_note(stored.exchange, stored.fetched_ms),
        )
    if series is not None and len(series):
        try:
            rules = infer_rules(series, min_notional=default.min_notional)
        except ValueError:
            pass  # no positive price: nothing to infer from
        else:
            return RulesInForce(
                rules=rules,
                source=RulesSource.INFERRED,
                note=f"from the last {min(len(series), RECENT_CANDLES)} candles",
            )
    return RulesInForce(rules=replace(default, symbol=symbol), source=RulesSource.DEFAULT)


def _overridden(base: RulesInForce, given: Mapping[str, Decimal]) -> RulesInForce:
    kept = [name for name in OVERRIDABLE if name not in given]
    r = base.rules
    rules = replace(
        r,
        price_tick=given.get("price_tick", r.price_tick),
        amount_step=given.get("amount_step", r.amount_step),
        min_amount=given.get("min_amount", r.min_amount),
        min_notional=given.get("min_notional", r.min_notional),
    )
    return RulesInForce(
        rules=rules,
        source=RulesSource.SETTINGS,
        note=f"{', '.join(kept)}: {base.source}" if kept else "",
        rest_from=base.source if kept else None,
    )
