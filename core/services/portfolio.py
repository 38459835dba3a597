"""Portfolio valuation: equity from the exchange's balances and positions at the latest prices."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

from core.clock import Clock
from core.domain.enums import MarketType
from core.domain.events import EquityRecorded
from core.domain.portfolio import Balance, EquitySnapshot, Position
from core.ports import BalanceRepo, Exchange
from core.services.bus import EventBus

ZERO = Decimal(0)


def value_account(
    balances: Mapping[str, Balance],
    positions: list[Position],
    prices: Mapping[str, float],
    quote: str,
) -> tuple[Decimal, Decimal, Decimal]:
    """Return ``(equity, cash, unrealized_pnl)`` in the quote currency.

    Spot holdings are valued through their base-asset balances (``BTC`` at ``BTC/USDT``);
    perpetual positions add their unrealized PnL on top of the quote balance, which already holds
    their margin. Assets without a price are left out rather than guessed.
    """
    cash = balances[quote].total if quote in balances else ZERO
    equity = cash
    for asset, balance in balances.items():
        price = prices.get(f"{asset}/{quote}")
        if asset != quote and price is not None:
            equity += balance.total * Decimal(str(price))
    unrealized = ZERO
    for pos in positions:
        price = prices.get(pos.symbol)
        if pos.market_type is MarketType.PERP and price is not None:
            unrealized += pos.unrealized_pnl(Decimal(str(price)))
    return equity + unrealized, cash, unrealized


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
