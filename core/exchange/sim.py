"""The fill model shared by the paper exchange and the backtester: pure, deterministic, exact.

Rules (the backtester relies on them, so change them only on purpose):

* **Market** orders fill at the next price the venue sees after submission: the open of the next
  candle, as taker, with slippage against us (buys pay ``open * (1 + slip)``, sells get
  ``open * (1 - slip)``).
* **Limit** orders fill at their own price. A *resting* limit (not marketable when it was
  placed) fills at its limit as maker once the candle reaches it (buy: ``low <= limit``), also
  when the candle gaps through it: the venue matches the resting order at its price. A limit
  that was *marketable when placed* (a buy at or above the price of that moment, a sell at or
  below it) takes liquidity: it fills at the next price as taker, with slippage capped at the
  limit (a limit order never fills worse than its limit). "The price of that moment" is the
  ``reference`` the caller passes: the close before the candle for orders already resting,
  the price at the fill an order reacts to for orders placed inside a candle.
* **Stop-market** orders trigger when the candle trades through the stop (sell stop:
  ``low <= stop``; buy stop: ``high >= stop``) and fill at the worse of stop and open (a gap
  through the stop fills at the open), plus slippage, as taker.
* **Order within one candle**: whatever fills at the open happens first (market orders, then
  gapped stops, then gapped limits); inside the bar the path is unknown, so we assume the worst:
  stops fill before limits. A candle touching both a position's stop-loss and its take-profit
  therefore closes it at the stop. Orders placed in reaction to a fill inside a candle (the
  exit ladder after the entry fill, a stop moved after a take-profit) are matched against the
  rest of that candle: a candle that opens at the fill's price and still reaches the candle's
  whole high and low (the path after the fill is unknown, so the worst is assumed again).
* **Reduce-only** orders never increase or reverse a position: the fill is capped at what is
  left of the position, and the order is canceled when nothing is left to reduce.
* **Partial fills** are not modelled for candles: a triggered order fills whole (unless capped by
  reduce-only). ``Order.filled`` and per-fill records already support partial fills, so a volume
  participation cap could be added here without touching the callers.

Fees are ``amount * price * rate`` in quote currency. Prices from candles (floats) become
Decimals through their shortest repr, so ``100.1`` is exactly ``Decimal("100.1")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import lru_cache

from core.domain.enums import Liquidity, OrderType, Side
from core.domain.market import Candle
from core.domain.orders import Order
from core.errors import DataError
from core.values import value_class

ZERO = Decimal(0)
ONE = Decimal(1)
_BPS = Decimal(10_000)


@value_class(frozen=True, slots=True, kw_only=True)
class FillModelConfig:
    """Fees (fractions, 0.001 = 0.1 %) and slippage (basis points) of the simulated venue."""

    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    slippage_bps: Decimal = Decimal(2)

    def __post_init__(self) -> None:
        for name in ("maker_fee", "taker_fee"):
            rate = getattr(self, name)
            if not ZERO <= rate < ONE:
                raise ValueError(f"{name} must be in [0, 1), was {rate}")
        if not ZERO <= self.slippage_bps < _BPS:
            raise ValueError(f"slippage_bps must be in [0, 10000), was {self.slippage_bps}")

    @property
    def slippage(self) -> Decimal:
        """Return slippage as a fraction of price."""
        return self.slippage_bps / _BPS

    @property
    def max_fee(self) -> Decimal:
        """Return the larger fee rate (used to reserve funds before knowing the liquidity)."""
        return max(self.maker_fee, self.taker_fee)


@value_class(frozen=True, slots=True, kw_only=True)
class FillPrice:
    """Where and how an order fills: price, liquidity, fee rate, whether at the open, and the
    market price at that moment (``moment``: the open, or the level the candle traded through;
    an order placed in reaction to this fill sees the rest of the candle from there)."""

    price: Decimal
    liquidity: Liquidity
    fee_rate: Decimal
    at_open: bool
    moment: Decimal

    def fee(self, amount: Decimal) -> Decimal:
        """Return the fee in quote currency for filling ``amount`` at this price."""
        return amount * self.price * self.fee_rate


@lru_cache(maxsize=1024)  # each candle's prices are converted once per resting order otherwise
def to_price(value: float) -> Decimal:
    """Convert a candle float to an exact Decimal through its shortest repr."""
    if not math.isfinite(value) or value <= 0:
        raise DataError(f"candle price must be a finite positive number, was {value!r}")
    return Decimal(repr(float(value)))


def slipped(side: Side, price: Decimal, config: FillModelConfig) -> Decimal:
    """Return ``price`` moved against us by the slippage."""
    factor = ONE + config.slippage if side is Side.BUY else ONE - config.slippage
    return price * factor


def fill_market(side: Side, open_price: Decimal, config: FillModelConfig) -> FillPrice:
    """Fill a market order at the next open, as taker, with slippage against us."""
    return FillPrice(
        price=slipped(side, open_price, config),
        liquidity=Liquidity.TAKER,
        fee_rate=config.taker_fee,
        at_open=True,
        moment=open_price,
    )


def marketable(side: Side, limit: Decimal, price: Decimal) -> bool:
    """Return True when a limit at ``limit`` would take liquidity at market ``price``."""
    return limit >= price if side is Side.BUY else limit <= price


def fill_limit(
    side: Side,
    limit: Decimal,
    candle: Candle,
    config: FillModelConfig,
    reference: Decimal | None = None,
) -> FillPrice | None:
    """Return the fill of a limit order on ``candle``, or None if it is not reached.

    ``reference`` is the market price when the order was placed (None: the candle's open, as
    for an order placed before any price was known); see the module docstring.
    """
    open_ = to_price(candle.open)
    placed_at = open_ if reference is None else reference
    if marketable(side, limit, open_) and marketable(side, limit, placed_at):
        # Marketable when placed and still at the open: it takes the market, never beyond
        # its limit.
        cap = min if side is Side.BUY else max
        return FillPrice(
            price=cap(limit, slipped(side, open_, config)),
            liquidity=Liquidity.TAKER,
            fee_rate=config.taker_fee,
            at_open=True,
            moment=open_,
        )
    reached = to_price(candle.low) <= limit if side is Side.BUY else to_price(candle.high) >= limit
    if not reached:
        return None
    gapped = marketable(side, limit, open_)  # a resting order the open jumped over
    return FillPrice(
        price=limit,
        liquidity=Liquidity.MAKER,
        fee_rate=config.maker_fee,
        at_open=gapped,
        moment=open_ if gapped else limit,
    )


def fill_stop(
    side: Side, stop: Decimal, candle: Candle, config: FillModelConfig
) -> FillPrice | None:
    """Return the fill of a stop-market order on ``candle``, or None if it does not trigger."""
    open_ = to_price(candle.open)
    if side is Side.SELL:
        if to_price(candle.low) > stop:
            return None
        base, gapped = min(stop, open_), open_ <= stop
    else:
        if to_price(candle.high) < stop:
            return None
        base, gapped = max(stop, open_), open_ >= stop
    return FillPrice(
        price=slipped(side, base, config),
        liquidity=Liquidity.TAKER,
        fee_rate=config.taker_fee,
        at_open=gapped,
        moment=base,
    )


def trigger(
    order: Order, candle: Candle, config: FillModelConfig, reference: Decimal | None = None
) -> FillPrice | None:
    """Return how ``order`` fills on ``candle`` (ignoring reduce-only), or None.

    ``reference`` is the market price before the candle (see ``fill_limit``).
    """
    req = order.request
    if req.type is OrderType.MARKET:
        return fill_market(req.side, to_price(candle.open), config)
    if req.type is OrderType.LIMIT:
        assert req.price is not None  # noqa: S101 - OrderRequest validates it
        return fill_limit(req.side, req.price, candle, config, reference)
    assert req.stop_price is not None  # noqa: S101 - OrderRequest validates it
    return fill_stop(req.side, req.stop_price, candle, config)


def reduce_only_cap(side: Side, wanted: Decimal, position: Decimal) -> Decimal:
    """Return how much of a reduce-only order may fill against a signed ``position``.

    ``position`` is the net base amount (positive long, negative short). Zero means the order
    must be canceled: there is nothing to reduce, or it would increase the position.
    """
    reducible = position if side is Side.SELL else -position
    return min(wanted, reducible) if reducible > ZERO else ZERO


@value_class(frozen=True, slots=True, kw_only=True)
class SimFill:
    """One order filled (in full, or capped by reduce-only) on one candle."""

    order: Order
    amount: Decimal
    fill: FillPrice

    @property
    def fee(self) -> Decimal:
        """Return the fee in quote currency."""
        return self.fill.fee(self.amount)


@value_class(frozen=True, slots=True, kw_only=True)
class SimCancel:
    """An order the candle canceled instead of filling, with the reason."""

    order: Order
    reason: str


@value_class(frozen=True, slots=True, kw_only=True)
class CandleMatch:
    """Fills and cancels of one candle, in the order they happened, and the final position."""

    fills: tuple[SimFill, ...]
    canceled: tuple[SimCancel, ...]
    position: Decimal


# Decide whether to take a fill (e.g. enough funds); return a refusal reason or None to take it.
AcceptFill = Callable[[SimFill], str | None]

_TYPE_RANK = {OrderType.MARKET: 0, OrderType.STOP_MARKET: 1, OrderType.LIMIT: 2}


def _sequence(
    orders: Sequence[Order], candle: Candle, config: FillModelConfig, reference: Decimal | None
) -> list[tuple[Order, FillPrice]]:
    hits = [(o, fp) for o in orders if o.is_open and (fp := trigger(o, candle, config, reference))]

    def key(hit: tuple[Order, FillPrice]) -> tuple[int, int]:
        order, fp = hit
        return (0 if fp.at_open else 1, _TYPE_RANK[order.request.type])

    return sorted(hits, key=key)  # stable: ties keep the given (submission) order


def match_candle(
    orders: Sequence[Order],
    candle: Candle,
    position: Decimal,
    config: FillModelConfig,
    accept: AcceptFill | None = None,
    reference: Decimal | None = None,
) -> CandleMatch:
    """Fill the open ``orders`` of one symbol against ``candle`` in the order fills happen.

    ``position`` is the signed net position before the candle (spot: holdings). ``accept`` may
    refuse a fill (e.g. funds ran out); a refused order is returned as canceled with its reason
    and does not move the position. Terminal orders and orders the candle does not reach are
    left out. ``reference`` is the market price before the candle (see ``fill_limit``).
    """
    fills: list[SimFill] = []
    canceled: list[SimCancel] = []
    for order, fp in _sequence(orders, candle, config, reference):
        side, amount = order.request.side, order.remaining
        if order.request.reduce_only:
            amount = reduce_only_cap(side, amount, position)
            if amount <= ZERO:
                canceled.append(
                    SimCancel(order=order, reason="reduce-only: no position left to reduce")
                )
                continue
        sim_fill = SimFill(order=order, amount=amount, fill=fp)
        refusal = accept(sim_fill) if accept is not None else None
        if refusal is not None:
            canceled.append(SimCancel(order=order, reason=refusal))
            continue
        fills.append(sim_fill)
        position += amount if side is Side.BUY else -amount
    return CandleMatch(fills=tuple(fills), canceled=tuple(canceled), position=position)


@value_class(frozen=True, slots=True, kw_only=True)
class ReachBand:
    """The prices at which a candle could start to fill any of some resting orders.

    A candle can fill one of them only if ``low <= down`` or ``high >= up`` (or any market
    order is pending). Used to fast-forward backtests over candles that cannot fill anything.
    """

    down: float  # highest buy-limit price / sell-stop trigger (-inf when none)
    up: float  # lowest sell-limit price / buy-stop trigger (+inf when none)
    market: bool  # a market order waits for the next candle

    def reached(self, low: float, high: float) -> bool:
        """Return True when a candle with this range might fill something."""
        return self.market or low <= self.down or high >= self.up


# Decimal prices become floats here; widen the band by a hair so rounding can only make a
# candle look reachable (costing time), never unreachable (which would skip a real fill).
_BAND_SLACK = 1e-9


def reach_band(orders: Sequence[Order]) -> ReachBand:
    """Return the band of the open ``orders`` (see ``ReachBand``)."""
    down, up, market = float("-inf"), float("inf"), False
    for order in orders:
        if not order.is_open:
            continue
        req = order.request
        if req.type is OrderType.MARKET:
            market = True
            continue
        level = req.price if req.type is OrderType.LIMIT else req.stop_price
        assert level is not None  # noqa: S101 - OrderRequest validates it
        # Buy limits and sell stops are reached from above, sell limits and buy stops from below.
        from_above = (req.type is OrderType.LIMIT) == (req.side is Side.BUY)
        if from_above:
            down = max(down, float(level) * (1 + _BAND_SLACK))
        else:
            up = min(up, float(level) * (1 - _BAND_SLACK))
    return ReachBand(down=down, up=up, market=market)
