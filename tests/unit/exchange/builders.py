"""Builders shared by the paper exchange tests: requests, candles and a started exchange."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from core.clock import SimClock
from core.domain.enums import MarketType, OrderType, Side
from core.domain.margin import MarginConfig
from core.domain.market import Candle
from core.domain.market_rules import MarketRules
from core.domain.orders import OrderRequest
from core.exchange.paper import PaperExchange
from core.exchange.sim import FillModelConfig
from core.ports import Storage
from storage.memory import MemoryStorage

D = Decimal
BTC = "BTC/USDT"
T0_MS = 1_700_000_000_000
MINUTE_MS = 60_000
# maker 0.1 %, taker 0.2 %, slippage 10 bps: easy to compute by hand
SPOT_FILLS = FillModelConfig(maker_fee=D("0.001"), taker_fee=D("0.002"), slippage_bps=D(10))
STARTING_USDT = D(10_000)
NO_SLIP_FILLS = FillModelConfig(maker_fee=D("0.001"), taker_fee=D("0.002"), slippage_bps=D(0))


def bar(
    i: int,
    open_: float,
    high: float | None = None,
    low: float | None = None,
    close: float | None = None,
) -> Candle:
    """Return candle number ``i`` (one minute apart); missing prices default to the open."""
    return Candle(
        ts_ms=T0_MS + i * MINUTE_MS,
        open=open_,
        high=max(open_, high if high is not None else open_, close or open_),
        low=min(open_, low if low is not None else open_, close or open_),
        close=close if close is not None else open_,
        volume=1.0,
    )


def req(
    cid: str,
    side: Side,
    amount: str,
    type_: OrderType = OrderType.MARKET,
    *,
    price: str | None = None,
    stop: str | None = None,
    reduce_only: bool = False,
    symbol: str = BTC,
    market_type: MarketType = MarketType.SPOT,
    leverage: int = 1,
) -> OrderRequest:
    """Return an order request with Decimal amounts from strings."""
    return OrderRequest(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        type=type_,
        amount=D(amount),
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        reduce_only=reduce_only,
        market_type=market_type,
        leverage=leverage,
    )


async def started_paper(
    storage: Storage | None = None,
    *,
    clock: SimClock | None = None,
    fills: FillModelConfig = SPOT_FILLS,
    market_type: MarketType = MarketType.SPOT,
    max_leverage: int = 1,
    starting_balance: Decimal = STARTING_USDT,
    min_notional: Decimal = Decimal(0),
    margin: MarginConfig | None = None,
    rules: Callable[[str], MarketRules] | None = None,
) -> PaperExchange:
    """Return a started paper exchange on ``storage`` (a fresh MemoryStorage by default)."""
    paper = PaperExchange(
        storage=storage if storage is not None else MemoryStorage(),
        clock=clock or SimClock(T0_MS),
        fill_config=fills,
        starting_balance=starting_balance,
        market_type=market_type,
        max_leverage=max_leverage,
        min_notional=min_notional,
        margin=margin,
        rules=rules,
    )
    await paper.start()
    return paper
