"""The chaos harness's venue: a fake Binance USD-M futures exchange as its own process.

It extends :class:`tests.fakes_fapi.FakeFapi` (the same endpoints the real ``ccxt.binance``
calls for linear perps) into a venue that owns the truth, of one or several symbols (one
account, one wallet; each symbol its own candles, all on the same candle times):

- Market time. ``now = start_ms + (wall_ms - anchor_wall_ms) * speed``: the harness gives the
  venue and every incarnation of the bot the same three numbers, so both map a wall instant to
  the same market instant whatever restarts happen (the bot's ``AcceleratedClock`` starts at
  the market time of its own launch). Candles do not depend on timing: they are
  ``core.market.synthetic`` candles of a fixed seed, and the venue steps through them one at a
  time as market time passes their close. What timing decides is only on which candle a
  request lands; at the speeds used the bot acts on a candle within a few wall ms of its close,
  a candle lasts 250 ms or more.
- Klines (``/fapi/v1/klines``, by ``symbol``) of the candles closed by now: the bot's feed and
  the venue's fills see the same prices.
- Fills. A market order fills at once at the open of the forming candle. At each candle's
  close, waiting orders are matched against its range, stops first (the pessimistic order):
  a stop-market whose trigger the range crossed fills at the trigger (at the open when the
  candle opened past it); a limit fills at its price when the range reached it. Reduce-only
  orders never add exposure: one that would is expired, one larger than the position fills
  the position. Commission at the account's rates; the wallet takes realized pnl and fees.
- Persistence. Orders, algo orders, trades, positions, the wallet and the counters are written
  to ``--state`` (JSON, write then rename: never half written) after every change.
- Naked time. Whenever a position is open without a reduce-only stop of its symbol covering
  its size, the venue counts how long (market and wall ms), per symbol, apart from the spans
  the harness marked as the bot being down (``POST /chaos/down``, until the restarted bot
  first asks for positions).
  ``POST /chaos/control {"freeze": true}`` stops matching waiting orders (the final comparison).
- Open positions. After every fill the venue counts the symbols holding a position and keeps
  the most it ever held at once (and when): the bot's position limit must hold at the venue.
- A stale feed. ``POST /chaos/control {"feed": false}`` stops the klines at the candles closed
  by then (the venue still matches orders and fills on the candles that close meanwhile);
  ``{"feed": true}`` serves every closed candle again.
- Faults (``--fault-rate``, seeded by ``--fault-seed``) on the signed endpoints: a timeout
  after carrying the request out, 429 with Retry-After, 503, a malformed (cut) answer after
  carrying it out, and an order silently dropped (answered as accepted, never booked).

Run: ``python -m tests.chaos_venue --port 0 --state venue.json --symbols BTC/USDT,ETH/USDT
--start-ms ... --speed ...``;
it prints ``listening <url>`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from core.domain.market import CandleSeries, timeframe_to_ms
from core.market.synthetic import generate_candles
from tests.fakes_fapi import _OPEN, FakeFapi, _error, _json
from tests.fakes_http import _kline

FAULT_KINDS = ("timeout", "429", "5xx", "malformed", "drop")
_ORDER_POSTS = {"/fapi/v1/order", "/fapi/v1/algoOrder"}
HISTORY_CANDLES = 2_100  # before the start: the bot's warm-up takes 2,000
# The symbols a session trades, in this order (``--symbols N`` takes the first N), and where
# each one's synthetic prices start (about where the real ones stood).
CHAOS_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")
START_PRICES = {"BTC/USDT": 42_000.0, "ETH/USDT": 2_400.0, "SOL/USDT": 95.0, "BNB/USDT": 310.0}


def market_id(symbol: str) -> str:
    """Return the venue's id of our ``symbol`` (``BTCUSDT``)."""
    return symbol.replace("/", "")


def chaos_candles(
    symbol: str, timeframe: str, start_ms: int, replay: int, seed: int
) -> CandleSeries:
    """Return the session's candles: ``HISTORY_CANDLES`` before ``start_ms``, ``replay`` after
    (each symbol its own path: the generator seeds on the symbol too)."""
    tf_ms = timeframe_to_ms(timeframe)
    return generate_candles(
        symbol,
        timeframe,
        HISTORY_CANDLES + replay,
        seed=seed,
        start_ms=start_ms - HISTORY_CANDLES * tf_ms,
        start_price=START_PRICES.get(symbol, 100.0),
    )


