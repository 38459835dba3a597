"""Which rules a symbol trades by: venue > settings override > stored > inferred > default."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np

from core.domain.market import CandleSeries
from core.domain.market_rules import MarketRules, RulesSource, StoredRules
from core.market.rules_book import RulesBook, resolve_rules

DEFAULT = MarketRules(symbol="*", amount_step=D("0.00001"), price_tick=D("0.01"), min_notional=D(5))
T0 = 1_704_067_200_000


def rules(symbol: str, tick: str, step: str = "1") -> MarketRules:
    return MarketRules(
        symbol=symbol,
        amount_step=D(step),
        price_tick=D(tick),
        min_amount=D(step),
        min_notional=D(1),
    )


def candles(symbol: str, price: float) -> CandleSeries:
    p = np.array([price, price + 0.0001, price - 0.0001])
    ts = T0 + np.arange(3, dtype=np.int64) * 3_600_000
    return CandleSeries.from_columns(symbol, "1h", ts, p, p, p, p, np.array([10.0, 20.0, 30.0]))


STORED = {
    "XRP/USDT": StoredRules(
        exchange="binance", market="spot", rules=rules("XRP/USDT", "0.0001"), fetched_ms=T0
    )
}


def test_each_source_is_used_only_where_the_more_trusted_ones_say_nothing() -> None:
    got = resolve_rules(
        ["XRP/USDT", "ADA/USDT", "BTC/USDT"],
        default=DEFAULT,
        overrides={},
        stored=STORED,
        series={"XRP/USDT": candles("XRP/USDT", 0.62), "ADA/USDT": candles("ADA/USDT", 0.45)},
    )
    assert got["XRP/USDT"].source is RulesSource.STORED  # stored beats the candles
    assert got["XRP/USDT"].rules == STORED["XRP/USDT"].rules
    assert "binance, 2024-01-01 00:00 UTC" == got["XRP/USDT"].note
    assert got["ADA/USDT"].source is RulesSource.INFERRED
    assert got["ADA/USDT"].rules.price_tick == D("0.0001")
    assert got["ADA/USDT"].note == "from 3 candles"
    assert got["BTC/USDT"].source is RulesSource.DEFAULT
    assert got["BTC/USDT"].rules.symbol == "BTC/USDT"
    assert got["BTC/USDT"].rules.price_tick == DEFAULT.price_tick


def test_an_override_replaces_only_the_fields_it_sets_and_says_where_the_rest_came_from() -> None:
    got = resolve_rules(
        ["XRP/USDT", "DOGE/USDT"],
        default=DEFAULT,
        overrides={
            "XRP/USDT": {"price_tick": D("0.001")},
            "DOGE/USDT": {
                "price_tick": D("0.00001"),
                "amount_step": D(1),
                "min_amount": D(1),
                "min_notional": D(1),
            },
        },
        stored=STORED,
    )
    xrp = got["XRP/USDT"]
    assert xrp.source is RulesSource.SETTINGS
    assert xrp.rules.price_tick == D("0.001")
    assert xrp.rules.amount_step == STORED["XRP/USDT"].rules.amount_step  # kept from stored
    assert xrp.note == "amount_step, min_amount, min_notional: stored"
    doge = got["DOGE/USDT"]
    assert (doge.rules.price_tick, doge.rules.amount_step, doge.note) == (D("0.00001"), D(1), "")


def test_the_venues_rules_replace_everything_else_and_a_missing_symbol_gets_the_default() -> None:
    book = RulesBook(DEFAULT)
    book.use(
        resolve_rules(
            ["XRP/USDT"], default=DEFAULT, overrides={"XRP/USDT": {"price_tick": D("0.001")}}
        )
    )
    assert book.rules("XRP/USDT").price_tick == D("0.001")
    book.use_venue({"XRP/USDT": rules("XRP/USDT", "0.0001")}, note="binance, now")
    held = book.in_force("XRP/USDT")
    assert (held.source, held.rules.price_tick, held.note) == (
        RulesSource.VENUE,
        D("0.0001"),
        "binance, now",
    )
    assert book.rules("SOL/USDT") is DEFAULT
    assert book.in_force("SOL/USDT").source is RulesSource.DEFAULT
    assert book.in_force("SOL/USDT").rules.symbol == "SOL/USDT"
