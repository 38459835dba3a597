"""The backtest report: files on disk (JSON, CSV, PNG) and the rich tables."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import pytest
from rich.console import Console

from bot.report import (
    fmt_duration,
    fmt_num,
    fmt_pct,
    plain_table,
    print_report,
    write_report,
)
from core.analytics import BacktestMetrics, compute_metrics
from core.domain.enums import MarketType
from core.domain.explanations import EntryExplanation, FeaturePush, MemberVote
from core.errors import DataError
from tests.unit.analytics.builders import (
    DAY_MS,
    HOUR_MS,
    T0_MS,
    bench,
    daily_curve,
    make_input,
    trade,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _backtest(trades=None):
    equity = [100, 104, 101, 99, 106, 110, 108, 115]
    closes = [50, 51, 49, 52, 53, 55, 54, 56]
    trades = trades if trades is not None else [
        trade("4", trade_id="a", opened_ms=T0_MS, legs=[("TP1", "1.5"), ("TP2", "2.5")]),
        trade("-3", trade_id="b", symbol="ETH/USDT", opened_ms=T0_MS + 2 * DAY_MS,
              legs=[("SL", "-3")]),
        trade("11", trade_id="c", opened_ms=T0_MS + 3 * DAY_MS, duration_ms=30 * HOUR_MS),
    ]  # fmt: skip
    inp = make_input(daily_curve(equity), trades=trades, benchmarks=[bench("BTC/USDT", closes)])
    return inp, compute_metrics(inp)


def test_write_report_writes_json_csv_and_pngs(tmp_path: Path) -> None:
    inp, m = _backtest()
    files = write_report(
        m, inp.trades, inp.curve, tmp_path / "out", run_name="demo-1", benchmarks=inp.benchmarks
    )
    assert files.json_path == tmp_path / "out" / "backtest-demo-1.json"
    assert files.trades_csv_path.name == "backtest-demo-1-trades.csv"

    payload = json.loads(files.json_path.read_text(encoding="utf-8"))
    metrics = payload["metrics"]
    assert payload["run_name"] == "demo-1"
    assert metrics["total_profit_abs"] == pytest.approx(15.0)
    assert metrics["trades"]["total"] == 3
    assert metrics["drawdown"]["max_drawdown_pct"] == pytest.approx(m.drawdown.max_drawdown_pct)
    assert metrics["trades"]["profit_factor"] == pytest.approx(15 / 3)
    assert [r["month"] for r in metrics["monthly"]] == ["2024-01"]
    assert {r["reason"] for r in metrics["exit_reasons"]} == {"TP1", "TP2", "SL", "SIGNAL"}
    assert payload["trades"][0]["pnl"] == "4"  # Decimals as strings
    assert payload["trades"][0]["side"] == "long"
    assert payload["trades"][0]["legs"][1]["reason"] == "TP2"

    with files.trades_csv_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["trade_id"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["legs"] == "2"
    assert rows[0]["legs_summary"].startswith("TP1 0.5@100 pnl=1.5; TP2")
    assert rows[2]["duration_ms"] == str(30 * HOUR_MS)
    assert rows[0]["liquidation_price"] == ""  # spot: never liquidated

    for png in (files.equity_png_path, files.drawdown_png_path, files.monthly_png_path):
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE), png
        assert len(data) > 5_000, png


def test_the_trades_csv_says_where_a_perp_would_have_been_liquidated(tmp_path: Path) -> None:
    inp, m = _backtest()
    perp = replace(inp.trades[0], market_type=MarketType.PERP, liquidation_price=D("80.5"))
    files = write_report(m, (perp,), inp.curve, tmp_path, run_name="perp", charts=False)
    with files.trades_csv_path.open(encoding="utf-8", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["liquidation_price"] == "80.5"
    payload = json.loads(files.json_path.read_text(encoding="utf-8"))
    assert payload["trades"][0]["liquidation_price"] == "80.5"


def test_undefined_and_infinite_figures_are_json_safe(tmp_path: Path) -> None:
    inp, m = _backtest(trades=[trade("2"), trade("3", trade_id="x")])
    files = write_report(m, inp.trades, inp.curve, tmp_path, run_name="wins")
    metrics = json.loads(files.json_path.read_text(encoding="utf-8"))["metrics"]
    assert metrics["trades"]["profit_factor"] == "inf"
    assert metrics["trades"]["avg_duration_losers_ms"] is None
    assert metrics["market_change_pct"] == pytest.approx(12.0)


def test_write_report_rejects_unsafe_run_names(tmp_path: Path) -> None:
    inp, m = _backtest()
    with pytest.raises(DataError, match=r"run_name '\.\./x'"):
        write_report(m, inp.trades, inp.curve, tmp_path, run_name="../x")
    assert list(tmp_path.iterdir()) == []


def test_print_report_renders_the_main_tables() -> None:
    _, m = _backtest(trades=[trade("2"), trade("3", trade_id="x")])
    console = Console(record=True, width=160)
    print_report(m, console)
    text = console.export_text()
    for label in (
        "Summary", "Total profit %", "CAGR %", "Sharpe", "Sortino", "Calmar", "SQN",
        "Profit factor", "Expectancy (ratio)", "Max drawdown %", "Market change", "Fees paid",
        "Per pair", "Per exit reason", "Monthly", "BTC/USDT", "SIGNAL", "2024-01",
    ):  # fmt: skip
        assert label in text, label
    assert "15.00%" in text  # 100 -> 115
    assert "inf" in text  # profit factor with no losing trade


def test_print_report_with_no_trades() -> None:
    _, m = _backtest(trades=[])
    assert isinstance(m, BacktestMetrics)
    console = Console(record=True, width=160)
    print_report(m, console)
    assert "Win / Draw / Loss" in console.export_text()


def test_formatters() -> None:
    assert fmt_num(float("inf")) == "inf"
    assert fmt_num(None) == "-"
    assert fmt_num(1234.5) == "1,234.50"
    assert fmt_pct(21.0) == "21.00%"
    assert fmt_duration(3 * 86_400_000 + 4 * 3_600_000 + 5 * 60_000) == "3d 04:05"
    assert fmt_duration(90 * 60_000) == "01:30"


def test_the_json_says_what_funding_was_modelled(tmp_path: Path) -> None:
    inp, m = _backtest()
    unfunded = write_report(m, inp.trades, inp.curve, tmp_path, run_name="a", charts=False)
    funded = write_report(
        replace(m, funding=-12.5),
        inp.trades,
        inp.curve,
        tmp_path,
        run_name="b",
        charts=False,
        funding_symbols=("BTC/USDT",),
    )
    assumed = [
        json.loads(f.json_path.read_text())["assumptions"]["funding"] for f in (unfunded, funded)
    ]
    assert assumed[0].startswith("not modelled")
    assert assumed[1].startswith("modelled for BTC/USDT from funding-rate files")
    assert "amount * mark * rate" in assumed[1]
    assert "net -12.50" in assumed[1]
    assert "not modelled for ETH/USDT" in assumed[1]  # it traded, without rates


def test_the_per_pair_table_shows_pairs_without_trades() -> None:
    inp = make_input(daily_curve([100, 90, 80]), trades=[trade("-20")], symbols=("ETH/USDT",))
    console = Console(record=True, width=160)
    print_report(compute_metrics(inp), console)
    lines = console.export_text().splitlines()
    [idle] = [line for line in lines if "ETH/USDT" in line]
    assert [cell.strip() for cell in idle.split("│")[1:7]] == [
        "ETH/USDT",
        "0",
        "-",
        "-",
        "0.00",
        "-",
    ]
    [best] = [line for line in lines if "Best pair" in line]
    assert "- -" in best  # no pair made money


def test_the_trades_csv_says_why_each_ensemble_entry_was_made(tmp_path: Path) -> None:
    why = EntryExplanation(
        provider="ensemble",
        p_up=0.6345,
        members=(
            MemberVote(member="lgbm", p_up=0.6, weight=0.45),
            MemberVote(member="xgb", p_up=0.663, weight=0.55),
        ),
        regime="trend_low_vol",
        top_features=(
            FeaturePush(member="lgbm", feature="ret_48", value=0.4331),
            FeaturePush(member="lgbm", feature="rsi_14", value=-0.05),
            FeaturePush(member="xgb", feature="dist_ema_50", value=0.2),
        ),
    )
    explained = replace(
        trade("4", trade_id="a", opened_ms=T0_MS), explanation=why, regime="trend_low_vol"
    )
    inp, m = _backtest([explained, trade("-3", trade_id="b", opened_ms=T0_MS + DAY_MS)])
    files = write_report(m, inp.trades, inp.curve, tmp_path / "out", run_name="why", charts=False)
    with files.trades_csv_path.open(encoding="utf-8", newline="") as handle:
        a, b = csv.DictReader(handle)
    assert (a["p_up"], a["members"], a["regime"]) == (
        "0.6345",
        "lgbm=0.60@0.45;xgb=0.66@0.55",
        "trend_low_vol",
    )
    assert a["top_features"] == "lgbm:ret_48=+0.433,rsi_14=-0.050;xgb:dist_ema_50=+0.200"
    assert (b["p_up"], b["members"], b["regime"], b["top_features"]) == ("", "", "", "")
    payload = json.loads(files.json_path.read_text(encoding="utf-8"))
    assert payload["trades"][0]["explanation"]["regime"] == "trend_low_vol"


def test_plain_table_aligns_like_the_rich_tables_without_borders() -> None:
    text = plain_table(
        "Monthly",
        ("Month", "Profit", "Trades"),
        [("2024-01", "-1,379.62", "12"), ("2024-02", "5.00", "7")],
    )
    assert text.splitlines() == [
        "Monthly",
        "Month       Profit  Trades",
        "2024-01  -1,379.62      12",
        "2024-02       5.00       7",
    ]
    assert plain_table("Monthly", ("Month", "Profit"), []).splitlines() == [
        "Monthly",
        "Month  Profit",
    ]
    with pytest.raises(ValueError):  # a row of the wrong width is a bug, never a shifted table
        plain_table("Monthly", ("Month", "Profit"), [("2024-01",)])


def test_print_report_prints_the_monthly_table_as_plain_text_not_markup() -> None:
    _, m = _backtest()
    console = Console(record=True, width=40)  # narrower than the table: still one line a row
    print_report(m, console)
    text = console.export_text()
    monthly = text[text.index("Monthly\n") :].splitlines()
    assert monthly[1].split() == ["Month", "Profit", "Profit", "%", "Trades"]
    assert monthly[2].split()[0] == "2024-01"
    assert monthly[2].split()[-1] == str(m.monthly[0].trades)


def test_the_report_json_is_compact_and_whole(tmp_path: Path) -> None:
    inp, m = _backtest()
    files = write_report(m, inp.trades, inp.curve, tmp_path, run_name="c", charts=False)
    text = files.json_path.read_text(encoding="utf-8")
    assert text.count("\n") == 1 and text.endswith("}\n")  # one line: the C encoder's output
    payload = json.loads(text)
    assert [t["trade_id"] for t in payload["trades"]] == ["a", "b", "c"]
