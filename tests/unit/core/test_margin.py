"""The margin model: maintenance by tier and the liquidation price, checked by hand."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from core.domain.enums import PositionSide
from core.domain.margin import (
    MarginConfig,
    MarginMode,
    MarginTier,
    beyond,
    liquidation_price,
    maintenance_margin,
)

LONG, SHORT = PositionSide.LONG, PositionSide.SHORT
CFG = MarginConfig()


def test_maintenance_amounts_keep_the_margin_continuous_across_tiers() -> None:
    # 0.4 % up to 50k, 0.5 % above: the amount 50k * (0.005 - 0.004) = 50
    assert [b.amount for b in CFG.brackets[:3]] == [D(0), D(50), D(2550)]
    assert maintenance_margin(D(50_000), CFG) == D(200)  # 50k * 0.5 % - 50, = 50k * 0.4 %
    assert maintenance_margin(D(49_999), CFG) == D("199.996")
    assert maintenance_margin(D(100_000), CFG) == D(450)


def test_a_5x_long_is_liquidated_where_its_margin_meets_maintenance() -> None:
    # 50 units at 100.02, margin 1000.2: (100.02 * 50 - 1000.2) / (50 * (1 - 0.004))
    price = liquidation_price(LONG, D(50), D("100.02"), D("1000.2"), CFG)
    assert price == D("4000.8") / D("49.8")
    assert price is not None
    loss = (D("100.02") - price) * 50
    assert D("1000.2") - loss == pytest.approx(price * 50 * D("0.004"))  # at maintenance


def test_a_5x_short_is_liquidated_above() -> None:
    # (1000.2 + 100.02 * 50) / (50 * 1.004)
    assert liquidation_price(SHORT, D(50), D("100.02"), D("1000.2"), CFG) == D("6001.2") / D("50.2")


def test_a_fully_backed_long_cannot_be_liquidated() -> None:
    assert liquidation_price(LONG, D(50), D(100), D(5000), CFG) is None


def test_a_big_position_uses_the_tier_its_liquidation_notional_falls_in() -> None:
    # 1_000 units at 100 (100k notional) on 2x: tier 2 (0.5 %, amount 50) at the answer
    price = liquidation_price(LONG, D(1000), D(100), D(50_000), CFG)
    assert price == (D(100_000) - D(50_000) - D(50)) / (D(1000) * D("0.995"))
    assert price is not None and price * 1000 >= 50_000


def test_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="start at a floor of 0"):
        MarginConfig(tiers=(MarginTier(floor=D(10), rate=D("0.01")),))
    with pytest.raises(ValueError, match="must rise"):
        MarginConfig(
            tiers=(MarginTier(floor=D(0), rate=D("0.01")), MarginTier(floor=D(0), rate=D("0.02")))
        )
    with pytest.raises(ValueError, match="0 < rate < 1"):
        MarginTier(floor=D(0), rate=D(0))
    assert MarginConfig(mode=MarginMode.CROSS).mode is MarginMode.CROSS


def test_beyond_is_the_losing_side() -> None:
    assert beyond(LONG, D(80), D(80)) and not beyond(LONG, D("80.01"), D(80))
    assert beyond(SHORT, D(120), D(120)) and not beyond(SHORT, D("119.99"), D(120))
