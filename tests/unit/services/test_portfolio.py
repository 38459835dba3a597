"""Account valuation: equity counts a perp position's unrealized PnL once, whichever balance the
exchange reports (a venue's margin balance already holds it, the paper wallet does not)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt

from core.clock import SimClock
from core.domain.enums import MarketType, Side
from core.exchange.ccxt import CcxtExchange
from core.services.bus import EventBus
from core.services.portfolio import PortfolioService, view_account
from storage.memory import MemoryStorage
from tests.fakes_ccxt import default_markets
from tests.unit.exchange.builders import BTC, NO_SLIP_FILLS, T0_MS, bar, req, started_paper

D = Decimal

# Binance USD-M GET /fapi/v3/account: wallet 10,000 USDT, a cross long of 50 at 100 marked at
# 110 (+500 unrealized), 1x. Binance's marginBalance is wallet + unrealized PnL.
BINANCE_ACCOUNT = {
    "totalWalletBalance": "10000",
    "totalUnrealizedProfit": "500",
    "totalMarginBalance": "10500",
    "assets": [
        {
            "asset": "USDT",
            "walletBalance": "10000.00",
            "unrealizedProfit": "500.00",
            "marginBalance": "10500.00",
            "maintMargin": "22.00",
            "initialMargin": "5500.00",
            "positionInitialMargin": "5500.00",
            "openOrderInitialMargin": "0.00",
            "crossWalletBalance": "10000.00",
            "crossUnPnl": "500.00",
            "availableBalance": "5000.00",
            "maxWithdrawAmount": "4500.00",
            "updateTime": 1_700_000_000_000,
        }
    ],
    "positions": [],
}


class BinanceUsdmCcxt:
    """A ccxt client answering like ccxt's binance on a USD-M account (defaultType swap)."""

    id = "binance"

    def __init__(self) -> None:
        # ccxt's own parser (the pinned version) turns Binance's answer into the unified
        # balance: free = availableBalance, used = initialMargin, total = marginBalance.
        self.balance = ccxt.binance().parse_balance_custom(BINANCE_ACCOUNT, "linear")
        self.markets: dict[str, dict[str, Any]] | None = None

    async def load_markets(self, reload: bool = False) -> dict[str, dict[str, Any]]:
        self.markets = default_markets()
        return self.markets

    async def fetch_balance(self) -> dict[str, Any]:
        return self.balance

    async def fetch_positions(self, symbols: Any = None) -> list[dict[str, Any]]:
        return [
            {
                "symbol": "BTC/USDT:USDT",
                "contracts": 50.0,
                "contractSize": 1.0,
                "side": "long",
                "entryPrice": 100.0,
                "markPrice": 110.0,
                "unrealizedPnl": 500.0,
                "leverage": 1,
                "initialMargin": 5500.0,
                "marginMode": "cross",
                "timestamp": T0_MS,
            }
        ]

    async def fetch_open_orders(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return []


def binance_usdm() -> CcxtExchange:
    return CcxtExchange(BinanceUsdmCcxt(), clock=SimClock(T0_MS), market_type=MarketType.PERP)


def test_the_fake_answers_with_ccxts_unified_binance_balance() -> None:
    usdt = BinanceUsdmCcxt().balance["USDT"]
    assert (usdt["free"], usdt["used"], usdt["total"]) == (5000.0, 5500.0, 10500.0)


async def test_binance_margin_balance_counts_unrealized_pnl_once_for_sizing() -> None:
    account = await view_account(binance_usdm(), {BTC: D(110)}, "USDT")
    assert account.equity == D(10_500)  # the venue's margin balance, not 11,000
    assert account.free_quote == D(5000)  # what the venue lets a new order use
    assert account.exposure == D(5500)


async def test_binance_equity_snapshot_splits_the_margin_balance_into_wallet_and_pnl() -> None:
    storage = MemoryStorage()
    portfolio = PortfolioService(
        exchange=binance_usdm(),
        balances=storage.balances,
        bus=EventBus(),
        clock=SimClock(T0_MS),
        quote="USDT",
        prices=lambda: {BTC: 110.0},
    )
    snap = await portfolio.snapshot()
    assert (snap.equity, snap.cash, snap.unrealized_pnl) == (D(10_500), D(10_000), D(500))


async def test_paper_wallet_balance_gets_the_unrealized_pnl_added_once() -> None:
    paper = await started_paper(fills=NO_SLIP_FILLS, market_type=MarketType.PERP)
    await paper.on_candle(BTC, bar(0, 100))
    await paper.create_order(req("open", Side.BUY, "10", market_type=MarketType.PERP))
    await paper.on_candle(BTC, bar(1, 100, close=110))  # filled at 100, marked at 110
    wallet = (await paper.fetch_balances())["USDT"].total
    assert wallet == D(9998)  # 10,000 less the 2 taker fee: no unrealized PnL in it

    account = await view_account(paper, {BTC: D(110)}, "USDT")
    assert account.equity == wallet + D(100)
    storage = MemoryStorage()
    snap = await PortfolioService(
        exchange=paper,
        balances=storage.balances,
        bus=EventBus(),
        clock=SimClock(T0_MS),
        quote="USDT",
        prices=lambda: {BTC: 110.0},
    ).snapshot()
    assert (snap.equity, snap.cash, snap.unrealized_pnl) == (wallet + 100, wallet, D(100))
