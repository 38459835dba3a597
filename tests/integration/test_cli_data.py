"""``qt data`` end to end for the data-correctness fixes (issue 9): repair, sorting, market kinds,
timestamp units, listing. The harness (``cli``, ``write_csv``, ...) is ``test_cli``'s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as pa_feather
import pytest

from bot import cli_data
from core.domain.market import CandleSeries
from core.exchange.ccxt import CcxtMarketData, make_ccxt_exchange
from storage import open_storage
from tests.fakes_http import point_ccxt_at, set_minimal_markets
from tests.integration.test_cli import (
    T0,
    Cli,
    H,
    candles,
    fake_binance_in_a_thread,
    flat,
    stored_series,
    write_csv,
)
from tests.integration.test_cli import cli as cli  # the fixture, re-exported for pytest


def test_repair_drops_a_future_dated_row_and_keeps_the_rest(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 1000))
    lines = path.read_text().splitlines()
    fields = lines[2].split(",")
    fields[0] = "1802944800000"  # data row 2 mistyped as 2027-02-17
    lines[2] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")

    refused = cli("data", "import", str(path))
    repaired = cli("data", "import", "--repair", str(path))

    assert refused.exit_code == 2
    assert "future (" in flat(refused.stderr)
    assert "first at row 2," in flat(refused.stderr)
    assert repaired.exit_code == 0, repaired.output
    out = flat(repaired.stdout)
    assert f"{path}: 999 candles -> binance" in out
    assert "dropped: 1 invalid rows (future=1)" in out
    assert stored_series(cli.db_file) == {("binance", "BTC/USDT", "1h", 999)}


def test_import_sorts_a_newest_first_file_when_asked(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 100))
    header, *body = path.read_text().splitlines()
    path.write_text("\n".join([header, *reversed(body)]) + "\n")

    refused = cli("data", "import", str(path))
    imported = cli("data", "import", "--sort", str(path))

    assert refused.exit_code == 2
    assert "not_increasing" in flat(refused.stderr)
    assert imported.exit_code == 0, imported.output
    assert f"{path}: 100 candles -> binance" in flat(imported.stdout)
    assert "sorted by time: 100 rows changed place" in flat(imported.stdout)
    assert stored_series(cli.db_file) == {("binance", "BTC/USDT", "1h", 100)}


def test_microsecond_timestamps_are_checked_and_imported_as_ms(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 48))
    header, *body = path.read_text().splitlines()
    path.write_text("\n".join([header, *(line.replace(",", "000,", 1) for line in body)]) + "\n")

    checked = cli("data", "check", str(path))
    imported = cli("data", "import", str(path))
    listed = cli("data", "list")

    assert checked.exit_code == 0, checked.output
    assert "2024-01-01T00:00:00Z -> 2024-01-02T23:00:00Z" in checked.stdout
    assert "timestamps: 48 rows were in microseconds, converted to ms" in flat(checked.stdout)
    assert imported.exit_code == 0, imported.output
    assert "2024-01-01T00:00:00Z" in listed.stdout


def test_a_file_cut_off_mid_line_imports_with_repair(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 30))
    path.write_text(path.read_text() + "1704175200000,29000.1,29100")  # an interrupted write

    refused = cli("data", "import", str(path))
    repaired = cli("data", "import", "--repair", str(path))

    assert refused.exit_code == 2
    assert "data row 31 (1-based, header not counted) has 3 fields" in flat(refused.stderr)
    assert repaired.exit_code == 0, repaired.output
    assert "dropped the truncated last line, data row 31" in flat(repaired.stdout)
    assert stored_series(cli.db_file) == {("binance", "BTC/USDT", "1h", 30)}


def test_list_never_truncates_on_a_narrow_console_and_prints_json(cli: Cli, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 48))
    assert cli("data", "import", str(csv)).exit_code == 0

    narrow = cli("data", "list", COLUMNS="60")
    as_json = cli("data", "list", "--json", COLUMNS="60")

    assert narrow.exit_code == 0, narrow.output
    assert "…" not in narrow.stdout
    assert "2024-01-01T00:00:00Z" in narrow.stdout
    assert "2024-01-02T23:00:00Z" in narrow.stdout
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == [
        {
            "exchange": "binance",
            "market": "spot",
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "first": "2024-01-01T00:00:00Z",
            "last": "2024-01-02T23:00:00Z",
            "first_ms": T0,
            "last_ms": T0 + 47 * H,
            "rows": 48,
        }
    ]


# --- spot, perp and mark series are kept apart (item 2) -------------------------------------


def stored_markets(db_file: Path) -> set[tuple[str, str, str, str, int]]:
    """Return (exchange, market, symbol, timeframe, rows) of every stored series."""

    async def read() -> set[tuple[str, str, str, str, int]]:
        storage = open_storage(f"sqlite+aiosqlite:///{db_file}")
        await storage.start()
        try:
            return {
                (s.exchange, s.market.value, s.symbol, s.timeframe, s.rows)
                for s in await storage.candles.list_series()
            }
        finally:
            await storage.stop()

    return asyncio.run(read())


def shifted(series: CandleSeries, factor: float) -> CandleSeries:
    """Return ``series`` with every price scaled (the same candles on another market)."""
    return series.scaled(factor)


def write_feather(path: Path, series: CandleSeries) -> Path:
    date = pa.array(series.ts_ms, pa.timestamp("ms", tz="UTC"))
    cols = {c: pa.array(getattr(series, c)) for c in ("open", "high", "low", "close", "volume")}
    pa_feather.write_feather(pa.table({"date": date, **cols}), path)
    return path


def test_spot_and_futures_files_of_one_symbol_are_two_series(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "futures").mkdir()
    spot = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 48))
    perp = write_csv(
        tmp_path / "futures" / "BTC_USDT-1h.csv", shifted(candles("BTC/USDT", 40), 1.001)
    )

    first = cli("data", "import", str(spot))
    second = cli("data", "import", str(perp))

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert f"{perp}: 40 candles -> binance perp" in flat(second.stdout)
    assert stored_markets(cli.db_file) == {
        ("binance", "spot", "BTC/USDT", "1h", 48),
        ("binance", "perp", "BTC/USDT", "1h", 40),
    }


def test_freqtrade_futures_and_mark_files_do_not_overwrite_each_other(
    cli: Cli, tmp_path: Path
) -> None:
    futures = candles("BTC/USDT", 30)
    mark = CandleSeries.from_columns(
        "BTC/USDT", "1h", futures.ts_ms, futures.open, futures.high, futures.low,
        futures.close, np.zeros(len(futures)),
    )  # fmt: skip
    folder = tmp_path / "futures"
    folder.mkdir()
    f_path = write_feather(folder / "BTC_USDT_USDT-1h-futures.feather", futures)
    m_path = write_feather(folder / "BTC_USDT_USDT-1h-mark.feather", mark)

    result = cli("data", "import", str(f_path), str(m_path))

    assert result.exit_code == 0, result.output
    assert stored_markets(cli.db_file) == {
        ("binance", "perp", "BTC/USDT", "1h", 30),
        ("binance", "mark", "BTC/USDT", "1h", 30),
    }
    listed = cli("data", "list", "--json")
    assert [(s["market"], s["symbol"]) for s in json.loads(listed.stdout)] == [
        ("mark", "BTC/USDT"),
        ("perp", "BTC/USDT"),
    ]


def test_conflicting_candles_are_reported_and_refused_unless_replace(
    cli: Cli, tmp_path: Path
) -> None:
    original = candles("BTC/USDT", 48)
    first = write_csv(tmp_path / "BTC_USDT-1h.csv", original)
    assert cli("data", "import", str(first)).exit_code == 0
    again = cli("data", "import", str(first))  # the same candles: nothing to report
    assert again.exit_code == 0, again.output
    other = tmp_path / "other"
    other.mkdir()
    changed = write_csv(
        other / "BTC_USDT-1h.csv", shifted(candles("BTC/USDT", 48), 1.01).slice(10, 40)
    )

    refused = cli("data", "import", str(changed))
    listed_after_refusal = stored_markets(cli.db_file)
    market_hint = cli("data", "import", "--market", "perp", str(changed))
    replaced = cli("data", "import", "--replace", str(changed))

    assert refused.exit_code == 2
    message = flat(refused.stderr)
    assert f"{changed}: 30 candles differ from those stored (or in an earlier file) for" in message
    assert "for binance spot BTC/USDT 1h" in message
    assert "BTC/USDT 1h, the first at 2024-01-01T10:00:00Z" in message
    assert "Nothing was written. Pass --replace to overwrite them" in message
    assert listed_after_refusal == {("binance", "spot", "BTC/USDT", "1h", 48)}
    assert market_hint.exit_code == 0, market_hint.output  # another series: no conflict
    assert replaced.exit_code == 0, replaced.output
    assert "30 candles -> binance spot, replacing 30 that differed" in flat(replaced.stdout)
    assert stored_markets(cli.db_file) == {
        ("binance", "spot", "BTC/USDT", "1h", 48),
        ("binance", "perp", "BTC/USDT", "1h", 30),
    }


def test_two_files_of_one_series_that_disagree_are_refused(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_csv(tmp_path / "a" / "BTC_USDT-1h.csv", candles("BTC/USDT", 20))
    b = write_csv(tmp_path / "b" / "BTC_USDT-1h.csv", shifted(candles("BTC/USDT", 20), 1.01))

    result = cli("data", "import", str(a), str(b))

    assert result.exit_code == 2
    assert f"{b}: 20 candles differ" in flat(result.stderr)
    assert not stored_markets(cli.db_file)


def test_backtest_from_the_database_runs_on_the_configured_market(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "futures").mkdir()
    spot = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 300))
    perp = write_csv(tmp_path / "futures" / "BTC_USDT-1h.csv", candles("BTC/USDT", 260, seed=9))
    assert cli("data", "import", str(spot), str(perp)).exit_code == 0
    env = {"QT__TRADING__SYMBOLS": '["BTC/USDT"]', "QT__TRADING__TIMEFRAME": "1h"}

    on_spot = cli("backtest", "--no-charts", "--name", "spot", **env)
    on_perp = cli(
        "backtest", "--no-charts", "--name", "perp", **env, QT__EXCHANGE__MARKET_TYPE="perp"
    )

    assert on_spot.exit_code == 0, on_spot.output
    assert "300 candles," in flat(on_spot.stdout)
    assert on_perp.exit_code == 0, on_perp.output
    assert "260 candles," in flat(on_perp.stdout)


def test_backtest_refuses_mark_candles_and_notes_another_market(cli: Cli, tmp_path: Path) -> None:
    mark = write_feather(tmp_path / "BTC_USDT_USDT-1h-mark.feather", candles("BTC/USDT", 200))
    perp = write_feather(tmp_path / "BTC_USDT_USDT-1h-futures.feather", candles("BTC/USDT", 200))

    refused = cli("backtest", "--no-charts", "--data", str(mark))
    noted = cli("backtest", "--no-charts", "--data", str(perp))

    assert refused.exit_code == 2
    assert "holds mark-price candles" in flat(refused.stderr)
    assert noted.exit_code == 0, noted.output
    assert "holds perp candles; the backtest trades spot" in flat(noted.stdout)


def test_download_stores_the_configured_market_series(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spot = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 24))
    assert cli("data", "import", str(spot)).exit_code == 0
    with fake_binance_in_a_thread({"BTCUSDT": candles("BTC/USDT", 48)}) as fake:

        def market_data(settings: object, exchange_name: str) -> CcxtMarketData:
            exchange = make_ccxt_exchange(exchange_name, timeout_s=5)
            exchange.enableRateLimit = False
            point_ccxt_at(exchange, fake.base_url)
            set_minimal_markets(exchange)
            return CcxtMarketData(exchange)

        monkeypatch.setattr(cli_data, "make_market_data", market_data)
        args = ["--symbols", "BTC/USDT", "--timeframe", "1h", "--since", "2024-01-01"]
        result = cli(
            "data", "download", *args, "--until", "2024-01-03", QT__EXCHANGE__MARKET_TYPE="perp"
        )

    assert result.exit_code == 0, result.output
    # Nothing of the spot series counts as stored: all 48 perp candles are fetched.
    assert "BTC/USDT: 48 candles written" in result.stdout
    assert stored_markets(cli.db_file) == {
        ("binance", "spot", "BTC/USDT", "1h", 24),
        ("binance", "perp", "BTC/USDT", "1h", 48),
    }


# --- funding: Freqtrade's files pair with its futures candles (item 10) ----------------------


@pytest.mark.parametrize("funding_format", ["csv", "feather"])
def test_freqtrade_funding_rates_pair_with_freqtrade_futures_candles(
    cli: Cli, tmp_path: Path, funding_format: str
) -> None:
    folder = tmp_path / "futures"
    folder.mkdir()
    series = candles("BTC/USDT", 1500, seed=7)
    data = write_feather(folder / "BTC_USDT_USDT-1h-futures.feather", series)
    times = [T0 + k * 8 * H for k in range(1, 1500 // 8)]
    funding = folder / f"BTC_USDT_USDT-8h-funding_rate.{funding_format}"
    if funding_format == "csv":
        funding.write_text("timestamp,funding_rate\n" + "".join(f"{t},0.0001\n" for t in times))
    else:  # as Freqtrade writes it: candle columns, the rate in "open"
        rates = pa.array([0.0001] * len(times))
        pa_feather.write_feather(
            pa.table(
                {
                    "date": pa.array(times, pa.timestamp("ms", tz="UTC")),
                    **dict.fromkeys(("open", "high", "low", "close"), rates),
                    "volume": pa.array([0.0] * len(times)),
                }
            ),
            funding,
        )

    result = cli(
        "backtest", "--data", str(data), "--funding", str(funding), "--no-charts", "--name", "f",
        QT__EXCHANGE__MARKET_TYPE="perp",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "Funding settled" in flat(result.stdout)
    report = json.loads((cli.data_dir / "backtests" / "backtest-f.json").read_text())
    assert report["assumptions"]["funding"].startswith("modelled for BTC/USDT")


# --- per pair: pairs without trades are listed (item 11) ------------------------------------


def test_the_report_lists_a_pair_that_never_traded(cli: Cli, tmp_path: Path) -> None:
    traded = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 1500, seed=7))
    flat_prices = candles("ETH/USDT", 1500)
    still = CandleSeries.from_columns(
        "ETH/USDT", "1h", flat_prices.ts_ms, *([np.full(1500, 100.0)] * 4), flat_prices.volume
    )  # a price that never moves never crosses: no trades
    idle = write_csv(tmp_path / "ETH_USDT-1h.csv", still)

    result = cli(
        "backtest", "--data", str(traded), "--data", str(idle), "--no-charts", "--name", "pp"
    )

    assert result.exit_code == 0, result.output
    report = json.loads((cli.data_dir / "backtests" / "backtest-pp.json").read_text())
    rows = {r["symbol"]: r for r in report["metrics"]["per_pair"]}
    assert set(rows) == {"BTC/USDT", "ETH/USDT"}
    assert rows["ETH/USDT"]["trades"] == 0 and rows["BTC/USDT"]["trades"] > 0
    assert report["metrics"]["best_pair"] != "ETH/USDT"
