"""The console front end: a live status line (rich) while the process runs.

On a terminal it redraws one line in place; elsewhere (CI, logs, pipes) it prints a plain line
every few seconds, so progress is visible either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.text import Text

from core.domain.enums import TradingState
from core.domain.events import (
    AlertRaised,
    EntryExplained,
    Event,
    ExposureReduced,
    ModeChanged,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    SignalProviderChanged,
    SizingFallback,
    TradeClosed,
)
from core.domain.market import fmt_ts

if TYPE_CHECKING:
    from bot.app import TradingProcess


def _open_trades(process: TradingProcess) -> str:
    """Return the engine's open trades, with where the venue would liquidate them (perps)."""
    parts = []
    for trade in process.engine.trades.values():
        # Nothing filled yet: the entry order waits (e.g. placed on the last candle seen).
        size = trade.amount if trade.amount else "(entry waiting)"
        text = f"{trade.symbol} {trade.side.value} {size}"
        if trade.liquidation_price is not None:
            text += f" liq {trade.liquidation_price:,.2f}"
        parts.append(text)
    return ", ".join(parts)


def _event_line(event: Event) -> Text | None:
    when = fmt_ts(event.ts_ms)
    if isinstance(event, OrderFilled):
        # Market time of the fill: the clock may run ahead of a demo replayed very fast.
        style = "green" if event.side == "buy" else "red"
        return Text.assemble(
            (f"{fmt_ts(event.fill_ts_ms)}  ", "dim"),
            (f"{event.side.upper():4} ", style),
            f"{event.symbol} {event.amount} @ {event.price:,.2f}  fee {event.fee:.4f}  ",
            (event.client_order_id, "dim"),
        )
    if isinstance(event, TradeClosed):
        style = "bold green" if event.pnl > 0 else "bold red"
        return Text.assemble(
            (f"{fmt_ts(event.closed_ms)}  ", "dim"),
            ("CLOSED ", style),
            f"{event.symbol} {event.side} pnl ",
            (f"{event.pnl:+,.2f} ({event.pnl_pct:+.2%})", style),
            f"  exit {event.exit_reason}",
        )
    if isinstance(event, SignalProviderChanged):
        return Text.assemble(
            (f"{when}  ", "dim"),
            ("SIGNALS ", "bold cyan"),
            f"{event.provider} trades: {event.reason}",
        )
    if isinstance(event, EntryExplained):
        why = event.explanation
        return Text.assemble(
            (f"{when}  ", "dim"),
            ("WHY ", "cyan"),
            f"{event.symbol} {event.side}: P(up) {why.p_up:.2f} ({why.members_text()}), "
            f"regime {why.regime}, top {why.features_text()}",
            f", sized {event.sizing.text()}" if event.sizing is not None else "",
        )
    if isinstance(event, ModeChanged):
        return Text.assemble(
            (f"{when}  ", "dim"),
            ("MODE ", "bold magenta"),
            f"{event.previous} -> {event.current}{' (manual)' if event.manual else ''}: ",
            "; ".join(event.reasons),
        )
    if isinstance(event, AlertRaised):
        return Text.assemble(
            (f"{when}  ", "dim"), ("ALERT ", "bold red"), f"{event.title}: {event.detail}"
        )
    if isinstance(event, ExposureReduced):
        return Text.assemble(
            (f"{when}  ", "dim"),
            ("REDUCED ", "bold yellow"),
            f"closed {', '.join(event.symbols) or 'nothing'}: {event.reason}",
            "".join(f"; NOT closed {why}" for why in event.not_closed),
        )
    if isinstance(event, SizingFallback):
        return Text.assemble(
            (f"{when}  ", "dim"),
            ("SIZING ", "bold yellow"),
            f"{event.method} falls back to fixed ({event.reason}): {event.detail}",
        )
    if isinstance(event, OrderDenied | OrderRejected):
        return Text.assemble(
            (f"{when}  ", "dim"),
            ("DENIED " if isinstance(event, OrderDenied) else "REJECTED ", "yellow"),
            f"{event.symbol} {event.client_order_id}: {event.reason}",
        )
    return None


class StatusConsole:
    """Render the process status periodically until stopped."""

    def __init__(
        self, process: TradingProcess, *, console: Console | None = None, refresh_s: float = 0.5
    ) -> None:
        self._process = process
        self._console = console or Console()
        self._refresh_s = refresh_s if self._console.is_terminal else max(refresh_s, 5.0)
        self._task: asyncio.Task[None] | None = None
        self._live: Live | None = None

    def status_text(self) -> Text:
        """Return the current status line."""
        p = self._process
        stats = p.market.stats
        prices = "  ".join(f"{s} {c:,.2f}" for s, c in sorted(stats.last_close.items()))
        equity = p.portfolio.last
        eq = f"{equity.equity:,.2f}" if equity else "-"
        state = p.trading_state.cached or "-"
        policy = p.policy.current()
        if policy.state is not TradingState.ACTIVE:  # the brains' pause, stricter one shown
            state = f"{state}/{policy.state.value} (brains)"
        brains = p.brains
        latest = brains.risk.latest if brains is not None else None
        risk = "-" if latest is None else f"{latest.level.value} {latest.score:.0f}"
        line = Text()
        line.append(f"[{p.parts.mode_label}] ", style="bold cyan")
        line.append(f"market {fmt_ts(stats.last_candle_ms)} UTC  ")
        line.append(f"candles {stats.candles}  fills {stats.fills}  events {p.events_seen}  ")
        line.append(f"equity {eq}  state {state}  ")
        line.append(f"mode {policy.mode.value}  risk {risk}  ", style="magenta")
        line.append(prices, style="green")
        held = _open_trades(p)
        if held:
            line.append(f"  open {held}", style="yellow")
        return line

    async def _on_event(self, event: Event) -> None:
        """Print orders, fills and closed trades as they happen, above the status line."""
        line = _event_line(event)
        if line is not None:
            self._console.print(line)

    async def start(self) -> None:
        """Begin rendering, and print trading events as they happen."""
        topics = (OrderFilled, TradeClosed, OrderDenied, OrderRejected, SignalProviderChanged)
        shown = (EntryExplained, ModeChanged, AlertRaised, ExposureReduced, SizingFallback)
        for kind in (*topics, *shown):
            self._process.bus.subscribe(kind.topic, self._on_event, name="console")
        if self._console.is_terminal:
            self._live = Live(self.status_text(), console=self._console, auto_refresh=False)
            self._live.start()
        self._task = asyncio.create_task(self._loop(), name="status-console")

    async def _loop(self) -> None:
        while True:
            await self._process.trading_state.current()  # shows a `qt state` change at once
            self._render()
            await asyncio.sleep(self._refresh_s)

    def _render(self) -> None:
        if self._live is not None:
            self._live.update(self.status_text(), refresh=True)
        else:
            self._console.print(self.status_text())

    async def stop(self) -> None:
        """Render a last time and stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._render()
        if self._live is not None:
            self._live.stop()
            self._live = None
