"""equity_curve: each fill counts from the close of the candle it happened in."""

from __future__ import annotations

from decimal import Decimal

from core.analytics.equity import equity_curve
from core.domain.enums import Liquidity, MarketType, Side
from core.domain.orders import Fill
from core.market.synthetic import generate_candles
from tests.unit.analytics.builders import DAY_MS, T0_MS

WEEK_MS = 7 * DAY_MS


def test_a_fill_inside_a_monday_week_counts_at_that_week_close() -> None:
    weeks = generate_candles("BTC/USDT", "1w", 4, seed=1, start_ms=T0_MS)  # T0 is a Monday
    friday = T0_MS + WEEK_MS + 4 * DAY_MS  # inside the second week
    buy = Fill(
        fill_id="f1",
        client_order_id="c1",
        exchange_order_id="e1",
        symbol="BTC/USDT",
        side=Side.BUY,
        amount=Decimal(1),
        price=Decimal(100),
        fee=Decimal(1),
        liquidity=Liquidity.TAKER,
        ts_ms=friday,
        market_type=MarketType.SPOT,
    )
    ts, equity = equity_curve(
        [buy], {"BTC/USDT": weeks}, starting_balance=Decimal(1000), market_type=MarketType.SPOT
    )
    assert ts.tolist() == [T0_MS + k * WEEK_MS for k in range(5)]
    second_close = float(weeks.close[1])
    assert equity.tolist()[:3] == [1000.0, 1000.0, 1000.0 - 100 - 1 + second_close]
