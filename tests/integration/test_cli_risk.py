"""``qt risk backtest`` end to end: the table, counts recomputed by hand, the JSON, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from core.market.synthetic import generate_candles
from tests.integration.test_cli import Cli, flat, write_csv
from tests.integration.test_cli import cli as cli  # the fixture (re-exported: pytest finds it)

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
WINDOW = 60


def _daily_files(tmp_path: Path, days: int = 200) -> tuple[Path, Path]:
    btc = generate_candles("BTC/USDT", "1d", days, seed=5, start_ms=T0)
    eth = generate_candles("ETH/USDT", "1d", days, seed=5, start_ms=T0)
    return (
        write_csv(tmp_path / "BTC_USDT-1d.csv", btc),
        write_csv(tmp_path / "ETH_USDT-1d.csv", eth),
    )


def _closes(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1)[:, 4]


def _exceptions_by_hand(r: np.ndarray, level: float) -> dict[str, int]:
    """Each day's normal and historical VaR from the WINDOW returns before it, by hand."""
    normal = hist = 0
    for t in range(WINDOW, len(r)):
        w = r[t - WINDOW : t]
        normal += r[t] < w.mean() + w.std(ddof=1) * stats.norm.ppf(1 - level)
        hist += r[t] < np.quantile(w, 1 - level)
    return {"parametric": int(normal), "historical": int(hist)}


