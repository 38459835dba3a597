"""The paper account as a pure, synchronous state machine: orders, balances, positions, marks.

``PaperExchange`` wraps it with persistence and a lock; a backtest may drive it directly. All
money is exact Decimal; fills come from :mod:`core.exchange.sim`.

Accounting:

* Balances are kept as *totals* per asset; ``used`` is derived from open orders and positions,
  so it is the same after a restart: spot buys reserve quote (``amount * price * (1 + max fee)``
  at the limit, the stop or the last mark, with slippage on the order's side for market and
  stop orders); spot sells
  reserve base; perp orders reserve ``notional / leverage + fee`` (even one that would reduce a
  position: exits should be reduce-only); perp positions lock their margin. Reduce-only orders
  reserve nothing (they can only release funds). ``free`` may turn negative when the mark rises
  under a pending market buy; the fill then checks funds again.
* Spot holdings we bought are LONG positions (average entry, realized PnL on sells). Fees are in
  quote currency on both sides.
* Perps (USDT-margined, one net position per symbol): margin ``notional / leverage`` is locked
  from the quote balance, realized PnL (before fees) is booked on reduce/close, an order larger
  than the position flips it. A position keeps the leverage it was opened with. With a
  ``MarginConfig`` (isolated or cross) every position has a liquidation price, and the venue
  liquidates it when a candle reaches it (:mod:`core.exchange.liquidation`): a loss never
  exceeds the margin that backs it. Funding is settled by ``apply_funding``.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from core.domain.enums import Liquidity, MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.margin import MarginConfig, MarginMode, beyond, liquidation_price
from core.domain.market import Candle
from core.domain.orders import Order, OrderRequest, is_liquidation
from core.domain.portfolio import FundingPayment, Position
from core.errors import InvariantViolation
from core.exchange.liquidation import closing_fill, collateral, settle, trigger_order
from core.exchange.paper_ledger import (
    REMAINDER_CANCELED,
    BookConfig,
    CandleOutcome,
    Mark,
    PaperLedger,
    signed_amount,
    split_symbol,
)
from core.exchange.sim import ZERO, FillPrice, SimFill, match_candle, to_price

__all__ = [
    "REMAINDER_CANCELED",
    "BookConfig",
    "CandleOutcome",
    "Mark",
    "PaperBook",
    "signed_amount",
    "split_symbol",
]


def _liquidation_in_turn(
    orders: list[Order], liquidation: Order, side: PositionSide
) -> list[Order]:
    """Return ``orders`` with the venue's liquidation stop where the price meets it inside the
    candle: after our stops that sit inside it, before those beyond it (cross margin moves
    the level, it may pass a stop), and before take-profits (stops rank first anyway)."""
    level = liquidation.request.stop_price
    assert level is not None  # noqa: S101 - a stop order

    def beyond_level(order: Order) -> bool:
        stop = order.request.stop_price
        return (
            order.request.type is OrderType.STOP_MARKET
            and stop is not None
            and (stop < level if side is PositionSide.LONG else stop > level)
        )

    inside = [o for o in orders if not beyond_level(o)]
    return [*inside, liquidation, *(o for o in orders if beyond_level(o))]


class PaperBook(PaperLedger):
    """Every piece of paper-account state; commands mutate it, ``copy()`` makes it transactional."""

    def positions(self) -> list[Position]:
        """Return open positions sorted by symbol, perps with their liquidation price."""
        out = super().positions()
        if self.config.margin is None or self.config.market_type is not MarketType.PERP:
            return out
        return [replace(p, liquidation_price=self.liquidation_price(p.symbol)) for p in out]

    def liquidation_price(self, symbol: str) -> Decimal | None:
        """Return where the venue liquidates ``symbol``'s perp position now (None: flat,
        spot, no margin model, or out of reach)."""
        pos = self._positions.get(symbol)
        margin = self.config.margin
        if pos is None or margin is None or self.config.market_type is not MarketType.PERP:
            return None
        return liquidation_price(
            pos.side, pos.amount, pos.entry_price, self._collateral(pos, margin), margin
        )

    def _collateral(self, pos: Position, margin: MarginConfig) -> Decimal:
        prices = {s: m.price for s, m in self.marks.items()}
        wallet = self._totals.get(self.config.quote, ZERO)
        return collateral(pos, self._positions.values(), prices, wallet, margin)

    # --- commands ------------------------------------------------------------------------------

    def submit(self, request: OrderRequest, now_ms: int) -> Order:
        """Accept ``request`` as an OPEN order, or return it REJECTED with the reason."""
        order = Order(
            request=request,
            exchange_order_id=self.config.order_id_prefix + request.client_order_id,
            status=OrderStatus.OPEN,
            created_ms=now_ms,
            updated_ms=now_ms,
        )
        reason = self._rejection(order)
        if reason:
            return order.with_(status=OrderStatus.REJECTED, reason=reason)
        self._open[order.client_order_id] = order
        self._reserve_changed(order)
        return order

    def cancel(self, client_order_id: str, now_ms: int, reason: str) -> Order:
        """Cancel an open order and return it; an unknown id is a caller bug."""
        order = self._open.pop(client_order_id, None)
        if order is None:
            raise InvariantViolation(f"cannot cancel {client_order_id!r}: not an open paper order")
        self._reserve_changed(order)
        return order.with_(status=OrderStatus.CANCELED, reason=reason, updated_ms=now_ms)

    def has_open_orders(self, symbol: str) -> bool:
        """Return True when ``symbol`` has an order that a candle could fill."""
        return any(o.symbol == symbol for o in self._open.values())

    def needs_matching(self, symbol: str) -> bool:
        """Return True when a candle of ``symbol`` could change more than its mark: an open
        order, or a perp position the venue may liquidate."""
        return self.has_open_orders(symbol) or (
            self.config.margin is not None and symbol in self._positions
        )

    def reachable_orders(self, symbol: str, now_ms: int) -> list[Order]:
        """Return the orders a candle of ``symbol`` could fill, the venue's own liquidation
        stop included (for fast replays: a candle reaching none of them changes nothing)."""
        orders = self.open_orders(symbol)
        liquidation = self._liquidation_trigger(symbol, now_ms, now_ms)
        if liquidation is None:
            return orders
        margin = self.config.margin
        if margin is not None and margin.mode is MarginMode.CROSS:
            # Cross: the level moves with every other position's price, so any candle may
            # reach it (a waiting market order says exactly that to a replay).
            anywhere = replace(liquidation.request, type=OrderType.MARKET, stop_price=None)
            liquidation = liquidation.with_(request=anywhere)
        return [*orders, liquidation]

    def _liquidation_trigger(self, symbol: str, candle_ms: int, now_ms: int) -> Order | None:
        level = self.liquidation_price(symbol)
        pos = self._positions.get(symbol)
        if level is None or pos is None:
            return None
        return trigger_order(pos, level, candle_ms, now_ms)

    def mark(self, symbol: str, candle: Candle) -> None:
        """Mark ``symbol`` at the candle's close unless the candle is not newer than the mark."""
        mark = self.marks.get(symbol)
        if mark is None or candle.ts_ms > mark.ts_ms:
            self.marks[symbol] = Mark(ts_ms=candle.ts_ms, price=to_price(candle.close))
            if self.has_open_orders(symbol):
                self._changed()  # a pending market order reserves at the mark

    def apply_funding(self, symbol: str, rate: Decimal) -> FundingPayment | None:
        """Settle one funding event on ``symbol``'s perp position at its mark: a long pays
        ``amount * mark * rate`` (receives it when the rate is negative), a short the reverse.
        Return None when there is nothing to settle (spot, flat, never marked)."""
        position = self._positions.get(symbol)
        mark = self.marks.get(symbol)
        if self.config.market_type is not MarketType.PERP or position is None or mark is None:
            return None
        payment = position.amount * mark.price * rate
        cash = -payment if position.side is PositionSide.LONG else payment
        quote = self.config.quote
        self._totals[quote] = self._totals.get(quote, ZERO) + cash
        self._changed()
        return FundingPayment(
            symbol=symbol,
            side=position.side,
            amount=position.amount,
            price=mark.price,
            rate=rate,
            cash=cash,
        )

    def on_candle(self, symbol: str, candle: Candle, now_ms: int) -> CandleOutcome:
        """Fill what ``candle`` reaches, then mark ``symbol`` at its close.

        A candle not newer than the last one seen for ``symbol`` changes nothing (a feed that
        repeats a candle after a restart must not fill orders twice). Resting limits are judged
        against the previous close (the price they were placed at, or last saw).
        """
        mark = self.marks.get(symbol)
        if mark is not None and candle.ts_ms <= mark.ts_ms:
            return CandleOutcome(stale=True)
        out = self._match(symbol, candle, now_ms, None if mark is None else mark.price)
        self.marks[symbol] = Mark(ts_ms=candle.ts_ms, price=to_price(candle.close))
        self._changed()
        return out

    def on_candle_rest(
        self, symbol: str, candle: Candle, moment: Decimal, at_open: bool, now_ms: int
    ) -> CandleOutcome:
        """Fill what the rest of ``candle`` reaches after a fill at price ``moment``, for the
        orders placed in reaction to that fill. After a fill at the open the rest is the whole
        candle. After a fill inside it, the path between the candle's open and the fill is
        unknown, so only what certainly came after counts: the move from ``moment`` to the
        close. The mark (the close) was set by ``on_candle``."""
        low, high = to_price(candle.low), to_price(candle.high)
        start = min(max(moment, low), high)
        if at_open:
            rest = replace(candle, open=float(start))
        else:
            close = to_price(candle.close)
            high, low = max(start, close), min(start, close)
            rest = replace(candle, open=float(start), high=float(high), low=float(low))
        return self._match(symbol, rest, now_ms, start)

    def _match(
        self, symbol: str, candle: Candle, now_ms: int, reference: Decimal | None
    ) -> CandleOutcome:
        out = CandleOutcome()
        liquidation = self._liquidation_trigger(symbol, candle.ts_ms, now_ms)
        if liquidation is not None:
            side = self._positions[symbol].side
            assert liquidation.request.stop_price is not None  # noqa: S101 - a stop order
            open_ = to_price(candle.open)
            if beyond(side, open_, liquidation.request.stop_price):
                # Opened past it: the venue liquidates at the open, before any order of ours
                # (a market order waiting for this open included) trades there.
                at_open = FillPrice(
                    price=open_,
                    liquidity=Liquidity.TAKER,
                    fee_rate=ZERO,
                    at_open=True,
                    moment=open_,
                )
                self._liquidate(
                    SimFill(order=liquidation, amount=liquidation.remaining, fill=at_open),
                    candle,
                    now_ms,
                    out,
                )
                out.moment, out.at_open = open_, True
                self._cancel_exits(symbol, now_ms, out)
                liquidation = None
        orders = self.open_orders(symbol)
        if liquidation is not None:
            orders = _liquidation_in_turn(orders, liquidation, self._positions[symbol].side)

        def accept(sim_fill: SimFill) -> str | None:
            if is_liquidation(sim_fill.order.client_order_id):
                refusal = self._liquidate(sim_fill, candle, now_ms, out)
            else:
                refusal = self._fill(sim_fill, candle, now_ms, out)
            if refusal is None:
                out.moment, out.at_open = sim_fill.fill.moment, sim_fill.fill.at_open
            return refusal

        match = match_candle(
            orders,
            candle,
            signed_amount(self._positions.get(symbol)),
            self.config.fill,
            accept,
            reference,
        )
        for canceled in match.canceled:
            if is_liquidation(canceled.order.client_order_id):
                continue  # our stop closed the position first: nothing left to liquidate
            out.orders.append(self.cancel(canceled.order.client_order_id, now_ms, canceled.reason))
        if any(is_liquidation(f.client_order_id) for f in out.fills):
            self._cancel_exits(symbol, now_ms, out)
        return out

    def _cancel_exits(self, symbol: str, now_ms: int, out: CandleOutcome) -> None:
        """Cancel the liquidated position's exit orders, as the venue does with it."""
        for order in self.open_orders(symbol):
            if order.request.reduce_only:
                out.orders.append(self.cancel(order.client_order_id, now_ms, "liquidated"))

    def _liquidate(
        self, sim_fill: SimFill, candle: Candle, now_ms: int, out: CandleOutcome
    ) -> str | None:
        """Close the position as the venue's liquidation, cancel the symbol's exits."""
        trigger = sim_fill.order
        symbol = trigger.symbol
        pos = self._positions[symbol]
        margin = self.config.margin
        assert margin is not None and trigger.request.stop_price is not None  # noqa: S101
        done = settle(
            pos,
            trigger.request.stop_price,
            to_price(candle.open),
            sim_fill.fill.at_open,
            self._collateral(pos, margin),
            margin,
        )
        self._add(self.config.quote, done.realized - done.fee)
        del self._positions[symbol]
        self._changed()
        order, fill = closing_fill(trigger, pos, done, candle.ts_ms, now_ms)
        out.orders.append(order)
        out.fills.append(fill)
        return None

    # --- submission checks ---------------------------------------------------------------------

    def _rejection(self, order: Order) -> str:
        req, cfg = order.request, self.config
        if req.market_type is not cfg.market_type:
            return f"order is for {req.market_type}, this paper account trades {cfg.market_type}"
        try:
            _, quote = split_symbol(req.symbol)
        except ValueError as exc:
            return str(exc)
        if quote != cfg.quote:
            return f"symbol {req.symbol} is quoted in {quote}, the account holds {cfg.quote}"
        if req.leverage > cfg.max_leverage:
            return f"leverage {req.leverage} exceeds the maximum {cfg.max_leverage}"
        if req.type is OrderType.MARKET and req.symbol not in self.marks:
            return f"no price seen yet for {req.symbol}; market orders need one candle first"
        small = self._off_rules(order)
        if small:
            return small
        pos = self._positions.get(req.symbol)
        if req.reduce_only:
            net = signed_amount(pos)
            if (net if req.side is Side.SELL else -net) <= ZERO:
                return f"reduce-only {req.side} but no position on {req.symbol} it could reduce"
            return ""
        if pos is not None and cfg.market_type is MarketType.PERP and pos.leverage != req.leverage:
            return (
                f"position on {req.symbol} uses leverage {pos.leverage}, order asks {req.leverage}"
            )
        reserved = self._reservation(order)
        if reserved is not None:
            asset, need = reserved
            free = self.free(asset)
            if need > free:
                return f"insufficient {asset}: order needs {need}, free {free}"
        return ""

    def _off_rules(self, order: Order) -> str:
        """Return why the venue would refuse the order's amount or price ("" if it would not)."""
        req, cfg = order.request, self.config
        minimum, least = cfg.min_notional, ZERO
        if cfg.rules is not None:
            rules = cfg.rules(req.symbol)
            # Closing a whole position goes whatever its size (Binance's close-position): one
            # sized before the venue changed its step can always be closed.
            pos = self._positions.get(req.symbol)
            whole = req.reduce_only and pos is not None and req.amount == pos.amount
            amount = rules.floor_amount(req.amount) if whole else req.amount
            off = rules.off_grid(amount, req.price) or (
                rules.off_grid(amount, req.stop_price) if req.stop_price is not None else ""
            )
            if off:
                return f"{req.symbol}: {off}"
            minimum, least = rules.min_notional, rules.min_amount
        if req.reduce_only and cfg.market_type is MarketType.PERP:
            return ""  # closes a remainder of any size
        if req.amount < least:
            return f"amount {req.amount} is below the minimum amount {least}"
        if not minimum:
            return ""
        level = req.price if req.price is not None else req.stop_price
        if level is None:
            level = self.marks[req.symbol].price  # a market order: checked above that it has one
        notional = req.amount * level
        if notional >= minimum:
            return ""
        return f"order value {notional} is below the minimum notional {minimum}"
