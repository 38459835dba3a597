"""The console prints trading events as readable lines."""

from __future__ import annotations

from decimal import Decimal as D

from rich.console import Console

from bot.console import _event_line
from core.domain.events import CandleClosed, OrderDenied, OrderFilled, TradeClosed

TS = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def _text(event: object) -> str:
    line = _event_line(event)  # type: ignore[arg-type]
    assert line is not None
    console = Console(record=True, width=200)
    console.print(line)
    return console.export_text().strip()


def test_fill_trade_and_denial_lines() -> None:
    fill = OrderFilled(
        ts_ms=TS + 86_400_000,  # the clock of a fast demo may run ahead: market time is shown
        fill_ts_ms=TS,
        client_order_id="qt-BTC-x-e",
        symbol="BTC/USDT",
        side="buy",
        amount=D("0.5"),
        price=D("42000.5"),
        fee=D("21.00026"),
        liquidity="taker",
    )
    assert _text(fill) == (
        "2024-01-01 00:00  BUY  BTC/USDT 0.5 @ 42,000.50  fee 21.0003  qt-BTC-x-e"
    )
    closed = TradeClosed(
        ts_ms=TS + 86_400_000,
        trade_id="t",
        symbol="ETH/USDT",
        side="long",
        opened_ms=TS,
        closed_ms=TS,
        amount=D(1),
        entry_price=D(100),
        exit_price=D(103),
        fees=D("0.2"),
        pnl=D("2.8"),
        pnl_pct=0.028,
        exit_reason="TP3",
    )
    assert _text(closed) == "2024-01-01 00:00  CLOSED ETH/USDT long pnl +2.80 (+2.80%)  exit TP3"
    denied = OrderDenied(
        ts_ms=TS, client_order_id="qt-1", symbol="BTC/USDT", reason="halted", detail="no orders"
    )
    assert _text(denied) == "2024-01-01 00:00  DENIED BTC/USDT qt-1: halted"


def test_market_events_are_not_printed() -> None:
    candle = CandleClosed(
        ts_ms=TS,
        symbol="BTC/USDT",
        timeframe="1h",
        open_ms=TS,
        open=1.0,
        high=1.0,
        low=1.0,
        close=1.0,
        volume=1.0,
    )
    assert _event_line(candle) is None


def test_the_status_line_lists_open_trades_with_their_liquidation_price() -> None:
    from types import SimpleNamespace

    from bot.console import _open_trades
    from core.domain.enums import PositionSide

    trades = {
        "BTC/USDT": SimpleNamespace(
            symbol="BTC/USDT", side=PositionSide.LONG, amount=D("0.5"), liquidation_price=None
        ),
        "ETH/USDT": SimpleNamespace(
            symbol="ETH/USDT",
            side=PositionSide.SHORT,
            amount=D(2),
            liquidation_price=D("2650.456"),
        ),
    }
    process = SimpleNamespace(engine=SimpleNamespace(trades=trades))
    assert _open_trades(process) == "BTC/USDT long 0.5, ETH/USDT short 2 liq 2,650.46"  # type: ignore[arg-type]


def test_a_trade_whose_entry_has_not_filled_says_so_instead_of_an_amount_of_zero() -> None:
    from types import SimpleNamespace

    from bot.console import _open_trades
    from core.domain.enums import PositionSide

    waiting = SimpleNamespace(
        symbol="BTC/USDT", side=PositionSide.LONG, amount=D(0), liquidation_price=None
    )
    process = SimpleNamespace(engine=SimpleNamespace(trades={"BTC/USDT": waiting}))
    assert _open_trades(process) == "BTC/USDT long (entry waiting)"  # type: ignore[arg-type]
