"""Execution: every order goes out through here, past the risk gate, with a client order id.

Client order ids are deterministic: ``qt-<base>-<symbol hash>-<candle open, base36 s>-<tag>``.
The same decision on the same candle yields the same id. Venues are idempotent on client ids
only so far: the paper venue for ever, Binance among open orders only (an id sent again after
its order filled is a new order). So the engine never decides a candle twice (it stores the last
one decided, before an entry goes out) and ``CcxtExchange`` looks an entry up by its id before
sending it. The base is cut to 8 characters to stay readable, so the hash of the whole symbol keeps
symbols apart that share their first characters (BROCCOLI714/USDT, BROCCOLIF3B/USDT) or their
base (BTC/USDT, BTC/USDC, BTC/USDT:USDT). Ids stay within Binance's 36-character limit, in
letters, digits and dashes (a subset of every major venue's alphabet).

Every outcome is an event: ``OrderSubmitted``, ``OrderRejected`` (the venue said no, never
retried), ``OrderDenied`` (our risk gate said no), ``OrderCanceled``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from functools import lru_cache

from core.brains.limits import LimitContext
from core.brains.risk_gate import GateInput, OrderIntent, RiskVerdict, check_order
from core.clock import Clock
from core.domain.enums import OrderStatus, OrderType, Side, TradingState
from core.domain.events import OrderCanceled, OrderDenied, OrderRejected, OrderSubmitted
from core.domain.orders import Order, OrderRequest
from core.domain.policy import Policy, stricter_state
from core.domain.portfolio import Position
from core.errors import DataError
from core.errors import OrderRejected as VenueRejected
from core.ports import Exchange
from core.services.bus import EventBus
from core.services.order_gate import OrderGate
from core.services.portfolio import AccountView
from core.values import value_class

log = logging.getLogger(__name__)

_ID_SAFE = re.compile(r"[^A-Za-z0-9]")
# Orders that limit or end a loss: a halt still lets them through (when reduce-only).
_PROTECTIVE = frozenset({OrderType.STOP_MARKET, OrderType.MARKET})
MAX_CLIENT_ID_LEN = 36


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@lru_cache(maxsize=256)
def _id_part(text: str) -> str:
    # Symbols and tags repeat for every order: clean each once.
    return _ID_SAFE.sub("", text)


@lru_cache(maxsize=256)
def _symbol_part(symbol: str) -> str:
    """Return ``<base, 8 chars at most>-<5 base36 digits of the symbol's sha256>``."""
    digest = int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big")
    return f"{_id_part(symbol.split('/')[0])[:8]}-{_base36(digest % 36**5):0>5}"


def client_order_id(symbol: str, candle_open_ms: int, tag: str) -> str:
    """Return the deterministic client order id of an order decided on a candle."""
    cid = f"qt-{_symbol_part(symbol)}-{_base36(candle_open_ms // 1000)}-{_id_part(tag)}"
    if len(cid) > MAX_CLIENT_ID_LEN:
        raise ValueError(f"client order id {cid!r} is longer than {MAX_CLIENT_ID_LEN}")
    return cid


@value_class(frozen=True, slots=True)
class Submission:
    """What became of an order handed to ``ExecutionService.submit``.

    ``order`` is the venue's order when it was sent; otherwise ``denied`` says whether our own
    gate held it back (the trading state or a limit: it may pass later) rather than the venue
    refusing it (``OrderRejected``: sending it again would be refused again).
    """

    order: Order | None
    denied: bool = False
    in_doubt: bool = False  # the request failed in a way that may have reached the venue
    reason: str = ""  # why it was denied or refused ("" when it went)

    @property
    def sent(self) -> bool:
        """Return True when the venue accepted the order."""
        return self.order is not None

    @property
    def working(self) -> bool:
        """Return True when the order must be tracked: accepted, or possibly accepted."""
        return self.sent or self.in_doubt


ExposureView = Callable[[str], Awaitable[tuple[Decimal, int, Decimal]]]
"""Return ``(equity, open positions excluding symbol, total exposure)`` for the gate."""

LimitsView = Callable[[OrderIntent, AccountView | None], Awaitable[LimitContext | None]]
"""Return the pre-trade limits' context for new exposure (``RiskLimitsService.context``)."""