class ChaosVenue(FakeFapi):
    """A fake USD-M venue on replayed candles, persisted, with injected faults."""

    def __init__(
        self,
        series: Sequence[CandleSeries],
        *,
        start_ms: int,
        anchor_wall_ms: int,
        speed: float,
        state_path: Path,
        fault_rate: float = 0.0,
        fault_seed: int = 0,
        timeout_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.frozen = False
        self.feed_until: int | None = None  # the klines end here while the feed is stopped
        self._dirty = False  # a change a GET made (the bot up again): saved with it
        # By market id; every symbol's candles open at the same times.
        self.series = {market_id(s.symbol): s for s in series}
        first = series[0]
        if any(not np.array_equal(s.ts_ms, first.ts_ms) for s in series):
            raise ValueError("the symbols' candles must open at the same times")
        self.ts_ms = first.ts_ms
        self.tf_ms = timeframe_to_ms(first.timeframe)
        self.prices: dict[str, Decimal] = {}  # where a market order of a symbol fills now
        self.start_ms, self.anchor_wall_ms, self.speed = start_ms, anchor_wall_ms, speed
        self.state_path = state_path
        self.fault_rate = fault_rate
        self._rng = random.Random(fault_seed)
        self.timeout_s = timeout_s
        self.max_leverage = dict.fromkeys(self.series, 125)
        self.entry_price: dict[str, Decimal] = {}
        self.realized = Decimal(0)
        self.fees = Decimal(0)
        self.faults: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self.dropped: list[str] = []  # client ids of orders answered as accepted, never booked
        self.calls = 0
        self.down = False
        self.down_spans: list[tuple[int, int]] = []  # wall ms the bot was down
        self._down_since = 0
        self.naked_since: dict[str, tuple[int, int]] = {}  # by market id: (market ms, wall ms)
        self.naked_spans: list[dict[str, Any]] = []
        # The most symbols holding a position at once, and the market time it first happened.
        self.max_open: dict[str, Any] = {"count": 0, "at_ms": 0, "symbols": []}
        # The next candle to match waiting orders against: the first one closing after now.
        self.cursor = int(self._index_at(self.now_ms()))
        self._set_prices()

    # --- time and prices ----------------------------------------------------------------------

    def now_ms(self) -> int:
        wall = time.time_ns() // 1_000_000
        return self.start_ms + int((wall - self.anchor_wall_ms) * self.speed)

    def _index_at(self, ts_ms: int) -> int:
        """Return the index of the candle forming at ``ts_ms`` (len: past the last one)."""
        first = int(self.ts_ms[0])
        return max(0, min(len(self.ts_ms), (ts_ms - first) // self.tf_ms))

    def _set_prices(self) -> None:
        """Every symbol's price now: the open of the forming candle."""
        i = min(self.cursor, len(self.ts_ms) - 1)
        for mid, s in self.series.items():
            self.prices[mid] = Decimal(repr(float(s.open[i])))

    def _advance(self) -> bool:
        """Match waiting orders against every candle closed since the last call."""
        changed = False
        closed = self._index_at(self.now_ms())
        while self.cursor < closed:
            if not self.frozen:
                changed |= self._match(self.cursor)
            self.cursor += 1
        self._set_prices()
        return changed

    def _match(self, i: int) -> bool:
        changed = False
        for mid in self.series:
            changed |= self._match_symbol(mid, i)
        return changed

    def _match_symbol(self, mid: str, i: int) -> bool:
        s = self.series[mid]
        low, high = Decimal(repr(float(s.low[i]))), Decimal(repr(float(s.high[i])))
        opened = Decimal(repr(float(s.open[i])))
        changed = False
        for a in [a for a in self.algos.values() if a["algoStatus"] == "NEW"]:
            if a["symbol"] != mid:
                continue
            trigger = Decimal(a["triggerPrice"])
            hit = low <= trigger if a["side"] == "SELL" else high >= trigger
            if not hit:
                continue
            gapped = opened < trigger if a["side"] == "SELL" else opened > trigger
            self.trigger(a["clientAlgoId"], str(opened if gapped else trigger))
            changed = True
        for o in [o for o in self.orders.values() if o["status"] in _OPEN]:
            if o["type"] != "LIMIT" or o["symbol"] != mid:
                continue
            price = Decimal(o["price"])
            if (o["side"] == "SELL" and high >= price) or (o["side"] == "BUY" and low <= price):
                left = Decimal(o["origQty"]) - Decimal(o["executedQty"])
                self._fill(o, left, price, maker=True)
                changed = True
        return changed

    # --- the book: reduce-only, pnl, fills of triggered stops named by their algo ------------

    def _fill(self, o: dict[str, Any], qty: Decimal, price: Decimal, *, maker: bool) -> None:
        symbol = o["symbol"]
        held = self.position.get(symbol, Decimal(0))
        sign = 1 if o["side"] == "BUY" else -1
        if o.get("reduceOnly"):
            reducible = -held * sign  # > 0: this side reduces the position by that much
            if reducible <= 0:
                o.update(status="EXPIRED", updateTime=self._now())
                return
            qty = min(qty, reducible)
        before = len(self.trades)
        super()._fill(o, qty, price, maker=maker)
        trade = self.trades[before:][0]
        self.fees += Decimal(trade["commission"])
        if o.get("reduceOnly") and Decimal(o["executedQty"]) < Decimal(o["origQty"]):
            o.update(status="EXPIRED")  # the position is gone: the rest cannot reduce
        entry = self.entry_price.get(symbol, Decimal(0))
        if held == 0 or (held > 0) == (sign > 0):  # opening or adding
            new = held + sign * qty
            self.entry_price[symbol] = (abs(held) * entry + qty * price) / abs(new)
        else:
            closed = min(qty, abs(held))
            pnl = closed * (price - entry) * (1 if held > 0 else -1)
            self.realized += pnl
            trade["realizedPnl"] = str(pnl)
            left = held + sign * qty
            if left == 0:
                self.entry_price.pop(symbol, None)
            elif (left > 0) != (held > 0):  # reversed through zero
                self.entry_price[symbol] = price
        self.wallet = Decimal(10_000) + self.realized - self.fees
        self._count_open()

    def _count_open(self) -> None:
        held = sorted(mid for mid, amount in self.position.items() if amount)
        if len(held) > self.max_open["count"]:
            self.max_open = {"count": len(held), "at_ms": self.now_ms(), "symbols": held}

    def _get_positionRisk(self, p: dict[str, str]) -> Any:
        if self.down:  # the restarted bot reads its book: it is up again from here
            wall = time.time_ns() // 1_000_000
            self.down_spans.append((self._down_since, wall))
            self.down = False
            self._dirty = True
        rows = []
        for mid, amount in self.position.items():
            if not amount:
                continue
            price = self.prices[mid]
            rows.append(
                {
                    "symbol": mid,
                    "positionSide": "BOTH",
                    "positionAmt": str(amount),
                    "entryPrice": str(self.entry_price.get(mid, price)),
                    "markPrice": str(price),
                    "unRealizedProfit": "0",
                    "notional": str(amount * price),
                    "updateTime": self._now(),
                }
            )
        return rows

    def _now(self) -> int:
        return self.now_ms()

    def _covered(self, mid: str) -> bool:
        held = self.position.get(mid, Decimal(0))
        if held == 0:
            return True
        side = "SELL" if held > 0 else "BUY"
        cover = sum(
            (
                Decimal(a["quantity"])
                for a in self.algos.values()
                if a["algoStatus"] == "NEW"
                and a["reduceOnly"]
                and a["side"] == side
                and a["symbol"] == mid
            ),
            Decimal(0),
        )
        return cover >= abs(held)

    def _watch_naked(self) -> None:
        market, wall = self.now_ms(), time.time_ns() // 1_000_000
        for mid in self.series:
            since = self.naked_since.get(mid)
            if self._covered(mid):
                if since is not None:
                    m0, w0 = since
                    self.naked_spans.append(
                        {
                            "symbol": mid,
                            "market_ms": market - m0,
                            "wall_ms": wall - w0,
                            "from_wall": w0,
                            "to_wall": wall,
                        }
                    )
                    del self.naked_since[mid]
            elif since is None:
                self.naked_since[mid] = (market, wall)

    # --- HTTP ---------------------------------------------------------------------------------

    async def start_on(self, port: int) -> str:
        app = web.Application()
        for path in (
            "/fapi/v1/order",
            "/fapi/v1/openOrders",
            "/fapi/v1/algoOrder",
            "/fapi/v1/openAlgoOrders",
            "/fapi/v1/userTrades",
            "/fapi/v1/leverage",
            "/fapi/v1/leverageBracket",
            "/fapi/v3/account",
            "/fapi/v3/positionRisk",
        ):
            app.router.add_route("*", path, self._chaos_handle)
        app.router.add_get("/fapi/v1/klines", self._klines)
        app.router.add_post("/chaos/control", self._control)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        host, bound = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{bound}"
        self.save()
        return self.base_url

    async def _chaos_handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        changed = self._advance()
        kind = None
        if self.fault_rate and self._rng.random() < self.fault_rate:
            kind = self._rng.choice(FAULT_KINDS)
            if kind == "drop" and (request.method, request.path) not in {
                ("POST", p) for p in _ORDER_POSTS
            }:
                kind = "5xx"
            self.faults[kind] += 1
        if kind == "429":
            body = json.dumps({"code": -1003, "msg": "Too many requests; retry later."})
            return web.Response(
                status=429, text=body, content_type="application/json", headers={"Retry-After": "1"}
            )
        if kind == "5xx":
            return _error(503, "")
        if kind == "drop":
            return await self._drop(request)
        answer = await self._handle(request)
        self.requests.clear()  # the base class keeps every request: not for hours of them
        if request.method != "GET" or changed or self._dirty:
            self._dirty = False
            self._watch_naked()
            self.save()
        if kind == "timeout":
            await asyncio.sleep(self.timeout_s + 0.5)  # the client has given up meanwhile
        if kind == "malformed":
            return web.Response(
                text=answer.text[: len(answer.text or "") // 2], content_type="application/json"
            )
        return answer

    async def _drop(self, request: web.Request) -> web.Response:
        """Answer an order as accepted (NEW, nothing filled) without booking it."""
        params = dict(request.query)
        if request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        if request.path.endswith("algoOrder"):
            self.dropped.append(params.get("clientAlgoId", ""))
            answer = self._post_algoOrder(params)
            if isinstance(answer, dict):
                self.algos.pop(answer["algoId"])
        else:
            self.dropped.append(params.get("newClientOrderId", ""))
            answer = self._new_order(
                symbol=params["symbol"],
                cid=params["newClientOrderId"],
                side=params["side"],
                type_=params["type"],
                qty=Decimal(params["quantity"]),
                price=Decimal(params.get("price", "0")),
                reduce_only=params.get("reduceOnly") == "true",
            )
            self.orders.pop(answer["orderId"])
        self.save()
        return answer if isinstance(answer, web.Response) else _json(answer)

    def _post_order(self, p: dict[str, str]) -> Any:
        cid = p["newClientOrderId"]
        if any(o["clientOrderId"] == cid and o["status"] in _OPEN for o in self.orders.values()):
            return _error(-4116, "ClientOrderId is duplicated.")
        o = self._new_order(
            symbol=p["symbol"],
            cid=cid,
            side=p["side"],
            type_=p["type"],
            qty=Decimal(p["quantity"]),
            price=Decimal(p.get("price", "0")),
            reduce_only=p.get("reduceOnly") == "true",
        )
        now = self.prices[p["symbol"]]
        if p["type"] == "MARKET":
            self._fill(o, Decimal(p["quantity"]), now, maker=False)
        elif p["type"] == "LIMIT":  # marketable at once: fills as taker at the price now
            price = Decimal(o["price"])
            if (o["side"] == "BUY" and price >= now) or (o["side"] == "SELL" and price <= now):
                self._fill(o, Decimal(p["quantity"]), now, maker=False)
        return o

    async def _klines(self, request: web.Request) -> web.Response:
        if self._advance():  # a stop it triggered is on disk before anyone hears of it
            self._watch_naked()
            self.save()
        q = dict(request.query)
        series = self.series.get(q.get("symbol", ""))
        if series is None:
            return _error(-1121, "Invalid symbol.")
        closed = self._index_at(self.now_ms())
        ts = series.ts_ms
        start = int(q.get("startTime", 0))
        limit = min(int(q.get("limit", 500)), 1500)
        lo = int(np.searchsorted(ts, start, "left"))
        hi = closed if self.feed_until is None else min(closed, self.feed_until)
        if "endTime" in q:
            hi = min(hi, int(np.searchsorted(ts, int(q["endTime"]), "right")))
        rows = [_kline(series, i, self.tf_ms) for i in range(lo, min(hi, lo + limit))]
        return web.Response(text=json.dumps(rows), content_type="application/json")

    async def _control(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "fault_rate" in body:
            self.fault_rate = float(body["fault_rate"])
        if body.get("freeze"):  # from here no waiting order fills on a candle (the end)
            self._advance()
            self.frozen = True
        if "feed" in body:
            self.feed_until = None if body["feed"] else self._index_at(self.now_ms())
        if body.get("down") and not self.down:  # (a start that gave up: still down since)
            self.down = True
            self._down_since = time.time_ns() // 1_000_000
        self._advance()
        self._watch_naked()
        self.save()
        return _json({"ok": True, "now_ms": self.now_ms()})

    # --- persistence --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = self.now_ms()
        naked_open = [
            {"symbol": mid, "market_ms": now - m0, "from_wall": w0}
            for mid, (m0, w0) in self.naked_since.items()
        ]
        unrealized = sum(
            (
                held * (self.prices[mid] - self.entry_price.get(mid, Decimal(0)))
                for mid, held in self.position.items()
            ),
            Decimal(0),
        )
        return {
            "now_ms": now,
            "symbols": list(self.series),
            "cursor": self.cursor,
            "prices": {k: str(v) for k, v in self.prices.items()},
            "orders": list(self.orders.values()),
            "algos": list(self.algos.values()),
            "trades": self.trades,
            "position": {k: str(v) for k, v in self.position.items()},
            "entry_price": {k: str(v) for k, v in self.entry_price.items()},
            "wallet": str(self.wallet),
            "realized": str(self.realized),
            "fees": str(self.fees),
            "equity": str(self.wallet + unrealized),
            "faults": self.faults,
            "dropped": self.dropped,
            "calls": self.calls,
            "down_spans": self.down_spans,
            "naked_spans": self.naked_spans,
            "naked_open": naked_open,
            "max_open": self.max_open,
        }

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, self.state_path)

    def load(self) -> None:
        """Resume from ``state_path`` (a venue restarted on its own file)."""
        data = json.loads(self.state_path.read_text())
        self.orders = {o["orderId"]: o for o in data["orders"]}
        self.algos = {a["algoId"]: a for a in data["algos"]}
        self.trades = data["trades"]
        self.position = {k: Decimal(v) for k, v in data["position"].items()}
        self.entry_price = {k: Decimal(v) for k, v in data["entry_price"].items()}
        self.realized, self.fees = Decimal(data["realized"]), Decimal(data["fees"])
        self.wallet = Decimal(data["wallet"])
        self.faults, self.dropped = data["faults"], data["dropped"]
        self.cursor = int(data["cursor"])
        self.naked_spans = data["naked_spans"]
        self.max_open = data["max_open"]
        self._set_prices()
        top = max([0, *self.orders, *self.algos, *(t["id"] for t in self.trades)])
        self._ids = itertools.count(top + 1)


async def _serve(args: argparse.Namespace) -> None:
    series = [
        chaos_candles(symbol, args.timeframe, args.start_ms, args.candles, args.seed)
        for symbol in args.symbols.split(",")
    ]
    venue = ChaosVenue(
        series,
        start_ms=args.start_ms,
        anchor_wall_ms=args.anchor_wall_ms,
        speed=args.speed,
        state_path=Path(args.state),
        fault_rate=args.fault_rate,
        fault_seed=args.fault_seed,
        timeout_s=args.timeout_s,
    )
    if Path(args.state).exists():
        venue.load()
    url = await venue.start_on(args.port)
    print(f"listening {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    venue._advance()
    venue._watch_naked()
    venue.save()
    with contextlib.suppress(Exception):
        await venue.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", required=True)
    parser.add_argument("--symbols", default="BTC/USDT", help="comma separated")
    parser.add_argument("--timeframe", default="1m")
    parser.add_argument("--candles", type=int, default=2_000, help="after the start")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start-ms", type=int, required=True)
    parser.add_argument("--anchor-wall-ms", type=int, required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=1.0, help="the bot's HTTP timeout")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
