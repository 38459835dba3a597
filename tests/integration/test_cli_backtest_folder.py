"""``qt backtest --data DIR``: every candle file of the timeframe in a folder; with a dynamic
universe the report says how it went; a folder without candle files is one line."""

from __future__ import annotations

import json
from pathlib import Path

from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles
from tests.integration.test_cli import T0, Cli, flat, write_csv
from tests.integration.test_cli import cli as cli  # the fixture (re-exported: pytest finds it)

N = 20 * 24


def with_volume(symbol: str, quote_volume: float, seed: int, timeframe: str = "1h") -> CandleSeries:
    s = generate_candles(symbol, timeframe, N, seed=seed, start_ms=T0)
    volume = quote_volume / s.close
    return CandleSeries.from_columns(
        symbol, s.timeframe, s.ts_ms, s.open, s.high, s.low, s.close, volume
    )


def folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for i, (symbol, volume) in enumerate(
        (("AAA/USDT", 1e6), ("BBB/USDT", 5e5), ("CCC/USDT", 1e3), ("DDD/USDT", 1e2))
    ):
        write_csv(data / f"{symbol.replace('/', '_')}-1h.csv", with_volume(symbol, volume, i))
    # Beside them, as in ../shared/data: another timeframe, funding rates, notes.
    write_csv(data / "AAA_USDT-1d.csv", generate_candles("AAA/USDT", "1d", 20, seed=9, start_ms=T0))
    (data / "AAA_USDT-funding.csv").write_text("timestamp,funding_rate\n")
    (data / "README.md").write_text("notes\n")
    return data


def test_a_folder_runs_every_candle_file_of_the_timeframe(cli: Cli, tmp_path: Path) -> None:
    result = cli("backtest", "--data", str(folder(tmp_path)), "--no-charts", "--name", "s")
    assert result.exit_code == 0, result.output
    assert f"{4 * N} candles" in flat(result.stdout)
    assert "Universe:" not in result.stdout  # static: every file is traded
    report = json.loads((cli.data_dir / "backtests" / "backtest-s.json").read_text())
    assert {p["symbol"] for p in report["metrics"]["per_pair"]} == {
        "AAA/USDT",
        "BBB/USDT",
        "CCC/USDT",
        "DDD/USDT",
    }
    assert "universe" not in report


def test_a_folder_with_a_dynamic_universe_reports_it(cli: Cli, tmp_path: Path) -> None:
    env = {
        "QT__UNIVERSE__MODE": "volume",
        "QT__UNIVERSE__TOP_N": "2",
        "QT__UNIVERSE__MIN_LISTING_DAYS": "7",
    }
    data = folder(tmp_path)
    write_csv(data / "ETH_BTC-1h.csv", with_volume("ETH/BTC", 1e9, 7))  # another quote
    args = ("backtest", "--data", str(data), "--no-charts", "--name", "v")
    result = cli(*args, **env)
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "note: not quoted in USDT, left out of the universe: ETH/BTC" in out
    assert "Universe: 0-2 symbol(s) over 20 refresh(es), 1 change(s); ever selected (2): " in out
    assert "AAA/USDT, BBB/USDT" in out
    report = json.loads((cli.data_dir / "backtests" / "backtest-v.json").read_text())
    u = report["universe"]
    assert (u["refreshes"], u["changes"], u["ever_selected"]) == (
        20,
        1,
        ["AAA/USDT", "BBB/USDT"],
    )
    # The files start at T0: nothing is 7 days old before the eighth day's refresh.
    assert u["timeline"] == [
        {
            "from_utc": "2024-01-08 00:00",
            "size": 2,
            "entered": ["AAA/USDT", "BBB/USDT"],
            "left": [],
        }
    ]
    traded = {t["symbol"] for t in report["trades"]}
    assert traded <= {"AAA/USDT", "BBB/USDT"}


def test_a_folder_without_candle_files_is_one_line(cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("nothing here\n")
    other = tmp_path / "daily"
    other.mkdir()
    write_csv(
        other / "BTC_USDT-1d.csv", generate_candles("BTC/USDT", "1d", 30, seed=1, start_ms=T0)
    )
    for path, said in (
        (empty, f"{empty} holds no 1h candle files like BTC_USDT-1h.csv.gz"),
        (other, f"{other} holds no 1h candle files like BTC_USDT-1h.csv.gz (it holds 1d candles)"),
    ):
        result = cli("backtest", "--data", str(path), "--no-charts")
        assert result.exit_code == 2
        assert said in flat(result.stderr)
        assert "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_without_data_a_dynamic_universe_picks_among_every_stored_symbol(
    cli: Cli, tmp_path: Path
) -> None:
    data = folder(tmp_path)
    files = sorted(str(p) for p in data.glob("*-1h.csv"))
    imported = cli("data", "import", *files, "--exchange", "binance")
    assert imported.exit_code == 0, imported.output
    env = {
        "QT__UNIVERSE__MODE": "volume",
        "QT__UNIVERSE__TOP_N": "3",
        "QT__UNIVERSE__MIN_LISTING_DAYS": "0",
    }
    result = cli("backtest", "--no-charts", "--name", "db", **env)
    assert result.exit_code == 0, result.output
    report = json.loads((cli.data_dir / "backtests" / "backtest-db.json").read_text())
    assert report["universe"]["ever_selected"] == ["AAA/USDT", "BBB/USDT", "CCC/USDT"]
    assert len(report["metrics"]["per_pair"]) == 4  # every stored symbol was a candidate
