"""A fake Binance REST server on 127.0.0.1 for ccxt integration tests.

It serves ``GET /api/v3/klines`` from in-memory candle series, honours ``startTime``,
``endTime`` and ``limit`` (capped at ``page_limit``), records every request, and can be told to
answer with error statuses (429, 500 ...) to exercise retries and interrupted downloads.

Point a ``ccxt.async_support.binance`` at it with :func:`point_ccxt_at` and load markets
offline with :func:`set_minimal_markets`.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from typing import Any, Self

import numpy as np
from aiohttp import web

from core.domain.market import CandleSeries, timeframe_to_ms


class FakeBinance:
    """Serve klines of ``series_by_id`` (keyed by market id, e.g. ``BTCUSDT``)."""

    def __init__(self, series_by_id: dict[str, CandleSeries], *, page_limit: int = 1000) -> None:
        self.series_by_id = series_by_id
        self.page_limit = page_limit
        self.requests: list[dict[str, str]] = []
        self.served_pages = 0
        self._errors: deque[int] = deque()
        self.fail_after_pages: int | None = None  # answer 500 once this many pages were served
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def fail_next(self, statuses: Iterable[int]) -> None:
        """Answer the next requests with these HTTP statuses, one each, in order."""
        self._errors.extend(statuses)

    async def start(self) -> str:
        """Start listening on a free loopback port; return the base URL."""
        app = web.Application()
        app.router.add_get("/api/v3/klines", self._klines)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _klines(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append(query)
        if self._errors:
            status = self._errors.popleft()
            return _error(status)
        if self.fail_after_pages is not None and self.served_pages >= self.fail_after_pages:
            return _error(500)
        series = self.series_by_id.get(query.get("symbol", ""))
        if series is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        tf_ms = timeframe_to_ms(query.get("interval", series.timeframe))
        limit = min(int(query.get("limit", 500)), self.page_limit)
        start = int(query.get("startTime", 0))
        end = int(query["endTime"]) if "endTime" in query else None
        lo = int(np.searchsorted(series.ts_ms, start, "left"))
        hi = len(series) if end is None else int(np.searchsorted(series.ts_ms, end, "right"))
        hi = min(hi, lo + limit)
        self.served_pages += 1
        rows = [_kline(series, i, tf_ms) for i in range(lo, hi)]
        return web.Response(text=json.dumps(rows), content_type="application/json")


def _kline(series: CandleSeries, i: int, tf_ms: int) -> list[Any]:
    ts = int(series.ts_ms[i])
    # repr() of a float round-trips exactly, so stored candles can be compared with ==.
    num = [repr(float(getattr(series, c)[i])) for c in ("open", "high", "low", "close", "volume")]
    return [ts, *num, ts + tf_ms - 1, "0", 1, "0", "0", "0"]


def _error(status: int) -> web.Response:
    if status == 429:
        return web.json_response({"code": -1003, "msg": "Too many requests."}, status=status)
    return web.Response(text="Internal Server Error", status=status)  # like a proxy's 5xx


def point_ccxt_at(exchange: Any, base_url: str) -> None:
    """Rewrite every URL of a ccxt binance object to the fake server, keeping the paths."""
    api = exchange.urls["api"]
    for key, url in list(api.items()):
        if isinstance(url, str):
            path = "/" + url.split("://", 1)[1].split("/", 1)[1]
            api[key] = base_url + path


def set_minimal_markets(exchange: Any, symbols: Iterable[str] = ("BTC/USDT",)) -> None:
    """Load spot markets offline so ccxt never asks the internet for exchangeInfo."""
    markets = []
    for symbol in symbols:
        base, quote = symbol.split("/")
        markets.append(
            {
                "id": f"{base}{quote}",
                "symbol": symbol,
                "base": base,
                "quote": quote,
                "baseId": base,
                "quoteId": quote,
                "type": "spot",
                "spot": True,
                "margin": False,
                "swap": False,
                "future": False,
                "option": False,
                "contract": False,
                "linear": None,
                "inverse": None,
                "active": True,
                "precision": {"amount": 0.00001, "price": 0.01},
                "limits": {"amount": {"min": 0.00001, "max": None}},
                "info": {},
            }
        )
    exchange.set_markets(markets)
