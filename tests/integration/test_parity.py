"""Backtest and the demo/run path produce the same orders and fills on the same candles."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from bot.app import TradingProcess
from bot.backtest import run_backtest
from bot.modes import build_demo, demo_market
from bot.runner import run_process
from core.config import Settings, load_settings
from core.domain.orders import Fill


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings(
        app={"data_dir": str(tmp_path / "ud")},
        demo={
            "candles_per_second": 10_000.0,
            "history_candles": 300,
            "replay_candles": 600,
            "seed": 11,
        },
    )


def _key(fill: Fill) -> tuple[str, str, Decimal, Decimal, Decimal]:
    # The fill's timestamp is left out: the demo's clock is real (accelerated) time.
    return (fill.client_order_id, fill.side.value, fill.amount, fill.price, fill.fee)


async def test_demo_and_backtest_make_the_same_orders_and_fills(settings: Settings) -> None:
    built: list[TradingProcess] = []

    async def build() -> TradingProcess:
        built.append(await build_demo(settings))
        return built[0]

    assert await run_process(build, console=Console(record=True)) == "feed ended"
    demo_storage = built[0].storage
    await demo_storage.start()
    try:
        demo_orders = await demo_storage.orders.list_all()
        demo_fills = await demo_storage.fills.list_fills()
    finally:
        await demo_storage.stop()

    markets, replay_start_ms = demo_market(settings)
    for fast in (True, False):
        result = await run_backtest(settings, markets, start_ms=replay_start_ms, fast=fast)
        assert len(demo_fills) >= 10, "the scenario must trade to prove anything"
        # Same fills; listed in fill-time order, which the demo's real clock can shuffle a little.
        assert sorted(map(_key, result.fills)) == sorted(map(_key, demo_fills))
        # every order the demo sent, the backtest sent too (same deterministic client ids)
        backtest_ids = {f.client_order_id for f in result.fills}
        filled_demo_ids = {o.client_order_id for o in demo_orders if o.filled > 0}
        assert backtest_ids == filled_demo_ids
