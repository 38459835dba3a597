"""``qt data download`` against a venue that, like every exchange, serves the candle still
forming as its newest row: only closed candles are stored, whatever ``--until`` says, and a
partial candle an earlier version stored is replaced by the venue's final one."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bot import cli_data
from core.domain.market import CandleSeries
from tests.integration.test_cli import Cli, H, flat
from tests.integration.test_cli import cli as cli  # the fixture, re-exported for pytest


class FormingVenue:
    """Hourly candles up to now, all closing at 100 except the one still forming."""

    def __init__(self, forming_close: float) -> None:
        self.forming_close = forming_close

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None, limit: int
    ) -> CandleSeries:
        now = int(time.time() * 1000)
        current = now - now % H  # open time of the candle still forming
        start = current - 10 * H if since_ms is None else max(since_ms, current - 500 * H)
        ts = np.arange(start, current + H, H, dtype=np.int64)[:limit]
        close = np.where(ts == current, self.forming_close, 100.0)
        return CandleSeries.from_columns(
            symbol, timeframe, ts, close, close + 1, close - 1, close, np.ones(len(ts))
        )

    async def close(self) -> None:
        """Nothing to release."""


def download(cli: Cli, monkeypatch: pytest.MonkeyPatch, venue: FormingVenue, until: str) -> str:
    monkeypatch.setattr(cli_data, "make_market_data", lambda settings, name: venue)
    since = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    result = cli(
        "data", "download", "--symbols", "BTC/USDT", "--timeframe", "1h",
        "--since", since, "--until", until,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return flat(result.stdout)


def stored_closes(cli: Cli) -> dict[int, float]:
    with sqlite3.connect(cli.db_file) as db:
        return dict(db.execute("SELECT ts_ms, close FROM candles ORDER BY ts_ms").fetchall())


def test_until_tomorrow_stores_no_candle_still_forming(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")

    download(cli, monkeypatch, FormingVenue(forming_close=101.0), tomorrow)

    now = int(time.time() * 1000)
    closes = stored_closes(cli)
    assert closes, "the closed candles are stored"
    assert max(closes) + H <= now  # every stored candle had closed
    assert set(closes.values()) == {100.0}


def test_a_partial_candle_stored_by_an_earlier_version_is_replaced(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    download(cli, monkeypatch, FormingVenue(forming_close=101.0), tomorrow)
    # As the previous version left it an hour ago: its newest candle stored while it formed.
    partial = max(stored_closes(cli)) - H
    with sqlite3.connect(cli.db_file) as db:
        db.execute("UPDATE candles SET close = 101.0, high = 102.0 WHERE ts_ms = ?", (partial,))
        db.execute("DELETE FROM candles WHERE ts_ms > ?", (partial,))

    out = download(cli, monkeypatch, FormingVenue(forming_close=999.0), tomorrow)

    closes = stored_closes(cli)
    assert closes[partial] == 100.0  # the venue's final candle, not the partial one
    assert set(closes.values()) == {100.0}
    assert "BTC/USDT: 2 candles written" in out  # the partial one and the one after it
