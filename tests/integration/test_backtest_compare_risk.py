"""``qt backtest --compare-risk``: the same backtest brains off and on. The brains-off run is a
plain backtest with QT__BRAINS__ENABLED=false; a market falling in three gaps is held through
with the brains off and cut short with them on; the time in the modes sums to 100 %; the CLI
prints the table and writes the comparison (with and without charts); a flag that cannot
apply is one line and exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bot.backtest import run_backtest
from bot.backtest_window import Sources
from bot.cli_backtest import Run
from bot.market_rules import resolved
from bot.risk_compare import (
    RiskComparison,
    modes_of,
    risk_actions,
    run_comparison,
    time_in_modes,
)
from core.config import Settings, load_settings
from core.domain.events import ModeChanged
from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles, with_crash
from core.signals.base import SignalProvider
from tests.integration.scripted import AlwaysLong
from tests.integration.test_cli import T0, Cli, flat, write_csv
from tests.integration.test_cli import cli as cli  # the fixture (re-exported: pytest finds it)

PAIRS = ("BTC/USDT", "ETH/USDT")
HOUR_MS = 3_600_000


def _settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    # Cooldowns off: the point is to hold both symbols when the market gaps; few Monte Carlo
    # paths: the test is of the plumbing, not of the VaR's third digit.
    return load_settings(
        risk={"max_correlation": 1.0, "symbol_cooldown_s": 0, "max_entries_per_hour": 0},
        brains={"mc_paths": 2000},
    )


def falling_market(n: int = 600) -> dict[str, CandleSeries]:
    """Both symbols gap down 12 % three times, a day apart, from candle 300."""
    out = {}
    for symbol in PAIRS:
        s = generate_candles(symbol, "1h", n, seed=5)
        for k in range(3):
            s = with_crash(s, 300 + 24 * k, 12.0)
        out[symbol] = s
    return out


def _run(settings: Settings, series: dict[str, CandleSeries]) -> Run:
    rules = resolved(settings, series, series=series)
    return Run(series=series, detail=None, funding={}, rules=dict(rules), sources=Sources())


async def _compare(settings: Settings, series: dict[str, CandleSeries]) -> RiskComparison:
    async def always_long(_settings: Settings) -> SignalProvider:
        return AlwaysLong()

    return await run_comparison(
        _run(settings, series), settings, always_long, start_ms=None, end_ms=None, full=False
    )


async def test_the_brains_cut_a_crash_short_and_the_brains_off_run_is_a_plain_backtest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _settings(monkeypatch, tmp_path)
    series = falling_market()
    cmp = await _compare(settings, series)

    # Brains off: exactly the backtest QT__BRAINS__ENABLED=false gives, the same trades.
    off_settings = settings.model_copy(
        update={"brains": settings.brains.model_copy(update={"enabled": False})}
    )
    plain = await run_backtest(
        off_settings, series, rules=_run(settings, series).rules, provider=AlwaysLong()
    )
    assert len(plain.trades) >= 10
    assert cmp.off.trades == plain.trades
    assert cmp.off.metrics == plain.metrics
    off_actions = risk_actions(cmp.off)
    assert off_actions.assessments == off_actions.mode_changes == off_actions.exposure_cuts == 0
    assert modes_of(cmp.off, brains=False) == {}

    # Brains on: assessed every hour, left OPTIMIZATION for a defensive mode after the gaps,
    # and the drawdown is a fraction of the one held through with the brains off (30 % vs 9 %
    # when written; asserted with room).
    on, off = cmp.on.metrics, cmp.off.metrics
    on_actions = risk_actions(cmp.on)
    assert on_actions.assessments >= 500
    assert on_actions.mode_changes >= 1
    assert off.drawdown.max_drawdown_pct > 20.0
    assert on.drawdown.max_drawdown_pct < 0.6 * off.drawdown.max_drawdown_pct
    modes = modes_of(cmp.on)
    assert sum(modes.values()) == pytest.approx(100.0)
    assert modes["PRESERVATION"] + modes["EMERGENCY"] > 0.0
    assert cmp.on_s > 0.0 and cmp.off_s > 0.0


def _changed(ts_ms: int, previous: str, current: str) -> ModeChanged:
    return ModeChanged(ts_ms=ts_ms, previous=previous, current=current, reasons=(), manual=False)


def test_time_in_modes_sums_to_100_and_clips_changes_to_the_run() -> None:
    changes = [
        _changed(1_500, "PRESERVATION", "EMERGENCY"),  # out of order: sorted by time
        _changed(500, "OPTIMIZATION", "PRESERVATION"),  # before the start: held from it
        _changed(1_800, "EMERGENCY", "OPTIMIZATION"),
        _changed(5_000, "OPTIMIZATION", "EXPANSION"),  # after the end: never held
    ]
    got = time_in_modes("OPTIMIZATION", changes, 1_000, 2_000)
    assert got == pytest.approx(
        {"EXPANSION": 0.0, "OPTIMIZATION": 20.0, "PRESERVATION": 50.0, "EMERGENCY": 30.0}
    )
    assert sum(got.values()) == pytest.approx(100.0)
    assert time_in_modes("OPTIMIZATION", [], 1_000, 2_000)["OPTIMIZATION"] == 100.0
    assert time_in_modes("OPTIMIZATION", [], 1_000, 1_000)["OPTIMIZATION"] == 100.0
    assert time_in_modes("", changes, 1_000, 2_000) == {}  # brains off: no modes at all


def _files(tmp_path: Path) -> list[str]:
    data = tmp_path / "data"
    data.mkdir()
    args = []
    for symbol, s in falling_market(400).items():
        shifted = CandleSeries.from_columns(
            symbol, s.timeframe, s.ts_ms - s.ts_ms[0] + T0, s.open, s.high, s.low, s.close,
            s.volume,
        )  # fmt: skip
        args += ["--data", str(write_csv(data / f"{symbol.replace('/', '_')}-1h.csv", shifted))]
    return args


def test_the_cli_prints_the_comparison_and_writes_it(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    common = [*_files(tmp_path), "--out", str(out), "--compare-risk"]
    fast = {"QT__BRAINS__MC_PATHS": "2000"}
    result = cli("backtest", *common, "--name", "cmp", "--no-charts", **fast)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "Brains off vs on" in text
    for row in ("Max drawdown %", "Calmar", "Sharpe", "CAGR %", "Trades", "Wall time (s)"):
        assert row in text
    assert "Time in each mode (brains on)" in text and "OPTIMIZATION" in text
    assert "Risk levels of the assessments" in text and "Exposure cuts" in text
    report = json.loads((out / "backtest-cmp-compare-risk.json").read_text())
    assert sum(report["time_in_mode_pct"].values()) == pytest.approx(100.0)
    off, on = report["brains_off"], report["brains_on"]
    assert off["risk_actions"]["assessments"] == 0 < on["risk_actions"]["assessments"]
    assert sum(report["risk_levels"].values()) == on["risk_actions"]["assessments"]
    assert on["metrics"]["drawdown"]["max_drawdown_pct"] == pytest.approx(
        off["metrics"]["drawdown"]["max_drawdown_pct"] * (1 - report["max_drawdown_cut_pct"] / 100)
    )
    # Each run's own report beside it; no PNG with --no-charts.
    assert (out / "backtest-cmp-brains-off.json").is_file()
    assert (out / "backtest-cmp-brains-on-trades.csv").is_file()
    assert not list(out.glob("*.png"))

    charted = cli("backtest", *common, "--name", "charted", **fast)
    assert charted.exit_code == 0, charted.output
    png = out / "backtest-charted-compare-risk.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "backtest-charted-brains-on-equity.png").is_file()


def test_compare_risk_with_a_flag_that_cannot_apply_is_one_line(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    args = ["backtest", "--data", str(tmp_path / "none.csv"), "--out", str(out)]
    result = cli(*args, "--compare-risk", "--walk-forward", "--strategy", "ensemble")
    assert result.exit_code == 2
    assert "--walk-forward retrains the models inside each run" in flat(result.output)
    assert not out.exists()  # refused before anything ran or was written
    # A run name too long once "-brains-off" is added: refused before the runs.
    long_name = cli(*args, "--compare-risk", "--name", "n" * 95)
    assert long_name.exit_code != 0
    assert "must be 1-100 characters" in flat(long_name.output)
