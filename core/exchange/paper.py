"""The paper exchange: the ``Exchange`` port on simulated fills, persisted so restarts resume.

Orders fill only when :meth:`PaperExchange.on_candle` is called with a new candle (the process
calls it before the engine sees the candle): pending market orders fill at its open, resting
stop and limit orders against its range, by the fill model in :mod:`core.exchange.sim` that the
backtester shares. Orders placed in reaction to those fills (the exit ladder after an entry
fill) count from the fill's moment and :meth:`PaperExchange.on_candle_rest` matches them
against the rest of the same candle, until :meth:`PaperExchange.end_candle`. The account
rules (reservations, spot holdings, perp margin, liquidation) are in
:mod:`core.exchange.paper_book`.

Every change is written through ``Storage`` inside one ``atomic()`` block, and the in-memory book
is replaced only after that block succeeds, so memory never runs ahead of the store. ``start()``
rebuilds the book from the store: open orders, balances, positions and the last candle and close
per symbol (``StateKey.PAPER_MARKS``), so a pending market order still fills on the next candle
and a candle seen before the restart is not filled twice.

Port semantics (``CcxtExchange`` matches the cancel and unknown-id rules):

* ``create_order`` with a known client order id returns the stored order, whatever its status
  (a REJECTED order stays rejected); a different order under the same id is ``OrderRejected``.
* A refused order is stored as REJECTED, then ``OrderRejected`` is raised with the reason.
* ``cancel_order`` of a finished order returns its final state unchanged (cancel is idempotent).
* ``fetch_order`` / ``cancel_order`` of an unknown id raise ``OrderRejected``.
* Exchange order ids are ``"paper-" + client order id``: unique because client ids are.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from json.encoder import encode_basestring_ascii

from core.clock import Clock
from core.domain.enums import MarketType, OrderStatus
from core.domain.margin import MarginConfig
from core.domain.market import Candle
from core.domain.market_rules import MarketRules
from core.domain.orders import Fill, Order, OrderRequest
from core.domain.portfolio import Balance, FundingPayment, Position
from core.errors import InvariantViolation, OrderRejected
from core.exchange.paper_book import BookConfig, CandleOutcome, Mark, PaperBook
from core.exchange.sim import FillModelConfig, to_price
from core.ports import StateKey, Storage
from core.values import value_class


class PaperExchange:
    """Simulated trading on one quote currency, spot or USDT-margined perpetuals."""

    def __init__(
        self,
        *,
        storage: Storage,
        clock: Clock,
        fill_config: FillModelConfig,
        starting_balance: Decimal,
        quote_currency: str = "USDT",
        market_type: MarketType = MarketType.SPOT,
        max_leverage: int = 1,
        min_notional: Decimal = Decimal(0),
        margin: MarginConfig | None = None,
        name: str = "paper",
        rules: Callable[[str], MarketRules] | None = None,
    ) -> None:
        if starting_balance <= 0:
            raise ValueError(f"starting_balance must be > 0, was {starting_balance}")
        if max_leverage < 1 or (market_type is MarketType.SPOT and max_leverage != 1):
            raise ValueError(f"max_leverage must be >= 1 (1 for spot), was {max_leverage}")
        self.name = name
        self._storage = storage
        self._clock = clock
        self._starting_balance = starting_balance
        self._config = BookConfig(
            quote=quote_currency,
            market_type=market_type,
            fill=fill_config,
            max_leverage=max_leverage,
            order_id_prefix=f"{name}-",
            min_notional=min_notional,
            margin=margin if market_type is MarketType.PERP else None,
            rules=rules,
        )
        self._book: PaperBook | None = None
        self._marks_dirty = False  # quiet candles moved marks that are not stored yet
        self._venue_cancels: list[Order] = []  # canceled by the venue itself, not yet reported
        # Per symbol, the candle being matched and the moment of its last fill (on_candle ..
        # end_candle): orders placed meanwhile react to those fills.
        self._moments: dict[str, _Moment] = {}
        # The Balance objects the store holds (the book reuses an unchanged asset's object), so
        # a write skips the assets that did not change. Only this exchange writes balances.
        self._stored_balances: Mapping[str, Balance] = {}
        # One writer at a time: a submit must not interleave with a candle's fills.
        self._lock = asyncio.Lock()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the account from storage, seeding the starting balance on the very first start."""
        store = self._storage
        async with self._lock:
            if await store.state.get(StateKey.PAPER_INITIALISED) is None:
                async with store.atomic():
                    seed = Balance(asset=self._config.quote, free=self._starting_balance)
                    await store.balances.set_balances([seed])
                    await store.state.set(StateKey.PAPER_INITIALISED, "1")
            balances = await store.balances.get_balances()
            positions = [
                p
                for p in await store.positions.list_positions()
                if p.market_type is self._config.market_type
            ]
            prefix = self._config.order_id_prefix
            orders = [
                o for o in await store.orders.list_open() if o.exchange_order_id.startswith(prefix)
            ]
            self._stored_balances = {}  # the book makes new objects: the next write has all
            self._book = PaperBook(
                self._config,
                totals={asset: b.total for asset, b in balances.items()},
                positions=positions,
                open_orders=orders,
                marks=_decode_marks(await store.state.get(StateKey.PAPER_MARKS)),
            )

    async def stop(self) -> None:
        """Store the latest marks and stop accepting calls."""
        async with self._lock:
            if self._book is not None:
                async with self._storage.atomic():
                    await self._store_marks(self._book)
            self._book = None

    async def _store_balances(self, book: PaperBook) -> Mapping[str, Balance]:
        """Write the balances that changed since the last write; return all of them.

        Call inside the write's ``atomic()`` block and adopt the result only once it succeeded.
        """
        balances = book.balance_values()
        stored = self._stored_balances
        if balances is stored:
            return balances  # nothing moved a balance since the last write (most fills of exits)
        changed = [b for asset, b in balances.items() if stored.get(asset) is not b]
        if changed:
            await self._storage.balances.set_balances(changed)
        return balances

    async def _store_position(self, book: PaperBook, before: PaperBook, symbol: str) -> None:
        """Write ``symbol``'s position if the candle changed it (positions are frozen values,
        so an unchanged one is the same object, which the store already holds)."""
        position = book.position(symbol)
        if position is before.position(symbol):
            return
        if position is None:
            await self._storage.positions.delete(symbol, self._config.market_type)
        else:
            await self._storage.positions.upsert(position)

    async def _store_marks(self, book: PaperBook) -> None:
        if self._marks_dirty:
            await self._storage.state.set(StateKey.PAPER_MARKS, _encode_marks(book.marks))
            self._marks_dirty = False

    # --- the Exchange port ---------------------------------------------------------------------

    async def create_order(self, request: OrderRequest) -> Order:
        """Accept an order (it fills on later candles) or store it REJECTED and raise."""
        async with self._lock:
            book = self._require_book()
            existing = book.open_order(request.client_order_id)
            existing = existing or await self._storage.orders.get(request.client_order_id)
            if existing is not None:
                _check_same(existing, request)
                return existing
            new_book = book.copy()
            moment = self._moments.get(request.symbol)
            # Placed in reaction to a fill inside a candle: it exists from that moment on.
            order = new_book.submit(
                request, moment.ts_ms if moment is not None else self._clock.now_ms()
            )
            async with self._storage.atomic():
                await self._storage.orders.upsert(order)
                balances = await self._store_balances(new_book)
                await self._store_marks(new_book)
            self._book, self._stored_balances = new_book, balances
        if order.status is OrderStatus.REJECTED:
            raise OrderRejected(
                f"{self.name}: order {order.client_order_id} rejected: {order.reason}"
            )
        return order

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        """Cancel an open order; a finished one is returned unchanged."""
        async with self._lock:
            book = self._require_book()
            order = await self._find(book, client_order_id, symbol)
            if not order.is_open:
                return order
            new_book = book.copy()
            canceled = new_book.cancel(client_order_id, self._clock.now_ms(), "canceled on request")
            async with self._storage.atomic():
                await self._storage.orders.upsert(canceled)
                balances = await self._store_balances(new_book)
            self._book, self._stored_balances = new_book, balances
            return canceled

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        """Return the order's current state; OrderRejected if it is unknown."""
        async with self._lock:
            return await self._find(self._require_book(), client_order_id, symbol)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return open orders, oldest first, optionally of one symbol."""
        return self._require_book().open_orders(symbol)

    async def reachable_orders(self, symbol: str) -> list[Order]:
        """Return what a candle of ``symbol`` could fill: its open orders and the venue's own
        liquidation stop of its position (fast replays skip candles that reach none)."""
        return self._require_book().reachable_orders(symbol, self._clock.now_ms())

    async def fetch_balances(self) -> dict[str, Balance]:
        """Return balances by asset (``used`` = reserved by open orders and margin)."""
        return self._require_book().balances()

    async def fetch_positions(self) -> list[Position]:
        """Return open positions (spot holdings we bought are LONG positions)."""
        return self._require_book().positions()

    # --- the simulated venue -------------------------------------------------------------------

    async def on_candle(self, symbol: str, candle: Candle) -> list[Fill]:
        """Fill what ``candle`` reaches and mark ``symbol`` at its close; return the fills in order.

        Call it for every closed candle before the engine sees it. A candle that is not newer
        than the last one seen for ``symbol`` is ignored (returns no fills). Until
        ``end_candle``, orders placed for ``symbol`` react to these fills: they are stamped at
        the moment of the last one and ``on_candle_rest`` matches them against the rest of
        the candle.
        """
        async with self._lock:
            current = self._require_book()
            if not current.needs_matching(symbol):
                # Quiet candle: only the mark moves. It is stored with the next write (every
                # order submission writes the marks), so a restart never re-fills a candle that
                # came before an order existed; until then a replayed quiet candle is harmless.
                current.mark(symbol, candle)
                self._marks_dirty = True
                return []
            book = current.copy()
            outcome = book.on_candle(symbol, candle, self._clock.now_ms())
            if outcome.stale:
                return []
            await self._commit(book, current, symbol, outcome)
            self._moments[symbol] = _moment(candle, outcome, None)
            return outcome.fills

    async def on_candle_rest(self, symbol: str) -> list[Fill]:
        """Match the orders placed since the last fills of the current candle of ``symbol``
        against the rest of that candle (see ``PaperBook.on_candle_rest``); return the fills."""
        async with self._lock:
            moment = self._moments.get(symbol)
            current = self._require_book()
            if moment is None or not current.needs_matching(symbol):
                return []
            book = current.copy()
            outcome = book.on_candle_rest(
                symbol, moment.candle, moment.price, moment.at_open, moment.ts_ms
            )
            if not outcome.orders:
                return []
            await self._commit(book, current, symbol, outcome)
            self._moments[symbol] = _moment(moment.candle, outcome, moment)
            return outcome.fills

    def end_candle(self, symbol: str) -> None:
        """Close the current candle of ``symbol``: later orders wait for the next candle."""
        self._moments.pop(symbol, None)

    async def _commit(
        self, book: PaperBook, before: PaperBook, symbol: str, outcome: CandleOutcome
    ) -> None:
        """Store what a candle changed, then adopt ``book`` (call with the lock held)."""
        store = self._storage
        async with store.atomic():
            for order in outcome.orders:
                await store.orders.upsert(order)
            for fill in outcome.fills:
                await store.fills.add(fill)
            balances = await self._store_balances(book)
            await self._store_position(book, before, symbol)
            await store.state.set(StateKey.PAPER_MARKS, _encode_marks(book.marks))
        self._book, self._stored_balances = book, balances
        self._marks_dirty = False
        self._venue_cancels.extend(o for o in outcome.orders if o.status is OrderStatus.CANCELED)

    async def apply_funding(self, symbol: str, rate: Decimal) -> FundingPayment | None:
        """Settle a funding event on ``symbol``'s position at its last mark (perps only)."""
        async with self._lock:
            book = self._require_book().copy()
            settled = book.apply_funding(symbol, rate)
            if settled is None:
                return None
            async with self._storage.atomic():
                balances = await self._store_balances(book)
            self._book, self._stored_balances = book, balances
            return settled

    def take_venue_cancels(self) -> list[Order]:
        """Return (and forget) the orders the venue canceled on its own during candles: a
        reduce-only order with nothing left to reduce, a capped remainder, an order whose funds
        ran out at the fill."""
        canceled, self._venue_cancels = self._venue_cancels, []
        return canceled

    def last_price(self, symbol: str) -> Decimal | None:
        """Return the close of the last candle seen for ``symbol``, or None."""
        mark = self._require_book().marks.get(symbol)
        return None if mark is None else mark.price

    # --- helpers -------------------------------------------------------------------------------

    def _require_book(self) -> PaperBook:
        if self._book is None:
            raise InvariantViolation(
                f"{self.name}: PaperExchange used before start() or after stop()"
            )
        return self._book

    async def _find(self, book: PaperBook, client_order_id: str, symbol: str) -> Order:
        order = book.open_order(client_order_id) or await self._storage.orders.get(client_order_id)
        if order is None or order.symbol != symbol:
            raise OrderRejected(
                f"{self.name}: no order with client id {client_order_id} on {symbol}"
            )
        return order


