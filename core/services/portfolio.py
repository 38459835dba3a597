"""Portfolio valuation: equity from the exchange's balances and positions at the latest prices."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

from core.clock import Clock
from core.domain.enums import MarketType
from core.domain.events import EquityRecorded
from core.domain.orders import Order
from core.domain.portfolio import Balance, EquitySnapshot, Position
from core.ports import BalanceRepo, Exchange
from core.services.bus import EventBus
from core.values import value_class

ZERO = Decimal(0)


def value_account(
    balances: Mapping[str, Balance],
    positions: list[Position],
    prices: Mapping[str, float],
    quote: str,
) -> tuple[Decimal, Decimal, Decimal]:
    """Return ``(equity, cash, unrealized_pnl)`` in the quote currency.

    ``cash`` is the quote wallet, without the perp positions' unrealized PnL; equity adds that
    PnL once. A quote balance that already includes it (a venue's margin balance, see
    ``Balance``) is equity as it stands, so the PnL is taken out of it for ``cash``; a position
    without a price then stays in ``cash``. Spot holdings are valued through their base-asset
    balances (``BTC`` at ``BTC/USDT``). Assets without a price are left out rather than guessed.
    """
    unrealized = ZERO
    for pos in positions:
        price = prices.get(pos.symbol)
        if pos.market_type is MarketType.PERP and price is not None:
            unrealized += pos.unrealized_pnl(Decimal(str(price)))
    quote_balance = balances.get(quote)
    cash = quote_balance.total if quote_balance is not None else ZERO
    if quote_balance is not None and quote_balance.includes_unrealized_pnl:
        cash -= unrealized
    equity = cash + unrealized
    for asset, balance in balances.items():
        price = prices.get(f"{asset}/{quote}")
        if asset != quote and price is not None:
            equity += balance.total * Decimal(str(price))
    return equity, cash, unrealized


@value_class(frozen=True, slots=True, kw_only=True)
class AccountView:
    """The account as sizing and the risk gate see it, at the given prices.

    Entry orders the venue has not filled yet count as if they had: a limit must not be
    passed because three symbols signalled on the same candle.
    """

    equity: Decimal
    free_quote: Decimal
    exposure: Decimal  # sum of position notionals and of pending entry orders
    positions: tuple[Position, ...]
    pending_entries: tuple[Order, ...] = ()  # open orders that add exposure

    def open_positions_except(self, symbol: str) -> int:
        """Return how many other symbols hold a position or wait for an entry fill."""
        busy = {p.symbol for p in self.positions} | {o.symbol for o in self.pending_entries}
        busy.discard(symbol)
        return len(busy)


def _pending_notional(order: Order, prices: Mapping[str, Decimal]) -> Decimal:
    """Return what an unfilled entry order adds: at its limit or trigger, else the price."""
    req = order.request
    level = req.price if req.price is not None else req.stop_price
    if level is None:
        level = prices.get(order.symbol, ZERO)
    return order.remaining * level


async def view_account(
    exchange: Exchange, prices: Mapping[str, Decimal], quote: str
) -> AccountView:
    """Read balances, positions and open orders from ``exchange``; value them at ``prices``."""
    balances = await exchange.fetch_balances()
    positions = await exchange.fetch_positions()
    pending = tuple(o for o in await exchange.fetch_open_orders() if not o.request.reduce_only)
    equity, _, _ = value_account(
        balances, positions, {s: float(p) for s, p in prices.items()}, quote
    )
    exposure = sum((p.amount * prices.get(p.symbol, p.entry_price) for p in positions), ZERO)
    exposure += sum((_pending_notional(o, prices) for o in pending), ZERO)
    free = balances[quote].free if quote in balances else ZERO
    return AccountView(
        equity=equity,
        free_quote=free,
        exposure=exposure,
        positions=tuple(positions),
        pending_entries=pending,
    )


class PortfolioService:
    """Take equity snapshots: store them and publish ``EquityRecorded``."""

    def __init__(
        self,
        *,
        exchange: Exchange,
        balances: BalanceRepo,
        bus: EventBus,
        clock: Clock,
        quote: str,
        prices: Callable[[], Mapping[str, float]],
    ) -> None:
        self._exchange = exchange
        self._balances = balances
        self._bus = bus
        self._clock = clock
        self._quote = quote
        self._prices = prices
        self.last: EquitySnapshot | None = None

    async def snapshot(self) -> EquitySnapshot:
        """Value the account now, persist the snapshot and publish it."""
        equity, cash, unrealized = value_account(
            await self._exchange.fetch_balances(),
            await self._exchange.fetch_positions(),
            self._prices(),
            self._quote,
        )
        snap = EquitySnapshot(
            ts_ms=self._clock.now_ms(), equity=equity, cash=cash, unrealized_pnl=unrealized
        )
        await self._balances.add_equity(snap)
        await self._bus.publish(
            EquityRecorded(ts_ms=snap.ts_ms, equity=equity, cash=cash, unrealized_pnl=unrealized)
        )
        self.last = snap
        return snap
