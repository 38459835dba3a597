"""MarketRules: the grid and minimums of one symbol on a venue (issue 8, item 8)."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import pytest

from core.domain.market_rules import MarketRules

D = Decimal


def btc_perp() -> MarketRules:
    return MarketRules(
        symbol="BTC/USDT",
        amount_step=D("0.001"),
        price_tick=D("0.1"),
        min_amount=D("0.001"),
        min_notional=D(5),
        max_leverage=125,
    )


def test_amounts_floor_to_the_step_and_prices_round_to_the_tick() -> None:
    rules = btc_perp()
    assert rules.floor_amount(D("0.01544")) == D("0.015")  # what the venue would keep of it
    assert rules.floor_amount(D("0.015")) == D("0.015")
    assert rules.round_price(D("99004.14")) == D("99004.1")
    assert rules.round_price(D("99004.16")) == D("99004.2")
    assert rules.round_price(D("99004.11"), ROUND_CEILING) == D("99004.2")


def test_minimums() -> None:
    rules = btc_perp()
    assert rules.meets_minimums(D("0.001"), D(5000))
    assert not rules.meets_minimums(D("0.0009"), D(100_000))  # below the minimum amount
    assert not rules.meets_minimums(D("0.001"), D(4000))  # 4 USDT, below the 5 notional
    unbounded = MarketRules(symbol="X/USDT", amount_step=D(1), price_tick=D("0.0001"))
    assert unbounded.meets_minimums(D(1), D("0.0001"))
    assert unbounded.max_leverage is None


@pytest.mark.parametrize(
    "changes",
    [
        {"amount_step": D(0)},
        {"price_tick": D("-0.1")},
        {"min_amount": D(-1)},
        {"min_notional": D(-1)},
        {"max_leverage": 0},
    ],
)
def test_impossible_rules_are_refused(changes: dict[str, object]) -> None:
    fields = {
        "symbol": "BTC/USDT",
        "amount_step": D("0.001"),
        "price_tick": D("0.1"),
        **changes,
    }
    with pytest.raises(ValueError, match="was"):
        MarketRules(**fields)  # type: ignore[arg-type]