@value_class(frozen=True, slots=True)
class _Moment:
    """The candle a symbol is being matched against; the price and time of its last fill, and
    whether that fill was at the candle's open."""

    candle: Candle
    price: Decimal
    ts_ms: int
    at_open: bool = True


def _moment(candle: Candle, outcome: CandleOutcome, previous: _Moment | None) -> _Moment:
    """Return the moment after ``outcome``: that of its last fill; without fills the previous
    moment, or the candle's open when nothing filled before."""
    if outcome.moment is not None and outcome.fills:
        return _Moment(candle, outcome.moment, outcome.fills[-1].ts_ms, outcome.at_open)
    if previous is not None:
        return previous
    return _Moment(candle, to_price(candle.open), candle.ts_ms)


def _check_same(existing: Order, request: OrderRequest) -> None:
    old = existing.request
    same = (old.symbol, old.side, old.type, old.amount) == (
        request.symbol,
        request.side,
        request.type,
        request.amount,
    )
    if not same:
        raise OrderRejected(
            f"client order id {request.client_order_id} is already used by a different order "
            f"({old.side} {old.amount} {old.symbol} {old.type})"
        )


def _encode_marks(marks: dict[str, Mark]) -> str:
    # The text json.dumps(..., separators=(",", ":")) gives, built directly: this runs on every
    # write and the generic encoder cost more than the write. A Decimal's str needs no escaping.
    items = (
        f'{encode_basestring_ascii(s)}:{{"ts_ms":{int(m.ts_ms)},"price":"{m.price}"}}'
        for s, m in sorted(marks.items())
    )
    return "{" + ",".join(items) + "}"


def _decode_marks(raw: str | None) -> dict[str, Mark]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        return {s: Mark(ts_ms=int(m["ts_ms"]), price=Decimal(m["price"])) for s, m in data.items()}
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        raise InvariantViolation(
            f"stored {StateKey.PAPER_MARKS} is corrupt: {raw[:200]!r}"
        ) from exc
