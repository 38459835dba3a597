"""Ten symbols priced from 0.0001 to 100,000 in one backtest: each trades by its own rules."""

from __future__ import annotations

import os
from decimal import Decimal as D

import pytest

from bot.backtest import run_backtest
from bot.market_rules import resolved
from core.config import load_settings
from core.domain.enums import OrderStatus
from core.domain.market_rules import RulesSource
from core.market.synthetic import generate_candles, on_grid

T0 = 1_704_067_200_000
# (start price, the tick and step its venue would print it on)
COINS = {
    f"C{i}/USDT": (price, tick, step)
    for i, (price, tick, step) in enumerate(
        [
            (0.0001, 1e-8, 1000.0),
            (0.001, 1e-7, 100.0),
            (0.01, 1e-6, 10.0),
            (0.1, 1e-5, 1.0),
            (1.0, 1e-4, 0.1),
            (10.0, 1e-3, 0.01),
            (100.0, 1e-2, 0.001),
            (1_000.0, 1e-2, 1e-4),
            (10_000.0, 1e-1, 1e-5),
            (100_000.0, 1e-1, 1e-6),
        ]
    )
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)


async def test_every_symbol_trades_and_every_order_sits_on_its_own_tick_and_step() -> None:
    series = {
        s: on_grid(
            generate_candles(s, "1h", 2500, seed=5, start_ms=T0, start_price=p), tick=t, step=v
        )
        for s, (p, t, v) in COINS.items()
    }
    # The brains off: this is about each symbol's tick and step (default rules: 0.01).
    settings = load_settings(None, trading={"symbols": list(series)}, brains={"enabled": False})
    rules = resolved(settings, series, series=series)
    for symbol, (_p, tick, _step) in COINS.items():
        assert rules[symbol].source is RulesSource.INFERRED
        assert rules[symbol].rules.price_tick == D(repr(tick)).normalize()

    result = await run_backtest(settings, series, rules=rules)

    assert result.symbol_failures == ()
    traded = {t.symbol for t in result.trades}
    assert traded == set(COINS), f"no closed trade on {set(COINS) - traded}"
    assert result.orders, "the backtest reports its orders"
    for order in result.orders:
        r = rules[order.request.symbol].rules
        req = order.request
        assert order.status is not OrderStatus.REJECTED, order
        assert req.amount % r.amount_step == 0, order
        for level in (req.price, req.stop_price):
            assert level is None or level % r.price_tick == 0, order
    for fill in result.fills:
        assert fill.amount % rules[fill.symbol].rules.amount_step == 0


async def test_a_position_whose_candles_end_before_the_run_is_named_as_stranded() -> None:
    import numpy as np

    from core.domain.market import CandleSeries
    from tests.unit.services.engine_harness import ScriptedProvider

    def flat(symbol: str, n: int) -> CandleSeries:
        ts = T0 + np.arange(n, dtype=np.int64) * 3_600_000
        p = np.full(n, 100.0)
        return CandleSeries.from_columns(symbol, "1h", ts, p, p, p, p, np.ones(n))

    series = {"A/USDT": flat("A/USDT", 200), "B/USDT": flat("B/USDT", 100)}
    # Both enter on the first candle: no history to correlate, which the limit would deny.
    settings = load_settings(None, trading={"symbols": list(series)}, risk={"max_correlation": 1})
    result = await run_backtest(settings, series, provider=ScriptedProvider(entries={T0: 1}))
    assert result.open_positions == 2
    assert result.stranded == (("B/USDT", T0 + 99 * 3_600_000),)  # A's last candle is the run's
