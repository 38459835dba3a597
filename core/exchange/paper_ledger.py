"""The paper account's money: balances, positions, what orders reserve, and what fills do.

The base of ``PaperBook`` (which adds orders, candles, liquidation): pure and synchronous,
exact Decimal. The accounting rules are those of :mod:`core.exchange.paper_book`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Self

from core.domain.enums import MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.margin import MarginConfig
from core.domain.market import Candle
from core.domain.market_rules import MarketRules
from core.domain.orders import Fill, Order
from core.domain.portfolio import Balance, Position
from core.errors import InvariantViolation
from core.exchange.sim import ONE, ZERO, FillModelConfig, SimFill, slipped
from core.values import value_class

REMAINDER_CANCELED = "reduce-only: remainder canceled, the position is closed"


@value_class(frozen=True, slots=True, kw_only=True)
class Mark:
    """The last candle seen for a symbol: its open time and its close."""

    ts_ms: int
    price: Decimal


@value_class(frozen=True, slots=True, kw_only=True)
class BookConfig:
    """What kind of account this is."""

    quote: str
    market_type: MarketType
    fill: FillModelConfig
    max_leverage: int = 1
    order_id_prefix: str = "paper-"
    # The smallest order value the venue takes, like Binance's: every spot order; on perps
    # reduce-only orders are exempt (they may close a remainder of any size).
    min_notional: Decimal = ZERO
    margin: MarginConfig | None = None  # perps: how positions are margined and liquidated
    # Each symbol's grid and minimums (the engine's book): an order off its step or tick is
    # refused like the venue would; its minimum notional replaces ``min_notional``.
    rules: Callable[[str], MarketRules] | None = None


@dataclass(slots=True)
class CandleOutcome:
    """What one candle changed: orders (in order of change) and fills (in order they happened).

    ``moment`` is the market price at the last fill (None without fills) and ``at_open``
    whether that fill happened at the candle's open: orders placed in reaction to these fills
    see the rest of the candle from there (``on_candle_rest``).
    """

    orders: list[Order] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    stale: bool = False  # the candle was not newer than the last one seen; nothing changed
    moment: Decimal | None = None
    at_open: bool = True


def split_symbol(symbol: str) -> tuple[str, str]:
    """Return ``(base, quote)`` of ``BASE/QUOTE`` or ``BASE/QUOTE:SETTLE``, else ValueError."""
    base, sep, rest = symbol.partition("/")
    quote = rest.partition(":")[0]
    if not sep or not base or not quote:
        raise ValueError(f"symbol {symbol!r} is not of the form BASE/QUOTE (e.g. BTC/USDT)")
    return base, quote


def signed_amount(position: Position | None) -> Decimal:
    """Return the net position: positive long, negative short, zero when flat."""
    if position is None:
        return ZERO
    return position.amount if position.side is PositionSide.LONG else -position.amount


class PaperLedger:
    """The account's state and its money rules; ``copy()`` makes changes transactional."""

    def __init__(
        self,
        config: BookConfig,
        *,
        totals: dict[str, Decimal] | None = None,
        positions: list[Position] | None = None,
        open_orders: list[Order] | None = None,
        marks: dict[str, Mark] | None = None,
    ) -> None:
        self.config = config
        self._totals = dict(totals or {})
        self._positions = {p.symbol: p for p in positions or []}
        # A stable sort keeps the given order for orders of the same ms (it breaks fill ties).
        ordered = sorted(open_orders or [], key=lambda o: o.created_ms)
        self._open = {o.client_order_id: o for o in ordered}
        self.marks = dict(marks or {})
        # Derived from the state above and read far more often than it changes (every write
        # stores the balances, every entry values the account): kept until the next change.
        self._used_cache: dict[str, Decimal] | None = None
        self._balances_cache: dict[str, Balance] | None = None
        # The (total, used) each cached Balance was made from: an asset whose total and used
        # are the very same Decimal objects keeps its Balance (most changes touch one asset).
        self._balance_parts: dict[str, tuple[Decimal, Decimal, Balance]] = {}

    def copy(self) -> Self:
        """Return an independent copy (values are frozen, so shallow dict copies suffice)."""
        # Not through __init__: the open orders are already in order, and the derived caches
        # are still valid for the copy (they are replaced, never mutated).
        twin = object.__new__(type(self))
        twin.config = self.config
        twin._totals = dict(self._totals)
        twin._positions = dict(self._positions)
        twin._open = dict(self._open)
        twin.marks = dict(self.marks)
        twin._used_cache = self._used_cache
        twin._balances_cache = self._balances_cache
        twin._balance_parts = self._balance_parts
        return twin

    def _changed(self) -> None:
        """Drop the derived caches; call after every change of orders, totals, positions, marks."""
        self._used_cache = None
        self._balances_cache = None

    def _reserve_changed(self, order: Order) -> None:
        """Note that ``order`` was added or removed: only one that reserves funds moves balances.

        Reduce-only orders (every exit) reserve nothing (``_reservation``), so the balances stay
        exactly as they were, down to the Decimal objects, and the next write skips them.
        """
        if not order.request.reduce_only:
            self._changed()

    # --- queries -------------------------------------------------------------------------------

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return open orders, oldest first."""
        return [o for o in self._open.values() if symbol is None or o.symbol == symbol]

    def open_order(self, client_order_id: str) -> Order | None:
        """Return the open order with this client id, or None."""
        return self._open.get(client_order_id)

    def position(self, symbol: str) -> Position | None:
        """Return the open position of ``symbol``, or None."""
        return self._positions.get(symbol)

    def positions(self) -> list[Position]:
        """Return open positions sorted by symbol."""
        return [self._positions[s] for s in sorted(self._positions)]

    def balances(self) -> dict[str, Balance]:
        """Return balances by asset with ``used`` derived from open orders and margins."""
        return dict(self.balance_values())  # the caller may change its dict, not our cache

    def balance_values(self) -> Mapping[str, Balance]:
        """Return ``balances()`` without copying: the very same mapping until a change moves
        any balance (a copy of the book shares it too), so a caller holding it can tell that
        nothing changed by identity alone."""
        if self._balances_cache is None:
            used = self._used()
            parts: dict[str, tuple[Decimal, Decimal, Balance]] = {}
            for asset in sorted(set(self._totals) | set(used)):
                total, reserved = self._totals.get(asset, ZERO), used.get(asset, ZERO)
                known = self._balance_parts.get(asset)
                if known is not None and known[0] is total and known[1] is reserved:
                    parts[asset] = known
                else:
                    balance = Balance(
                        asset=asset,
                        free=total - reserved,
                        used=reserved,
                        includes_unrealized_pnl=False,  # a wallet: PnL is booked on close
                    )
                    parts[asset] = (total, reserved, balance)
            self._balance_parts = parts  # a new dict: a copy of the book may share the old one
            self._balances_cache = {asset: part[2] for asset, part in parts.items()}
        return self._balances_cache

    def free(self, asset: str) -> Decimal:
        """Return what can be spent of ``asset``."""
        return self._totals.get(asset, ZERO) - self._used().get(asset, ZERO)

    # --- reservations --------------------------------------------------------------------------

    def _reference_price(self, order: Order) -> Decimal:
        req = order.request
        if req.type is OrderType.LIMIT:
            assert req.price is not None  # noqa: S101 - OrderRequest validates it
            return req.price
        # Stop and market orders are reserved at the fill they expect (slippage on their own
        # side); the fill checks the funds again at its real price.
        if req.type is OrderType.STOP_MARKET:
            assert req.stop_price is not None  # noqa: S101 - OrderRequest validates it
            return slipped(req.side, req.stop_price, self.config.fill)
        mark = self.marks.get(req.symbol)
        if mark is None:
            raise InvariantViolation(f"open market order {order.client_order_id} has no mark")
        return slipped(req.side, mark.price, self.config.fill)

    def _reservation(self, order: Order) -> tuple[str, Decimal] | None:
        req, cfg = order.request, self.config
        if req.reduce_only:
            return None
        if cfg.market_type is MarketType.SPOT and req.side is Side.SELL:
            return split_symbol(req.symbol)[0], order.remaining
        notional = order.remaining * self._reference_price(order)
        if cfg.market_type is MarketType.SPOT:
            return cfg.quote, notional * (ONE + cfg.fill.max_fee)
        return cfg.quote, notional / req.leverage + notional * cfg.fill.max_fee

    def _used(self) -> dict[str, Decimal]:
        if self._used_cache is not None:
            return self._used_cache
        used: dict[str, Decimal] = {}
        for order in self._open.values():
            reserved = self._reservation(order)
            if reserved is not None:
                used[reserved[0]] = used.get(reserved[0], ZERO) + reserved[1]
        for pos in self._positions.values():
            if pos.margin:
                used[self.config.quote] = used.get(self.config.quote, ZERO) + pos.margin
        self._used_cache = used
        return used

    # --- fills ---------------------------------------------------------------------------------

    def _fill(
        self, sim_fill: SimFill, candle: Candle, now_ms: int, out: CandleOutcome
    ) -> str | None:
        order = self._open[sim_fill.order.client_order_id]
        own = self._reservation(order)
        apply = self._apply_spot if self.config.market_type is MarketType.SPOT else self._apply_perp
        refusal = apply(order, sim_fill, own[1] if own else ZERO, now_ms)
        if refusal is not None:
            return refusal
        amount, price, fee = sim_fill.amount, sim_fill.fill.price, sim_fill.fee
        filled = order.filled + amount
        average = (
            price
            if order.average_price is None
            else ((order.filled * order.average_price + amount * price) / filled)
        )
        status, reason = OrderStatus.FILLED, ""
        if filled < order.request.amount:
            # Only reduce-only caps stop short today; their remainder has nothing left to reduce.
            capped = order.request.reduce_only
            status = OrderStatus.CANCELED if capped else OrderStatus.PARTIALLY_FILLED
            reason = REMAINDER_CANCELED if capped else ""
        updated = order.with_(
            status=status,
            filled=filled,
            average_price=average,
            fee_paid=order.fee_paid + fee,
            updated_ms=now_ms,
            reason=reason,
        )
        if updated.is_open:
            self._open[order.client_order_id] = updated
        else:
            del self._open[order.client_order_id]
        self._changed()
        out.orders.append(updated)
        out.fills.append(
            Fill(
                fill_id=f"{order.exchange_order_id}-{candle.ts_ms}",
                client_order_id=order.client_order_id,
                exchange_order_id=order.exchange_order_id,
                symbol=order.symbol,
                side=order.request.side,
                amount=amount,
                price=price,
                fee=fee,
                liquidity=sim_fill.fill.liquidity,
                ts_ms=max(candle.ts_ms, order.created_ms),  # in this candle, never before the order
                market_type=order.request.market_type,
                order_filled=filled,
            )
        )
        return None

    def _add(self, asset: str, delta: Decimal) -> None:
        self._totals[asset] = self._totals.get(asset, ZERO) + delta
        self._changed()

    def _apply_spot(self, order: Order, sf: SimFill, own: Decimal, now_ms: int) -> str | None:
        symbol, quote = order.symbol, self.config.quote
        base = split_symbol(symbol)[0]
        amount, price = sf.amount, sf.fill.price
        pos = self._positions.get(symbol)
        if order.request.side is Side.BUY:
            cost = amount * price + sf.fee
            available = self.free(quote) + own
            if cost > available:
                return f"insufficient {quote} at fill: needs {cost}, free {available}"
            self._add(quote, -cost)
            self._add(base, amount)
            self._increase(order, pos, PositionSide.LONG, amount, price, ZERO, now_ms)
            return None
        available = self.free(base) + own
        if amount > available or pos is None:
            return f"insufficient {base} at fill: sells {amount}, free {available}"
        self._add(base, -amount)
        self._add(quote, amount * price - sf.fee)
        self._reduce(pos, amount, (price - pos.entry_price) * amount, ZERO, now_ms)
        return None

    def _apply_perp(self, order: Order, sf: SimFill, own: Decimal, now_ms: int) -> str | None:
        amount, price, side = sf.amount, sf.fill.price, order.request.side
        pos = self._positions.get(order.symbol)
        net = signed_amount(pos)
        closes = pos is not None and (net > ZERO) != (side is Side.BUY)
        closing = min(amount, pos.amount) if closes and pos is not None else ZERO
        opening = amount - closing
        realized = released = ZERO
        if pos is not None and closing:
            direction = ONE if pos.side is PositionSide.LONG else -ONE
            realized = (price - pos.entry_price) * closing * direction
            released = pos.margin if closing == pos.amount else pos.margin * closing / pos.amount
        leverage = pos.leverage if pos is not None else order.request.leverage
        margin = opening * price / leverage
        available = self.free(self.config.quote) + own + released + realized
        if opening and margin + sf.fee > available:
            need = margin + sf.fee
            return (
                f"insufficient {self.config.quote} margin at fill: needs {need}, free {available}"
            )
        self._add(self.config.quote, realized - sf.fee)
        if pos is not None and closing:
            self._reduce(pos, closing, realized, released, now_ms)
            pos = self._positions.get(order.symbol)
        if opening:
            new_side = PositionSide.LONG if side is Side.BUY else PositionSide.SHORT
            self._increase(order, pos, new_side, opening, price, margin, now_ms, leverage)
        return None

    def _increase(
        self,
        order: Order,
        pos: Position | None,
        side: PositionSide,
        amount: Decimal,
        price: Decimal,
        margin: Decimal,
        now_ms: int,
        leverage: int = 1,
    ) -> None:
        if pos is None:
            self._positions[order.symbol] = Position(
                symbol=order.symbol,
                market_type=self.config.market_type,
                side=side,
                amount=amount,
                entry_price=price,
                leverage=leverage,
                margin=margin,
                opened_ms=now_ms,
                updated_ms=now_ms,
            )
            self._changed()
            return
        total = pos.amount + amount
        entry = (pos.amount * pos.entry_price + amount * price) / total
        self._positions[order.symbol] = replace(
            pos, amount=total, entry_price=entry, margin=pos.margin + margin, updated_ms=now_ms
        )
        self._changed()

    def _reduce(
        self, pos: Position, amount: Decimal, realized: Decimal, released: Decimal, now_ms: int
    ) -> None:
        self._changed()
        left = pos.amount - amount
        if left <= ZERO:
            del self._positions[pos.symbol]
            return
        self._positions[pos.symbol] = replace(
            pos,
            amount=left,
            margin=pos.margin - released,
            realized_pnl=pos.realized_pnl + realized,
            updated_ms=now_ms,
        )
