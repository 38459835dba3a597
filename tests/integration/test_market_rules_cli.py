"""Per-symbol market rules end to end: a cheap coin's backtest, ``qt data markets``, download.

The harness (``cli``, ``write_csv``, the fake Binance) is ``test_cli``'s.
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot import cli_data
from core.domain.market import CandleSeries
from core.exchange.ccxt import CcxtMarketData, make_ccxt_exchange
from core.market.synthetic import generate_candles, on_grid
from tests.fakes_http import point_ccxt_at, set_minimal_markets
from tests.integration.test_cli import T0, Cli, fake_binance_in_a_thread, flat, write_csv
from tests.integration.test_cli import cli as cli  # the fixture, re-exported for pytest


def xrp(n: int = 1500) -> CandleSeries:
    raw = generate_candles("XRP/USDT", "1h", n, seed=7, start_ms=T0, start_price=0.62)
    return on_grid(raw, tick=0.0001, step=0.1)


def test_a_cheap_coins_backtest_with_default_settings_runs_on_rules_from_its_candles(
    cli: Cli, tmp_path: Path
) -> None:
    # The crash: XRP/USDT 1h with the default tick 0.01 ended in a ValueError from the
    # Exit Brain (TP2 rounds to 0.62, not beyond TP1 0.62).
    data = write_csv(tmp_path / "XRP_USDT-1h.csv", xrp())
    result = cli("backtest", "--data", str(data), "--no-charts", "--name", "x")
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "Traceback" not in result.output
    assert (
        "market rules XRP/USDT: tick 0.0001, step 0.1, minimums 0.1 / 5 quote: inferred "
        "(from the last 1000 candles); set QT__MARKET__SYMBOLS to override" in out
    )
    report = json.loads((cli.data_dir / "backtests" / "backtest-x.json").read_text())
    assert report["trades"], "the strategy trades the cheap coin"
    for trade in report["trades"]:
        assert D(trade["amount"]) % D("0.1") == 0


def test_an_override_in_settings_wins_over_the_candles_and_is_shown(
    cli: Cli, tmp_path: Path
) -> None:
    data = write_csv(tmp_path / "XRP_USDT-1h.csv", xrp(300))
    env = {"QT__MARKET__SYMBOLS": '{"XRP/USDT": {"amount_step": "1", "min_amount": "1"}}'}
    shown = cli("data", "markets", "--data", str(data), "--json", **env)
    assert shown.exit_code == 0, shown.output
    rows = {r["symbol"]: r for r in json.loads(shown.stdout)}
    assert rows["XRP/USDT"] == {
        "symbol": "XRP/USDT",
        "price_tick": "0.0001",
        "amount_step": "1",
        "min_amount": "1",
        "min_notional": "5",
        "max_leverage": None,
        "source": "settings",
        "note": "price_tick, min_notional: inferred",
    }
    assert rows["BTC/USDT"]["source"] == "default"  # configured, nothing known of it
    assert not cli.db_file.exists()  # looking did not create the database


def test_download_stores_the_venues_rules_and_markets_shows_them_as_stored(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    series = generate_candles("BTC/USDT", "1h", 30, seed=3, start_ms=T0, start_price=100.0)
    with fake_binance_in_a_thread({"BTCUSDT": series}) as fake:

        def market_data(settings: object, exchange_name: str) -> CcxtMarketData:
            exchange = make_ccxt_exchange(exchange_name, timeout_s=5)
            exchange.enableRateLimit = False
            point_ccxt_at(exchange, fake.base_url)
            set_minimal_markets(exchange)  # precision: amount 0.00001, price 0.01
            return CcxtMarketData(exchange)

        monkeypatch.setattr(cli_data, "make_market_data", market_data)
        args = ["--symbols", "BTC/USDT", "--timeframe", "1h", "--since", "2024-01-01"]
        downloaded = cli("data", "download", *args, "--until", "2024-01-02")
        refetched = cli("data", "markets", "--fetch", "--symbols", "BTC/USDT")
    assert downloaded.exit_code == 0, downloaded.output
    assert "market rules of BTC/USDT stored (binance spot)" in flat(downloaded.stdout)

    shown = cli("data", "markets")
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.stdout.splitlines() if "BTC/USDT" in x)
    assert "0.01" in line and "0.00001" in line and "stored (binance," in line
    eth = next(x for x in shown.stdout.splitlines() if "ETH/USDT" in x)
    assert "default" in eth
    assert refetched.exit_code == 0, refetched.output
    assert "market rules of BTC/USDT stored (binance spot)" in flat(refetched.stdout)


def test_markets_refuses_two_files_of_one_symbol_as_the_backtest_does(
    cli: Cli, tmp_path: Path
) -> None:
    a = write_csv(tmp_path / "XRP_USDT-1h.csv", xrp(50))
    (tmp_path / "futures").mkdir()
    b = write_csv(tmp_path / "futures" / "XRP_USDT-1h.csv", xrp(50))
    shown = cli("data", "markets", "--data", str(a), "--data", str(b))
    assert shown.exit_code != 0
    assert "two candle files for XRP/USDT" in flat(shown.output)