def test_the_table_and_json_count_the_exceptions_a_direct_recomputation_finds(
    cli: Cli, tmp_path: Path
) -> None:
    btc, eth = _daily_files(tmp_path)
    out = tmp_path / "out" / "risk.json"
    result = cli(
        "risk", "backtest", "--data", str(btc), "--data", str(eth),
        "--window", str(WINDOW), "--json", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert "BTC/USDT +0.500, ETH/USDT +0.500" in text and "199 daily returns" in text
    assert "VaR 95 % backtest" in text and "VaR 99 % backtest" in text
    assert "8 backtests in" in text and "resampled" not in text
    report = json.loads(out.read_text())
    r = (
        0.5 * np.diff(_closes(btc)) / _closes(btc)[:-1]
        + 0.5 * np.diff(_closes(eth)) / _closes(eth)[:-1]
    )
    rows = {(b["method"], b["level"]): b for b in report["backtests"]}
    assert len(rows) == 8 and all(b["days"] == len(r) - WINDOW for b in rows.values())
    for level in (0.95, 0.99):
        for method, count in _exceptions_by_hand(r, level).items():
            row = rows[(method, level)]
            assert row["exceptions"] == count == len(row["exception_days"]), (method, level)
    assert rows[("historical", 0.95)]["exceptions"] > 0  # the comparison compared something
    # the table prints what the JSON holds: each method's row of the 95 % table
    table95 = text.split("VaR 95 % backtest")[1].split("VaR 99 % backtest")[0]
    for method in ("parametric", "cornish_fisher", "historical", "monte_carlo"):
        row = rows[(method, 0.95)]
        assert f"{method} │ {row['days']} │ {row['exceptions']} │" in table95


def test_intraday_candles_are_resampled_and_options_narrow_the_run(
    cli: Cli, tmp_path: Path
) -> None:
    hourly = generate_candles("BTC/USDT", "1h", 24 * 120 + 5, seed=2, start_ms=T0)
    path = write_csv(tmp_path / "BTC_USDT-1h.csv", hourly)
    result = cli(
        "risk", "backtest", "--data", str(path), "--window", "40", "--levels", "0.975",
        "--methods", "historical,monte_carlo", "--start", "2024-01-11", "--end", "2024-04-01",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert "BTC/USDT: 1h candles resampled to UTC daily closes" in text
    assert "its last day is unfinished, left out" in text
    assert "81 daily returns, 2024-01-12 to 2024-04-01" in text  # 82 closes, both ends in
    assert "VaR 97.5 % backtest" in text and "2 backtests" in text
    assert "parametric" not in text.split("VaR 97.5 % backtest")[1]


def test_a_short_portfolio_runs(cli: Cli, tmp_path: Path) -> None:
    btc, eth = _daily_files(tmp_path)
    result = cli(
        "risk", "backtest", "--data", str(btc), "--data", str(eth), "--window", str(WINDOW),
        "--portfolio", "BTC/USDT=1,ETH/USDT=-1", "--methods", "parametric",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "BTC/USDT +0.500, ETH/USDT -0.500" in flat(result.stdout)


def test_bad_input_is_one_clear_line_and_exit_2(cli: Cli, tmp_path: Path) -> None:
    btc, _ = _daily_files(tmp_path)
    short = write_csv(tmp_path / "SOL_USDT-1d.csv", generate_candles("SOL/USDT", "1d", 100, seed=1))
    nan = tmp_path / "XRP_USDT-1d.csv"
    lines = btc.read_text().splitlines()
    cells = lines[50].split(",")
    cells[4] = "nan"
    nan.write_text("\n".join([*lines[:50], ",".join(cells), *lines[51:]]) + "\n")
    garbage = tmp_path / "ADA_USDT-1d.csv"
    garbage.write_text("this is not, a candle file\n1,2\n")
    base = ["risk", "backtest", "--data"]
    cases = [
        ([str(short)], "99 daily returns: a 250-day window needs at least 252"),
        ([str(nan)], "NaN"),
        ([str(garbage)], str(garbage)),
        ([str(tmp_path / "missing.csv")], "no such candle file"),
        ([str(btc), "--methods", "parametric,astrology"], "unknown VaR method(s) astrology"),
        ([str(btc), "--levels", "0.95,1.5"], "in (0.5, 1) like 0.99, received '1.5'"),
        ([str(btc), "--levels", "99"], "received '99'"),
        ([str(btc), "--portfolio", "BTC/USDT"], "expected SYMBOL=WEIGHT pairs"),
        ([str(btc), "--symbol", "SOL/USDT"], "no candles for SOL/USDT"),
        ([str(btc), "--window", "10"], "--window"),
        ([str(btc), "--json", str(tmp_path)], f"{tmp_path} is a folder, not a file"),
        ([str(btc), "--start", "2024-05-01", "--end", "2024-01-01"], "is before --start"),
    ]
    for extra, message in cases:
        result = cli(*base, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in flat(result.stderr), (extra, result.stderr)
        assert "Traceback" not in result.output and "backtest" not in result.stdout


@pytest.mark.skipif(not (SHARED / "BTC_USDT-1d.csv.gz").exists(), reason="../shared/data absent")
def test_on_real_btc_daily_candles(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "btc.json"
    result = cli(
        "risk", "backtest", "--data", str(SHARED / "BTC_USDT-1d.csv.gz"), "--start",
        "2022-01-01", "--end", "2023-12-31", "--methods", "parametric,historical",
        "--json", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["returns"] == 729 and report["first_day"] == "2022-01-02"
    for row in report["backtests"]:
        assert row["days"] == 729 - 250
        # a sane model on a real market: exceptions within a factor of three of the expected
        assert row["expected_exceptions"] / 3 < row["exceptions"] < 3 * row["expected_exceptions"]


def test_without_data_it_reads_the_stored_candles_of_the_symbols(cli: Cli, tmp_path: Path) -> None:
    empty = cli("risk", "backtest", "--symbol", "BTC/USDT")
    assert empty.exit_code == 2 and "no 1h spot candles stored" in flat(empty.stderr)
    hourly = generate_candles("BTC/USDT", "1h", 24 * 70, seed=4, start_ms=T0)
    imported = cli("data", "import", str(write_csv(tmp_path / "BTC_USDT-1h.csv", hourly)))
    assert imported.exit_code == 0, imported.output
    result = cli(
        "risk", "backtest", "--symbol", "BTC/USDT", "--window", "40", "--methods", "historical",
        "--levels", "0.9",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert "BTC/USDT +1.000" in text and "69 daily returns" in text
    assert "1h candles resampled to UTC daily closes" in text
