"""Backtests of the mean-reversion baseline and the meta-strategy on synthetic candles: the
fast replay publishes the same regime changes and picks as the full one and trades alike, and
the report says which provider, regime and ladder each trade came from."""

from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from bot.app import TradingProcess
from bot.backtest import run_backtest
from bot.market_rules import resolved
from bot.modes import build_demo, demo_market
from bot.report import write_report
from bot.runner import run_process
from core.config import Settings, load_settings
from core.domain.events import event_payload
from core.market.synthetic import generate_candles

PAIRS = ("BTC/USDT", "ETH/USDT")
PROFILES = {"trend": {"tp_pcts": [2.5, 5, 8], "stop_pct": 2.5}, "range": {"stop_pct": 1.5}}


def settings_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, provider: str) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QT__STRATEGY__PROVIDER", provider)
    monkeypatch.setenv("QT__STRATEGY__META_MIN_RECORD", "3")
    monkeypatch.setenv("QT__REGIME__VOL_HISTORY", "200")  # regimes known after ~230 candles
    monkeypatch.setenv("QT__EXITS__PROFILES", json.dumps(PROFILES))
    return load_settings()


@pytest.mark.parametrize("provider", ["mean_reversion", "meta"])
async def test_fast_and_full_replay_trade_and_notice_alike(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, provider: str
) -> None:
    settings = settings_for(monkeypatch, tmp_path, provider)
    series = {s: generate_candles(s, "1h", 2000, seed=5) for s in PAIRS}
    fast = await run_backtest(settings, series, fast=True)
    full = await run_backtest(settings, series, fast=False)

    assert len(full.trades) >= 10, "too few trades for the check to mean anything"
    assert fast.trades == full.trades
    assert fast.fills == full.fills

    def seen(events: tuple[object, ...]) -> list[tuple[int, dict[str, object]]]:
        return [(e.ts_ms, event_payload(e)) for e in events]  # type: ignore[attr-defined]

    assert seen(fast.regime_changes) == seen(full.regime_changes)
    assert {e.symbol for e in full.regime_changes} == set(PAIRS)
    for symbol in PAIRS:  # one event per change, the first from unknown
        mine = [e for e in full.regime_changes if e.symbol == symbol]
        assert mine[0].previous == "unknown"
        assert all(a.current == b.previous != b.current for a, b in itertools.pairwise(mine))
    assert seen(fast.selections) == seen(full.selections)
    # each trade's ladder is its entry regime's group (trend, range) or the seed ladder
    for t in full.trades:
        group = t.regime.split("_")[0]
        assert t.exit_profile == (group if group in PROFILES else "default")
    if provider == "meta":
        assert full.selections, "the meta-strategy made no pick"
        assert {t.provider for t in full.trades} <= {"ema_rsi", "mean_reversion"}
        pick = {e.symbol: e for e in full.selections}
        assert {e.provider for e in pick.values()} <= {"ema_rsi", "mean_reversion"}
    else:
        assert not full.selections
        assert {t.provider for t in full.trades} == {"mean_reversion"}

    files = write_report(
        full.metrics, full.trades, full.curve, tmp_path / "out", run_name="r", charts=False
    )
    with files.trades_csv_path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["provider"] for r in rows] == [
        t.provider for t in sorted(full.trades, key=lambda t: (t.closed_ms, t.opened_ms))
    ]
    report = json.loads(files.json_path.read_text(encoding="utf-8"))
    assert sum(r["trades"] for r in report["per_provider"]) == len(full.trades)


async def test_the_demo_publishes_the_regimes_picks_and_fills_of_the_backtest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_for(monkeypatch, tmp_path, "meta")
    settings = settings.model_copy(
        update={
            "app": settings.app.model_copy(update={"data_dir": tmp_path / "ud"}),
            "demo": settings.demo.model_copy(
                update={
                    "candles_per_second": 10_000.0,
                    "history_candles": 300,
                    "replay_candles": 500,
                    "seed": 11,
                }
            ),
            # The demo's scheduler fires the brains on its own time, not in lockstep with its
            # candles (tests/integration/test_parity.py): this is the engine's parity.
            "brains": settings.brains.model_copy(update={"enabled": False}),
        }
    )
    built: list[TradingProcess] = []

    async def build() -> TradingProcess:
        built.append(await build_demo(settings))
        return built[0]

    assert await run_process(build, console=Console(record=True)) == "feed ended"
    storage = built[0].storage
    await storage.start()
    try:
        fills = await storage.fills.list_fills()
        stored = {
            topic: [e.payload for e in await storage.events.list_events(topic, limit=100_000)]
            for topic in ("regime.changed", "strategy.selected")
        }
    finally:
        await storage.stop()

    markets, replay_start_ms = demo_market(settings)
    result = await run_backtest(
        settings, markets, start_ms=replay_start_ms, rules=resolved(settings, markets)
    )
    assert len(fills) >= 10 and stored["regime.changed"] and stored["strategy.selected"]
    assert sorted(f.client_order_id for f in result.fills) == sorted(
        f.client_order_id for f in fills
    )
    assert stored["regime.changed"] == [event_payload(e) for e in result.regime_changes]
    assert stored["strategy.selected"] == [event_payload(e) for e in result.selections]
