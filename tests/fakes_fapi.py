"""A fake Binance USD-M futures order server on 127.0.0.1, for the real ``ccxt.binance``.

What it pins (from ccxt 4.5.90's routing and Binance's documentation, never run against the real
venue): one-way mode, one account.

- Regular orders: ``/fapi/v1/order`` (POST, GET and DELETE by ``origClientOrderId`` or
  ``orderId``), ``/fapi/v1/openOrders``. A client id is unique among *open* orders only
  (-4116 "ClientOrderId is duplicated."). Order objects carry no commission.
- Conditional (stop) orders live in the Algo Order service since Binance's 2025 migration, and
  ccxt sends every linear one there: ``/fapi/v1/algoOrder`` (POST, GET and DELETE by
  ``clientAlgoId`` or ``algoId``), ``/fapi/v1/openAlgoOrders``. A resubmitted open id answers
  -20132 "The client algo id is duplicated" (ccxt: BadRequest). A triggered stop becomes a
  regular MARKET order under a venue-made client id; the algo order then reads ``FINISHED``
  (``TRIGGERED`` while that order is working) and names it in ``actualOrderId``. The algo
  object has no fill figures of its own.
- Fills and fees: ``/fapi/v1/userTrades`` (``orderId`` filter), one trade per fill with its
  ``commission`` in USDT, at the account's rates (by default the base tier the markets state:
  taker 0.05 %, maker 0.02 %).
- Leverage caps: ``/fapi/v1/leverageBracket`` (the notional brackets; the first allows most).
- Unknown ids answer -2013 "Order does not exist." (lookups) and -2011 "Unknown order sent."
  (cancels), both OrderNotFound in ccxt.

Every request is recorded in ``requests`` as ``(method, path, params)``.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from decimal import Decimal
from typing import Any, Self

from aiohttp import web

from core.domain.enums import MarketType
from core.exchange.ccxt import make_ccxt_exchange
from tests.fakes_http import point_ccxt_at

TAKER = Decimal("0.0005")
MAKER = Decimal("0.0002")
_OPEN = ("NEW", "PARTIALLY_FILLED")
T0_MS = 1_704_067_200_000


class FakeFapi:
    """Serve the USD-M order endpoints ``ccxt.binance`` uses for linear perps."""

    def __init__(self, *, price: str = "100", taker: str = "0.0005", maker: str = "0.0002") -> None:
        self.price = Decimal(price)  # where market orders (and triggered stops) fill
        # The account's commission rates (a VIP tier pays less than the schedule in the markets).
        self.taker, self.maker = Decimal(taker), Decimal(maker)
        self.orders: dict[int, dict[str, Any]] = {}
        self.algos: dict[int, dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self.position: dict[str, Decimal] = {}  # net, by market id
        self.wallet = Decimal(10_000)  # USDT, what /fapi/v3/account states
        self.max_leverage: dict[str, int] = {"BTCUSDT": 125, "ETHUSDT": 100}  # first brackets
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._errors: deque[tuple[str, str, int, str, bool]] = deque()
        self._cuts: deque[tuple[str, str]] = deque()
        self._ids = itertools.count(1001)
        self._clock = itertools.count(T0_MS, 1000)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> str:
        """Start listening on a free loopback port; return the base URL."""
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
            app.router.add_route("*", path, self._handle)
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

    # --- what tests do ----------------------------------------------------------------------

    def fail_next(
        self, method: str, path: str, code: int, msg: str = "", *, landed: bool = False
    ) -> None:
        """Answer the next ``method path`` request with Binance error ``code`` (an HTTP status
        when positive, e.g. 503); ``landed``: carry the request out first, then fail (the
        answer to an accepted order lost on the way)."""
        self._errors.append((method, path, code, msg, landed))

    def cut_next(self, method: str, path: str) -> None:
        """Carry the next ``method path`` request out, then answer only the first half of its
        JSON (an answer cut short on the way)."""
        self._cuts.append((method, path))

    def order(self, client_order_id: str) -> dict[str, Any]:
        """Return the newest regular order with this client id."""
        return max(
            (o for o in self.orders.values() if o["clientOrderId"] == client_order_id),
            key=lambda o: o["orderId"],
        )

    def algo(self, client_algo_id: str) -> dict[str, Any]:
        """Return the newest algo order with this client id."""
        return max(
            (a for a in self.algos.values() if a["clientAlgoId"] == client_algo_id),
            key=lambda a: a["algoId"],
        )

    def open_algos(self) -> list[dict[str, Any]]:
        """Return the conditional orders still waiting for their trigger."""
        return [a for a in self.algos.values() if a["algoStatus"] == "NEW"]

    def fill(self, client_order_id: str, qty: str | None = None, price: str | None = None) -> None:
        """Fill a resting limit order (as maker), wholly or ``qty`` of it."""
        o = self.order(client_order_id)
        left = Decimal(o["origQty"]) - Decimal(o["executedQty"])
        self._fill(o, Decimal(qty) if qty else left, Decimal(price or o["price"]), maker=True)

    def trigger(self, client_algo_id: str, price: str, *, fill: bool = True) -> dict[str, Any]:
        """Trigger a stop: its market order goes to the book (filled at ``price`` unless not
        ``fill``); return that order."""
        a = self.algo(client_algo_id)
        o = self._new_order(
            symbol=a["symbol"],
            cid=f"algo{a['algoId']}",  # the venue's id, not ours
            side=a["side"],
            type_="MARKET",
            qty=Decimal(a["quantity"]),
            price=Decimal(0),
            reduce_only=a["reduceOnly"],
        )
        a.update(algoStatus="TRIGGERED", actualOrderId=str(o["orderId"]), updateTime=self._now())
        if fill:
            self._fill(o, Decimal(a["quantity"]), Decimal(price), maker=False)
            a.update(algoStatus="FINISHED", actualPrice=o["avgPrice"])
        return o

    # --- HTTP -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        params.pop("signature", None)
        self.requests.append((request.method, request.path, params))
        failure = None
        if self._errors and self._errors[0][:2] == (request.method, request.path):
            _, _, code, msg, landed = self._errors.popleft()
            failure = _error(code, msg)
            if not landed:
                return failure
        name = request.path.rsplit("/", 1)[-1]
        answer = getattr(self, f"_{request.method.lower()}_{name}")(params)
        if failure is not None:
            return failure
        if self._cuts and self._cuts[0] == (request.method, request.path):
            self._cuts.popleft()
            text = json.dumps(answer)
            return web.Response(text=text[: len(text) // 2], content_type="application/json")
        return answer if isinstance(answer, web.Response) else _json(answer)

    def _post_leverage(self, p: dict[str, str]) -> Any:
        return {
            "leverage": int(p["leverage"]),
            "maxNotionalValue": "1000000",
            "symbol": p["symbol"],
        }

    def _get_leverageBracket(self, p: dict[str, str]) -> Any:
        return [
            {
                "symbol": market_id,
                "brackets": [
                    {
                        "bracket": 1,
                        "initialLeverage": leverage,
                        "notionalCap": 50000,
                        "notionalFloor": 0,
                        "maintMarginRatio": 0.004,
                        "cum": 0.0,
                    },
                    {
                        "bracket": 2,
                        "initialLeverage": leverage // 2,
                        "notionalCap": 500000,
                        "notionalFloor": 50000,
                        "maintMarginRatio": 0.005,
                        "cum": 50.0,
                    },
                ],
            }
            for market_id, leverage in self.max_leverage.items()
            if p.get("symbol") in (None, market_id)
        ]

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
        if p["type"] == "MARKET":
            self._fill(o, Decimal(p["quantity"]), self.price, maker=False)
        return o

    def _get_order(self, p: dict[str, str]) -> Any:
        o = self._find_order(p)
        return o if o is not None else _error(-2013, "Order does not exist.")

    def _delete_order(self, p: dict[str, str]) -> Any:
        o = self._find_order(p)
        if o is None or o["status"] not in _OPEN:
            return _error(-2011, "Unknown order sent.")
        o.update(status="CANCELED", updateTime=self._now())
        return o

    def _get_openOrders(self, p: dict[str, str]) -> Any:
        return [
            o
            for o in self.orders.values()
            if o["status"] in _OPEN and p.get("symbol") in (None, o["symbol"])
        ]

    def _post_algoOrder(self, p: dict[str, str]) -> Any:
        cid = p["clientAlgoId"]
        if any(a["clientAlgoId"] == cid and a["algoStatus"] == "NEW" for a in self.algos.values()):
            return _error(-20132, "The client algo id is duplicated")
        now = self._now()
        a = {
            "algoId": next(self._ids),
            "clientAlgoId": cid,
            "algoType": p.get("algoType", "CONDITIONAL"),
            "orderType": p["type"],
            "symbol": p["symbol"],
            "side": p["side"],
            "positionSide": "BOTH",
            "timeInForce": "GTC",
            "quantity": p["quantity"],
            "algoStatus": "NEW",
            "actualOrderId": "",
            "actualPrice": "0",
            "triggerPrice": p["triggerPrice"],
            "price": "0",
            "workingType": "CONTRACT_PRICE",
            "closePosition": False,
            "priceProtect": False,
            "reduceOnly": p.get("reduceOnly") == "true",
            "createTime": now,
            "updateTime": now,
            "triggerTime": 0,
            "goodTillDate": 0,
        }
        self.algos[a["algoId"]] = a
        return a

    def _get_algoOrder(self, p: dict[str, str]) -> Any:
        a = self._find_algo(p)
        return a if a is not None else _error(-2013, "Order does not exist.")

    def _delete_algoOrder(self, p: dict[str, str]) -> Any:
        a = self._find_algo(p)
        if a is None or a["algoStatus"] != "NEW":
            return _error(-2011, "Unknown order sent.")
        a.update(algoStatus="CANCELED", updateTime=self._now())
        return {
            "algoId": a["algoId"],
            "clientAlgoId": a["clientAlgoId"],
            "code": "200",
            "msg": "success",
        }

    def _get_openAlgoOrders(self, p: dict[str, str]) -> Any:
        return [
            a
            for a in self.algos.values()
            if a["algoStatus"] == "NEW" and p.get("symbol") in (None, a["symbol"])
        ]

    def _get_account(self, _p: dict[str, str]) -> Any:
        """The USDT wallet (``wallet``; no margin in use) a keyed client checks at start."""
        usdt = str(self.wallet)
        return {
            "assets": [
                {
                    "asset": "USDT",
                    "walletBalance": usdt,
                    "availableBalance": usdt,
                    "marginBalance": usdt,
                    "initialMargin": "0",
                    "updateTime": self._now(),
                }
            ],
            "positions": [],
        }

    def _get_positionRisk(self, _p: dict[str, str]) -> Any:
        return [
            {
                "symbol": market_id,
                "positionSide": "BOTH",
                "positionAmt": str(amount),
                "entryPrice": str(self.price),
                "markPrice": str(self.price),
                "unRealizedProfit": "0",
                "notional": str(amount * self.price),
                "updateTime": self._now(),
            }
            for market_id, amount in self.position.items()
            if amount
        ]

    def _get_userTrades(self, p: dict[str, str]) -> Any:
        return [
            t
            for t in self.trades
            if t["symbol"] == p["symbol"] and p.get("orderId") in (None, str(t["orderId"]))
        ]

    # --- the book ---------------------------------------------------------------------------

    def _now(self) -> int:
        return next(self._clock)

    def _new_order(
        self,
        *,
        symbol: str,
        cid: str,
        side: str,
        type_: str,
        qty: Decimal,
        price: Decimal,
        reduce_only: bool,
    ) -> dict[str, Any]:
        now = self._now()
        o = {
            "orderId": next(self._ids),
            "symbol": symbol,
            "status": "NEW",
            "clientOrderId": cid,
            "price": str(price),
            "avgPrice": "0",
            "origQty": str(qty),
            "executedQty": "0",
            "cumQty": "0",
            "cumQuote": "0",
            "timeInForce": "GTC",
            "type": type_,
            "origType": type_,
            "reduceOnly": reduce_only,
            "closePosition": False,
            "side": side,
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "time": now,
            "updateTime": now,
        }
        self.orders[o["orderId"]] = o
        return o

    def _fill(self, o: dict[str, Any], qty: Decimal, price: Decimal, *, maker: bool) -> None:
        done = Decimal(o["executedQty"]) + qty
        cum = Decimal(o["cumQuote"]) + qty * price
        now = self._now()
        o.update(
            executedQty=str(done),
            cumQty=str(done),
            cumQuote=str(cum),
            avgPrice=str(cum / done),
            status="FILLED" if done >= Decimal(o["origQty"]) else "PARTIALLY_FILLED",
            updateTime=now,
        )
        sign = 1 if o["side"] == "BUY" else -1
        self.position[o["symbol"]] = self.position.get(o["symbol"], Decimal(0)) + sign * qty
        self.trades.append(
            {
                "buyer": o["side"] == "BUY",
                "commission": str(qty * price * (self.maker if maker else self.taker)),
                "commissionAsset": "USDT",
                "id": next(self._ids),
                "maker": maker,
                "orderId": o["orderId"],
                "price": str(price),
                "qty": str(qty),
                "quoteQty": str(qty * price),
                "realizedPnl": "0",
                "side": o["side"],
                "positionSide": "BOTH",
                "symbol": o["symbol"],
                "time": now,
            }
        )

    def _find_order(self, p: dict[str, str]) -> dict[str, Any] | None:
        if "orderId" in p:
            return self.orders.get(int(p["orderId"]))
        matches = [
            o for o in self.orders.values() if o["clientOrderId"] == p.get("origClientOrderId")
        ]
        return max(matches, key=lambda o: o["orderId"]) if matches else None

    def _find_algo(self, p: dict[str, str]) -> dict[str, Any] | None:
        if "algoId" in p:
            return self.algos.get(int(p["algoId"]))
        matches = [a for a in self.algos.values() if a["clientAlgoId"] == p.get("clientAlgoId")]
        return max(matches, key=lambda a: a["algoId"]) if matches else None


def _json(payload: Any) -> web.Response:
    return web.Response(text=json.dumps(payload), content_type="application/json")


def _error(code: int, msg: str) -> web.Response:
    if code > 0:  # an HTTP failure, like a proxy's
        return web.Response(status=code, text="Service Unavailable")
    body = json.dumps({"code": code, "msg": msg})
    return web.Response(status=400, text=body, content_type="application/json")


PERP_ORDER_TYPES = ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"]


def usdm_market(
    base: str, *, amount_step: float = 0.001, price_tick: float = 0.1
) -> dict[str, Any]:
    """Return ccxt's market dict of a Binance USD-M linear perpetual ``BASE/USDT:USDT``."""
    return {
        "id": f"{base}USDT",
        "symbol": f"{base}/USDT:USDT",
        "base": base,
        "quote": "USDT",
        "settle": "USDT",
        "baseId": base,
        "quoteId": "USDT",
        "settleId": "USDT",
        "type": "swap",
        "spot": False,
        "margin": False,
        "swap": True,
        "future": False,
        "option": False,
        "contract": True,
        "linear": True,
        "inverse": False,
        "contractSize": 1.0,
        "active": True,
        "taker": float(TAKER),
        "maker": float(MAKER),
        "precision": {"amount": amount_step, "price": price_tick},
        "limits": {
            "amount": {"min": amount_step, "max": 1000.0},
            "price": {"min": price_tick, "max": None},
            "cost": {"min": 5.0, "max": None},
            "leverage": {"min": None, "max": None},
        },
        "info": {"orderTypes": PERP_ORDER_TYPES},
    }


def binance_usdm(base_url: str, bases: tuple[str, ...] = ("BTC", "ETH")) -> Any:
    """Return a real ``ccxt.async_support.binance`` for USD-M perps, as ``make_ccxt_exchange``
    builds it for live trading, pointed at the fake server with its markets loaded offline."""
    exchange = make_ccxt_exchange(
        "binance", api_key="k" * 64, secret="s" * 64, market_type=MarketType.PERP, timeout_s=5
    )
    exchange.enableRateLimit = False
    exchange.timeout_on_exit = 0  # ccxt waits 250 ms on close for TLS sessions: none here
    point_ccxt_at(exchange, base_url)
    exchange.set_markets([usdm_market(base) for base in bases])
    return exchange
