"""The composition of each mode: which venue, network and storage names it uses."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as pa_feather
import pytest

from bot.modes import build_run, demo_market
from core.config import Settings, load_settings
from core.errors import DataError, OperationalError
from core.market.synthetic import generate_candles

LIVE = {
    "QT__TRADING__MODE": "live",
    "QT__EXCHANGE__MARKET_TYPE": "perp",
    "QT__EXCHANGE__API_KEY": "k" * 16,
    "QT__EXCHANGE__API_SECRET": "s" * 16,
    "QT__TRADING__LIVE_CONFIRMATION": "I accept real-money risk",
}


def settings_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """Return settings from defaults plus ``env``, ignoring the caller's environment."""
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(app={"data_dir": str(tmp_path / "ud")})


@pytest.mark.parametrize(
    ("env", "host"),
    [
        ({}, "//api.binance.com"),
        ({"QT__EXCHANGE__SANDBOX": "true"}, "testnet"),
        (LIVE, "//api.binance.com"),
        ({**LIVE, "QT__EXCHANGE__SANDBOX": "true"}, "testnet"),
    ],
)
async def test_run_reads_candles_from_the_network_its_orders_go_to(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], host: str
) -> None:
    # Offline (the test guard refuses the connection), the first candle request names its host:
    # with the sandbox on, candles must come from the testnet the orders go to, never from
    # production prices.
    settings = settings_with(monkeypatch, tmp_path, **env)
    with pytest.raises(OperationalError, match=rf"cannot reach binance.*{host}"):
        await build_run(settings)


class QuietVenue:
    """Public market data that answers the start-up check and nothing else."""

    async def fetch_ohlcv(self, *_args: object) -> list[list[float]]:
        return []

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(("sandbox", "source"), [("false", "binance"), ("true", "binance-sandbox")])
async def test_testnet_candles_are_stored_apart_from_the_markets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: str, source: str
) -> None:
    # A paper `qt run` shares its database with `qt data download`: testnet prices stored as
    # "binance" would end up in backtests of the real market.
    settings = settings_with(monkeypatch, tmp_path, QT__EXCHANGE__SANDBOX=sandbox)
    process = await build_run(settings, market_data=QuietVenue())  # type: ignore[arg-type]
    try:
        assert process.parts.source == source
    finally:
        for part in process.parts.extra:  # built, never run: its database lock goes too
            await part.stop()


def write_feather(path: Path, n: int = 120) -> Path:
    series = generate_candles("BTC/USDT", "1h", n, seed=4, start_ms=1_704_067_200_000)
    cols = {c: pa.array(getattr(series, c)) for c in ("open", "high", "low", "close", "volume")}
    date = pa.array(series.ts_ms, pa.timestamp("ms", tz="UTC"))
    pa_feather.write_feather(pa.table({"date": date, **cols}), path)
    return path


def test_the_demo_refuses_mark_price_candles_as_the_backtest_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mark = write_feather(tmp_path / "BTC_USDT_USDT-1h-mark.feather")
    settings = settings_with(
        monkeypatch, tmp_path, QT__DEMO__DATA_FILE=str(mark), QT__DEMO__HISTORY_CANDLES="60"
    )
    with pytest.raises(DataError, match="holds mark-price candles"):
        demo_market(settings)


def test_the_demo_notes_a_file_of_the_other_market(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spot = write_feather(tmp_path / "BTC_USDT-1h.feather")
    settings = settings_with(
        monkeypatch,
        tmp_path,
        QT__DEMO__DATA_FILE=str(spot),
        QT__DEMO__HISTORY_CANDLES="60",
        QT__EXCHANGE__MARKET_TYPE="perp",
    )
    with caplog.at_level(logging.WARNING, logger="bot.modes"):
        markets, _ = demo_market(settings)
    assert list(markets) == ["BTC/USDT"]
    assert f"{spot} holds spot candles; the demo trades perp" in caplog.text
