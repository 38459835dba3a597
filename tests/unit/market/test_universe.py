"""The universe selection: filters, ranking by quote volume, ties by symbol, blacklist globs."""

from __future__ import annotations

import math

import pytest

from core.market.universe import (
    DAY_MS,
    Candidate,
    UniverseRules,
    is_blacklisted,
    select_universe,
)

NOW = 1_735_689_600_000  # 2025-01-01


def cand(
    symbol: str,
    volume: float,
    *,
    price: float = 1.0,
    listed_days_ago: float | None = 400,
    active: bool = True,
) -> Candidate:
    listed = None if listed_days_ago is None else NOW - int(listed_days_ago * DAY_MS)
    return Candidate(
        symbol=symbol,
        quote=symbol.split("/")[1].split(":")[0],
        quote_volume=volume,
        last_price=price,
        listed_ms=listed,
        active=active,
    )


def rules(**kw: object) -> UniverseRules:
    base: dict[str, object] = {"top_n": 3, "quote": "USDT"}
    return UniverseRules(**{**base, **kw})  # type: ignore[arg-type]


def test_top_n_by_quote_volume_best_first() -> None:
    cs = [cand("A/USDT", 10), cand("B/USDT", 30), cand("C/USDT", 20), cand("D/USDT", 5)]
    assert select_universe(cs, rules(), NOW) == ("B/USDT", "C/USDT", "A/USDT")


def test_ties_are_broken_by_symbol_whatever_the_input_order() -> None:
    cs = [cand("ZED/USDT", 10), cand("ABC/USDT", 10), cand("MID/USDT", 10), cand("TOP/USDT", 99)]
    picked = select_universe(cs, rules(), NOW)
    assert picked == ("TOP/USDT", "ABC/USDT", "MID/USDT")
    assert select_universe(list(reversed(cs)), rules(), NOW) == picked


def test_quote_filter_keeps_only_the_accounts_currency() -> None:
    cs = [cand("BTC/USDT", 1), cand("ETH/BTC", 100), cand("SOL/USDC", 100)]
    assert select_universe(cs, rules(), NOW) == ("BTC/USDT",)


def test_min_price_and_min_quote_volume() -> None:
    cs = [
        cand("CHEAP/USDT", 1_000, price=0.0009),
        cand("THIN/USDT", 99, price=5),
        cand("OK/USDT", 100, price=0.001),
    ]
    assert select_universe(cs, rules(min_price=0.001, min_quote_volume=100), NOW) == ("OK/USDT",)


def test_zero_nan_or_negative_figures_are_never_selected() -> None:
    cs = [
        cand("NOVOL/USDT", 0),
        cand("NANVOL/USDT", math.nan),
        cand("NANPX/USDT", 10, price=math.nan),
        cand("ZEROPX/USDT", 10, price=0),
        cand("OK/USDT", 1),
    ]
    assert select_universe(cs, rules(), NOW) == ("OK/USDT",)


def test_inactive_markets_are_left_out() -> None:
    cs = [cand("OFF/USDT", 100, active=False), cand("ON/USDT", 1)]
    assert select_universe(cs, rules(), NOW) == ("ON/USDT",)


def test_min_listing_days_and_unknown_listing() -> None:
    cs = [
        cand("NEW/USDT", 100, listed_days_ago=29.9),
        cand("OLD/USDT", 10, listed_days_ago=30),
        cand("UNKNOWN/USDT", 50, listed_days_ago=None),
    ]
    assert select_universe(cs, rules(min_listing_days=30), NOW) == ("OLD/USDT",)
    # Without an age filter the listing time does not matter.
    assert select_universe(cs, rules(), NOW) == ("NEW/USDT", "UNKNOWN/USDT", "OLD/USDT")


@pytest.mark.parametrize(
    ("symbol", "pattern", "hit"),
    [
        ("BTCDOWN/USDT", "*DOWN/*", True),
        ("BTC/USDT", "*DOWN/*", False),
        ("USDC/USDT", "USDC/*", True),
        ("LUNA/USDT", "LUNA/USDT", True),
        ("LUNA2/USDT", "LUNA/USDT", False),
        ("BNB/USDT", "BN?/USDT", True),
        ("bnb/USDT", "BNB/*", False),  # symbols are case-sensitive
    ],
)
def test_blacklist_glob_patterns(symbol: str, pattern: str, hit: bool) -> None:
    assert is_blacklisted(symbol, [pattern]) is hit


def test_blacklisted_symbols_are_skipped_and_the_next_ones_move_up() -> None:
    cs = [cand("USDC/USDT", 1_000), cand("BTCUP/USDT", 900), cand("A/USDT", 3), cand("B/USDT", 2)]
    assert select_universe(cs, rules(top_n=2, blacklist=("USDC/*", "*UP/*")), NOW) == (
        "A/USDT",
        "B/USDT",
    )


def test_a_symbol_given_twice_counts_once_with_its_largest_volume() -> None:
    cs = [cand("A/USDT", 1), cand("B/USDT", 5), cand("A/USDT", 9)]
    assert select_universe(cs, rules(), NOW) == ("A/USDT", "B/USDT")


def test_fewer_eligible_than_top_n_gives_what_there_is_and_none_gives_empty() -> None:
    assert select_universe([cand("A/USDT", 1)], rules(top_n=10), NOW) == ("A/USDT",)
    assert select_universe([], rules(), NOW) == ()


def test_rules_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="top_n"):
        UniverseRules(top_n=0, quote="USDT")
    with pytest.raises(ValueError, match="quote"):
        UniverseRules(top_n=1, quote="")
