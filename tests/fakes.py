"""Fakes of our ports for tests: small, obvious, and checked by the same contract suites.

``FakeExchange`` keeps orders in a dict. Orders rest until a test fills them with
``script_fill``; ``fail_next`` makes the next call of a method raise one of our errors; every
call is recorded in ``calls``. Positions are whatever the test sets, or, with
``track_positions=True``, the net of the fills (as a venue keeps them). Like the real
exchanges it is idempotent on the client order id and returns a finished order unchanged when
asked to cancel it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from core.brains.limits import LimitContext
from core.clock import Clock, SimClock
from core.domain.enums import Liquidity, OrderStatus, PositionSide, Side
from core.domain.orders import Fill, Order, OrderRequest
from core.domain.portfolio import Balance, Position
from core.errors import OrderRejected, QTError, StorageUnavailable
from core.ports import StateKey

ZERO = Decimal(0)
_METHODS = (
    "create_order",
    "cancel_order",
    "fetch_order",
    "fetch_open_orders",
    "fetch_balances",
    "fetch_positions",
)


@dataclass(frozen=True, slots=True)
class Call:
    """One recorded call: the method name and its arguments."""

    method: str
    args: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class _Scripted:
    price: Decimal
    amount: Decimal | None
    fee: Decimal


class FakeExchange:
    """The ``Exchange`` port with scripted fills and injected errors."""

    def __init__(
        self,
        *,
        balances: Mapping[str, Decimal] | None = None,
        clock: Clock | None = None,
        name: str = "fake",
        track_positions: bool = False,
    ) -> None:
        self.name = name
        self._track_positions = track_positions
        self.clock = clock or SimClock()
        self.calls: list[Call] = []
        self.orders: dict[str, Order] = {}
        self.fills: list[Fill] = []
        self.positions: list[Position] = []
        self.balances = {a: Balance(asset=a, free=v) for a, v in (balances or {}).items()}
        self._errors: dict[str, deque[QTError]] = {m: deque() for m in _METHODS}
        self._scripted: dict[str, deque[_Scripted]] = {}

    # --- test controls -------------------------------------------------------------------------

    def fail_next(self, method: str, error: QTError) -> None:
        """Make the next call of ``method`` raise ``error`` (queued: call again for more)."""
        if method not in self._errors:
            raise ValueError(f"FakeExchange has no method {method!r}; known: {', '.join(_METHODS)}")
        self._errors[method].append(error)

    def script_fill(
        self,
        client_order_id: str,
        price: Decimal,
        amount: Decimal | None = None,
        fee: Decimal = ZERO,
    ) -> Fill | None:
        """Fill ``amount`` (default: the rest) of an order now, or as soon as it is created."""
        scripted = _Scripted(price=price, amount=amount, fee=fee)
        order = self.orders.get(client_order_id)
        if order is not None and order.is_open:
            return self._fill(order, scripted)
        self._scripted.setdefault(client_order_id, deque()).append(scripted)
        return None

    def calls_to(self, method: str) -> list[Call]:
        """Return the recorded calls of one method."""
        return [c for c in self.calls if c.method == method]

    # --- lifecycle (as a process component) ----------------------------------------------------

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to close."""

    # --- the Exchange port ---------------------------------------------------------------------

    async def create_order(self, request: OrderRequest) -> Order:
        """Record an OPEN order (or return the known one), then apply any scripted fills."""
        self._enter("create_order", request)
        known = self.orders.get(request.client_order_id)
        if known is not None:
            return known
        now_ms = self.clock.now_ms()
        order = Order(
            request=request,
            exchange_order_id=f"{self.name}-{request.client_order_id}",
            status=OrderStatus.OPEN,
            created_ms=now_ms,
            updated_ms=now_ms,
        )
        self.orders[order.client_order_id] = order
        for scripted in self._scripted.pop(order.client_order_id, deque()):
            self._fill(self.orders[order.client_order_id], scripted)
        return self.orders[order.client_order_id]

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        """Cancel an open order; a finished order is returned unchanged."""
        self._enter("cancel_order", client_order_id, symbol)
        order = self._get(client_order_id, symbol)
        if order.is_open:
            order = order.with_(status=OrderStatus.CANCELED, updated_ms=self.clock.now_ms())
            self.orders[client_order_id] = order
        return order

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        """Return the order; OrderRejected if unknown."""
        self._enter("fetch_order", client_order_id, symbol)
        return self._get(client_order_id, symbol)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return open orders in creation order."""
        self._enter("fetch_open_orders", symbol)
        return [o for o in self.orders.values() if o.is_open and symbol in (None, o.symbol)]

    async def fetch_balances(self) -> dict[str, Balance]:
        """Return the balances set by the test."""
        self._enter("fetch_balances")
        return dict(self.balances)

    async def fetch_positions(self) -> list[Position]:
        """Return the positions set by the test."""
        self._enter("fetch_positions")
        return list(self.positions)

    # --- internals -----------------------------------------------------------------------------

    def _enter(self, method: str, *args: object) -> None:
        self.calls.append(Call(method, args))
        if self._errors[method]:
            raise self._errors[method].popleft()

    def _get(self, client_order_id: str, symbol: str) -> Order:
        order = self.orders.get(client_order_id)
        if order is None or order.symbol != symbol:
            raise OrderRejected(
                f"{self.name}: no order with client id {client_order_id} on {symbol}"
            )
        return order

    def _fill(self, order: Order, scripted: _Scripted) -> Fill:
        amount = (
            order.remaining if scripted.amount is None else min(scripted.amount, order.remaining)
        )
        filled = order.filled + amount
        average = scripted.price
        if order.average_price is not None:
            average = (order.filled * order.average_price + amount * scripted.price) / filled
        now_ms = self.clock.now_ms()
        done = filled >= order.request.amount
        self.orders[order.client_order_id] = order.with_(
            status=OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED,
            filled=filled,
            average_price=average,
            fee_paid=order.fee_paid + scripted.fee,
            updated_ms=now_ms,
        )
        fill = Fill(
            fill_id=f"{order.exchange_order_id}-{len(self.fills)}",
            client_order_id=order.client_order_id,
            exchange_order_id=order.exchange_order_id,
            symbol=order.symbol,
            side=order.request.side,
            amount=amount,
            price=scripted.price,
            fee=scripted.fee,
            liquidity=Liquidity.TAKER,
            ts_ms=now_ms,
            market_type=order.request.market_type,
        )
        self.fills.append(fill)
        if self._track_positions:
            self._apply_to_position(fill)
        return fill

    def _apply_to_position(self, fill: Fill) -> None:
        current = next((p for p in self.positions if p.symbol == fill.symbol), None)
        signed = ZERO
        if current is not None:
            signed = current.amount if current.side is PositionSide.LONG else -current.amount
        delta = fill.amount if fill.side is Side.BUY else -fill.amount
        net = signed + delta
        others = [p for p in self.positions if p.symbol != fill.symbol]
        if net == 0:
            self.positions = others
            return
        grows = current is None or (signed > 0) == (delta > 0)
        entry = fill.price
        if current is not None and grows:
            entry = (abs(signed) * current.entry_price + fill.amount * fill.price) / abs(net)
        elif current is not None and (signed > 0) == (net > 0):
            entry = current.entry_price  # reduced: the entry stays
        position = Position(
            symbol=fill.symbol,
            market_type=fill.market_type,
            side=PositionSide.LONG if net > 0 else PositionSide.SHORT,
            amount=abs(net),
            entry_price=entry,
            opened_ms=current.opened_ms if current is not None else fill.ts_ms,
            updated_ms=fill.ts_ms,
        )
        self.positions = [*others, position]


class Sleeps:
    """An injectable ``sleep`` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)


def quiet_limits(now_ms: int = 0, equity: Decimal = Decimal(10_000)) -> LimitContext:
    """Return the pre-trade limits' context of an account with nothing recorded yet: no loss
    today, no losing streak, no entry or close so far, nothing open to correlate with."""
    return LimitContext(
        now_ms=now_ms,
        day_start_equity=equity,
        day_pnl=Decimal(0),
        consecutive_losses=0,
        entry_times_ms=(),
        last_close_ms={},
        correlations=(),
    )


class FlakyState:
    """A key-value store whose writes fail while ``down`` (a database locked past its busy
    timeout by another process, a full disk: ``error`` says which); reads go through."""

    def __init__(
        self, inner: object, error: str = "the database cannot be used now: database is locked"
    ) -> None:
        self.inner = inner
        self.error = error
        self.down = False

    async def get(self, key: StateKey) -> str | None:
        return await self.inner.get(key)  # type: ignore[attr-defined,no-any-return]

    async def set(self, key: StateKey, value: str) -> None:
        if self.down:
            raise StorageUnavailable(self.error)
        await self.inner.set(key, value)  # type: ignore[attr-defined]
