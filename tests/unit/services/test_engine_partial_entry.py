"""An entry that fills in part and then ends (canceled) still gets its exits planned."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.trading import build_engine
from core.clock import SimClock
from core.domain.enums import MarketType, OrderType, PositionSide
from core.domain.events import OrderFilled
from core.domain.market import Candle
from core.domain.portfolio import Position
from core.services.bus import EventBus
from core.services.execution import client_order_id
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.fakes import FakeExchange
from tests.unit.services.engine_harness import (
    SYMBOL,
    T0_MS,
    ScriptedProvider,
    at,
    clean_settings,
)


def _candle(i: int, close: float) -> Candle:
    return Candle(ts_ms=at(i), open=close, high=close + 0.5, low=close - 0.5, close=close, volume=1)


def _filled(fill_ts: int, cid: str, amount: D, price: D) -> OrderFilled:
    return OrderFilled(
        ts_ms=fill_ts,
        fill_ts_ms=fill_ts,
        client_order_id=cid,
        symbol=SYMBOL,
        side="buy",
        amount=amount,
        price=price,
        fee=D(0),
        liquidity="taker",
    )


async def test_partially_filled_then_canceled_entry_is_protected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)
    clock = SimClock(T0_MS)
    fake = FakeExchange(balances={"USDT": D(10_000)}, clock=clock)
    storage = MemoryStorage()
    bus = EventBus(sink=storage.events.append)
    engine = build_engine(
        settings,
        clock=clock,
        bus=bus,
        exchange=fake,
        trading_state=TradingStateService(storage.state, bus, clock),
        provider=ScriptedProvider(entries={at(0): 1}),
    )
    await engine.on_candle(SYMBOL, _candle(0, 100.0))
    entry = client_order_id(SYMBOL, at(0), "e")
    assert fake.orders[entry].request.amount == D(50)

    # 20 of 50 fill, then the venue cancels the rest (e.g. an IOC remainder).
    fake.script_fill(entry, D(100), amount=D(20))
    await bus.publish(_filled(at(1), entry, D(20), D(100)))
    assert engine.trades[SYMBOL].plan is None  # still working: no exits yet
    await fake.cancel_order(entry, SYMBOL)
    fake.positions = [
        Position(
            symbol=SYMBOL,
            market_type=MarketType.SPOT,
            side=PositionSide.LONG,
            amount=D(20),
            entry_price=D(100),
            opened_ms=at(1),
            updated_ms=at(1),
        )
    ]

    await engine.on_candle(SYMBOL, _candle(1, 100.0))

    plan = engine.trades[SYMBOL].plan
    assert plan is not None and plan.amount == D(20)
    exits = [c.args[0] for c in fake.calls_to("create_order")][1:]
    assert [(r.type, r.amount, r.reduce_only) for r in exits] == [
        (OrderType.STOP_MARKET, D(20), True),
        (OrderType.LIMIT, D(6), True),
        (OrderType.LIMIT, D(6), True),
        (OrderType.LIMIT, D(8), True),
    ]
