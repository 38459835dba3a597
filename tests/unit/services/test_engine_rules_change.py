"""The venue changes a symbol's tick or step while a position is open: its exits still go out
on the new grid, and the position can still be closed whole (review of the market rules)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from core.domain.enums import OrderType
from core.domain.events import OrderRejected, OrderSubmitted, TradeClosed
from core.domain.market_rules import MarketRules
from core.market.rules_book import RulesBook
from tests.unit.services.engine_harness import SYMBOL, Harness, ScriptedProvider, at, clean_settings


def rules(tick: str, step: str) -> dict[str, MarketRules]:
    return {SYMBOL: MarketRules(symbol=SYMBOL, amount_step=D(step), price_tick=D(tick))}


async def test_a_step_and_tick_widened_mid_trade_leave_every_exit_accepted_and_on_grid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)
    book = RulesBook(settings.market.default_rules())
    book.use_venue(rules("0.01", "0.01"))
    h = await Harness(settings, ScriptedProvider(entries={at(0): 1}), book=book).start()
    await h.candle(0, 100, 100, 100, 100)  # entry decided
    await h.candle(1, 100, 100, 100, 100)  # filled at 100.02: 50 units, stop and ladder out
    assert h.engine.trades[SYMBOL].amount == D(50)

    book.use_venue(rules("0.1", "0.3"))  # the venue's refresh: 35 left after TP1 is off-step
    await h.candle(2, 100.5, 102.5, 100.5, 102)  # TP1 (15 units): the stop moves to break-even
    await h.candle(3, 101, 101, 99, 99.5)  # the stop: the whole remainder closed

    assert h.of(OrderRejected) == []
    [closed] = h.of(TradeClosed)
    assert closed.symbol == SYMBOL
    sent = [e for e in h.of(OrderSubmitted) if isinstance(e, OrderSubmitted)]
    moved = [e for e in sent if e.type == OrderType.STOP_MARKET][-1]
    assert moved.stop_price is not None and moved.stop_price % D("0.1") == 0
    assert await h.open_orders() == []