class ExecutionService:
    """Send orders through the risk gate to the exchange and publish what happened."""

    def __init__(
        self,
        *,
        exchange: Exchange,
        bus: EventBus,
        clock: Clock,
        trading_state: Callable[[], Awaitable[TradingState]],
        policy: Callable[[], Policy],
        exposure: ExposureView,
        limits: LimitsView | None = None,
        order_gate: OrderGate | None = None,
        venue_reports_cancels: bool = False,
    ) -> None:
        self._exchange = exchange
        # The paper venue announces the orders it ends itself (the market service publishes
        # them); a live venue is asked (the engine's sync), and a cancel that finds an order
        # the venue ended says so, or nothing would.
        self._venue_reports_cancels = venue_reports_cancels
        # Held from the gate check to the venue's answer, beside the other orders; a halt
        # takes it alone to be written, so no order checked before a halt goes out after it
        # is acknowledged (``core.services.order_gate``).
        self._order_gate = order_gate or OrderGate()
        self._bus = bus
        self._clock = clock
        self._state = trading_state
        self._policy = policy
        self._exposure = exposure
        # None: nothing gathers the limits' context, so each limit that is on denies new
        # exposure (fail closed); a policy with the limits off trades as before.
        self._limits = limits

    async def trading_state(self) -> TradingState:
        """Return the trading state every order is gated by: the stricter of the operator's
        (read from the store) and the policy's (the brains' pause)."""
        return stricter_state(await self._state(), self._policy().state)

    async def check(self, intent: OrderIntent, account: AccountView | None = None) -> RiskVerdict:
        """Run the risk gate for ``intent`` without sending anything.

        ``account`` is the valuation the caller just made (the engine sizes entries on one);
        without it the gate values the account itself.
        """
        limits: LimitContext | None = None
        if not intent.reduces_exposure and self._limits is not None:
            # First: it may start a new UTC day (lifting its own halt) or halt trading.
            limits = await self._limits(intent, account)
        if intent.reduces_exposure:
            # Only the trading state can stop an exposure-reducing order: skip the valuation.
            equity, open_positions, exposure = Decimal(0), 0, Decimal(0)
        elif account is not None:
            equity, exposure = account.equity, account.exposure
            open_positions = account.open_positions_except(intent.symbol)
        else:
            equity, open_positions, exposure = await self._exposure(intent.symbol)
        return check_order(
            GateInput(
                intent=intent,
                state=await self.trading_state(),
                policy=self._policy(),
                equity=equity,
                open_positions=open_positions,
                total_exposure=exposure,
                limits=limits,
            )
        )

    async def submit(
        self,
        request: OrderRequest,
        *,
        reference_price: Decimal,
        account: AccountView | None = None,
        stop_price: Decimal | None = None,
        liquidation_price: Decimal | None = None,
    ) -> Submission:
        """Gate and send an order; say whether it went, was denied or was rejected (the last
        two are published).

        ``reference_price`` values the order for the gate (market orders have no price);
        ``account`` is passed on to ``check``; an entry's planned ``stop_price`` and
        ``liquidation_price`` (perps) let the gate refuse a stop beyond liquidation.
        """
        intent = OrderIntent(
            symbol=request.symbol,
            notional=request.amount * reference_price,
            reduces_exposure=request.reduce_only,
            opens_short=request.side is Side.SELL and not request.reduce_only,
            leverage=request.leverage,
            protective=request.type in _PROTECTIVE,
            stop_price=stop_price,
            liquidation_price=liquidation_price,
        )
        if intent.reduces_exposure and intent.protective:
            # A stop or an exit at market goes in every trading state (``check_order``): no
            # halt written meanwhile changes its verdict, so it waits for no other order in
            # the gate (another symbol's entry retried against a slow venue must not hold a
            # fresh fill's stop back).
            return await self._check_and_send(request, intent, account)
        async with self._order_gate.hold():
            return await self._check_and_send(request, intent, account)

    async def _check_and_send(
        self, request: OrderRequest, intent: OrderIntent, account: AccountView | None
    ) -> Submission:
        verdict = await self.check(intent, account)
        now = self._clock.now_ms()
        if not verdict.allowed:
            await self._bus.publish(
                OrderDenied(
                    ts_ms=now,
                    client_order_id=request.client_order_id,
                    symbol=request.symbol,
                    reason=verdict.reason.value,
                    detail=verdict.detail,
                )
            )
            why = verdict.reason.value + (f": {verdict.detail}" if verdict.detail else "")
            return Submission(order=None, denied=True, reason=why)
        try:
            order = await self._exchange.create_order(request)
        # A bad request (DataError: the adapters map the venue's 400s on an order call to
        # OrderRejected, but a request it refused as malformed is no less refused) is a
        # rejection too: never an escape that leaves the caller believing the order works.
        except (VenueRejected, DataError) as e:
            await self._bus.publish(
                OrderRejected(
                    ts_ms=now,
                    client_order_id=request.client_order_id,
                    symbol=request.symbol,
                    reason=str(e),
                )
            )
            return Submission(order=None, reason=str(e))
        if self._bus.wants(OrderSubmitted.topic):
            await self._bus.publish(
                OrderSubmitted(
                    ts_ms=now,
                    client_order_id=request.client_order_id,
                    exchange_order_id=order.exchange_order_id,
                    symbol=request.symbol,
                    side=request.side.value,
                    type=request.type.value,
                    amount=request.amount,
                    price=request.price,
                    stop_price=request.stop_price,
                    reduce_only=request.reduce_only,
                    tag=request.tag,
                )
            )
        return Submission(order=order)

    async def position(self, symbol: str) -> Position | None:
        """Return the venue's position in ``symbol`` (None when flat)."""
        for position in await self._exchange.fetch_positions():
            if position.symbol == symbol:
                return position
        return None

    async def position_amount(self, symbol: str) -> Decimal:
        """Return the size of the venue's position in ``symbol`` (0 when flat)."""
        position = await self.position(symbol)
        return Decimal(0) if position is None else position.amount

    async def cancel(
        self, client_order_id: str, symbol: str, *, reason: str, asked_before: bool = False
    ) -> Order | None:
        """Cancel an order (allowed in every trading state); return its final state, or None
        when the venue does not know it.

        An order that is already finished is returned as it is, and no cancel is sent; one
        found canceled is published as canceled (our cancel before it, whose answer was lost,
        with ``asked_before``; else the venue's own, which nothing reported: the order was
        still ours to cancel, no sync had found it ended; a paper venue reports its own), so
        the audit trail holds every order of ours that ended (an order whose submission was
        in doubt has no other event).
        The returned order's ``filled`` says what it filled before it ended: the caller
        reports fills it had not heard of. A venue that cannot be reached raises
        ``DependencyError`` (the order may still be working: ask again).
        """
        try:
            order = await self._exchange.fetch_order(client_order_id, symbol)
        except VenueRejected as e:
            log.warning("cancel of %s: the venue does not know it: %s", client_order_id, e)
            return None
        if not order.is_open:
            ours_to_say = asked_before or not self._venue_reports_cancels
            if order.status is OrderStatus.CANCELED and ours_to_say:
                # The chaos harness: a market exit the venue expired (its position closed by
                # the stop meanwhile), sent just before a kill; the restart heard the stop's
                # fill first and closed the trade, its leftovers found ended: no event of the
                # trail named that exit.
                await self._bus.publish(
                    OrderCanceled(
                        ts_ms=self._clock.now_ms(),
                        client_order_id=client_order_id,
                        symbol=symbol,
                        reason=f"{reason} (confirmed after its answer was lost)"
                        if asked_before
                        else f"venue: ended before our cancel ({reason})",
                    )
                )
            return order
        try:
            order = await self._exchange.cancel_order(client_order_id, symbol)
        except VenueRejected as e:
            # It ended between our look and the cancel (filled, most likely): its final state.
            log.info("cancel of %s refused (%s): reading its final state", client_order_id, e)
            try:
                return await self._exchange.fetch_order(client_order_id, symbol)
            except VenueRejected:
                return None
        if order.status is not OrderStatus.CANCELED:
            return order  # it filled (or was rejected) first: nothing was canceled
        await self._bus.publish(
            OrderCanceled(
                ts_ms=self._clock.now_ms(),
                client_order_id=client_order_id,
                symbol=symbol,
                reason=reason,
            )
        )
        return order
