"""``qt run`` (paper, its book in the database) with ``QT__TRADING__UNKNOWN_POSITIONS=adopt``:
a position the engine has no trade for is adopted at start with a stop at the venue, trading
stays ACTIVE, and the next start finds it the engine's own (issue 17)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.modes import build_run
from core.domain.enums import OrderType, TradingState
from core.domain.events import AlertRaised, Event
from core.exchange.ccxt import CcxtMarketData, make_ccxt_exchange
from core.ports import StateKey
from core.services.adoption import ADOPT_PROVIDER
from storage import open_storage
from tests.fakes_http import FakeBinance, point_ccxt_at, set_minimal_markets
from tests.integration.test_attack_17b import paper_settings
from tests.integration.test_run_mode import market_data  # noqa: F401  (the fixture)
from tests.unit.services.test_risk_limits import BTC_LONG

SYMBOL = "BTC/USDT"


def candles_of(fake: FakeBinance) -> CcxtMarketData:
    """Return market data from the fake venue (a stopped process closes its own)."""
    exchange = make_ccxt_exchange("binance", timeout_s=5)
    exchange.enableRateLimit = False
    point_ccxt_at(exchange, fake.base_url)
    set_minimal_markets(exchange)
    return CcxtMarketData(exchange)


async def test_a_paper_run_adopts_a_position_it_finds_and_owns_it_after_a_restart(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    market_data: tuple[CcxtMarketData, FakeBinance, int],  # noqa: F811
) -> None:
    paper = paper_settings(tmp_path, monkeypatch)
    trading = paper.trading.model_copy(update={"unknown_positions": "adopt"})
    settings = paper.model_copy(update={"trading": trading})
    assert settings.trading.unknown_positions == "adopt"
    _md, fake, last_open = market_data
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        await storage.state.set(StateKey.PAPER_INITIALISED, "1")
        await storage.positions.upsert(
            dataclasses.replace(
                BTC_LONG,
                amount=D("0.05"),
                entry_price=D(40_000),
                opened_ms=last_open,
                updated_ms=last_open,
            )
        )
    finally:
        await storage.stop()
    heard: list[Event] = []

    async def record(event: Event) -> None:
        heard.append(event)

    stop_ids: list[list[str]] = []
    for _start in range(2):  # the start that adopts, then a restart on the same database
        process = await build_run(settings, market_data=candles_of(fake))
        process.bus.subscribe("alert.raised", record)
        await process.start()
        try:
            assert await process.trading_state.current() is TradingState.ACTIVE
            trade = process.engine.trades[SYMBOL]
            assert trade.provider == ADOPT_PROVIDER and trade.amount == D("0.05")
            assert trade.entry_price == D(40_000)
            orders = await process.exchange.fetch_open_orders(SYMBOL)
            stops = [o for o in orders if o.request.type is OrderType.STOP_MARKET]
            assert [o.request.reduce_only for o in stops] == [True]
            assert trade.plan is not None and trade.plan.stop is not None
            assert stops[0].request.stop_price == trade.plan.stop.price
            stop_ids.append(sorted(o.client_order_id for o in orders))
        finally:
            await process.stop("test")
    assert stop_ids[0] == stop_ids[1]  # the same orders: nothing placed twice
    [alert] = [e for e in heard if isinstance(e, AlertRaised)]  # the first start's only
    assert alert.title == "positions adopted" and "BTC/USDT long 0.05" in alert.detail
