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

from bot.backtest import run_backtest
from bot.report import write_report
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
