"""Bus events → one-line push messages, each with the alert kind its loudness is set by.

Neutral text (no platform markup): the front ends send it as it is. Kinds (``ALERT_KINDS``)
are what ``QT__CHAT__ALERTS`` sets loud / silent / off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.domain.events import (
    AlertRaised,
    DataGapDetected,
    Event,
    ExposureReduced,
    ModeChanged,
    ModelDrifted,
    ModelPromoted,
    ModelRetired,
    ModelRolledBack,
    ModelTrainingFailed,
    OrderFilled,
    OrderRejected,
    ProcessStarted,
    ProcessStopped,
    RiskAssessed,
    SignalProviderChanged,
    SizingFallback,
    SymbolFailed,
    TradeClosed,
    TradingStateChanged,
)
from core.domain.market import fmt_ts

# kind -> default loudness
ALERT_KINDS: dict[str, str] = {
    "fill": "silent",  # every fill (entries, take-profits, stops)
    "trade": "loud",  # a trade closed: pnl and exit reason (TP1/TP2/TP3/SL/TSL...)
    "risk": "loud",  # the risk level changed
    "mode": "loud",  # the CEO's (or a manual) mode changed
    "state": "loud",  # halted / reducing / resumed
    "alert": "loud",  # the brains' alerts, exposure cuts, sizing fallbacks
    "models": "silent",  # the provider or its models changed (promoted, rolled back, retired)
    "error": "loud",  # a symbol failed, an order rejected, a data gap
    "process": "silent",  # started / stopped
    "report": "loud",  # the daily report, a training run's report
}
LOUDNESS = ("loud", "silent", "off")


@dataclass(frozen=True, slots=True)
class Push:
    """One rendered message and its kind."""

    kind: str
    text: str


def _fill(e: OrderFilled) -> Push:
    return Push(
        "fill",
        f"{e.side.upper()} {e.symbol} {e.amount} @ {e.price:,.6g} (fee {e.fee:.4g}) "
        f"{e.client_order_id}",
    )


def _trade(e: TradeClosed) -> Push:
    mark = "+" if e.pnl > 0 else ""
    return Push(
        "trade",
        f"CLOSED {e.symbol} {e.side}: {mark}{e.pnl:,.2f} ({e.pnl_pct:+.2%}), exit {e.exit_reason}",
    )


def _mode(e: ModeChanged) -> Push | None:
    if e.previous == e.current:
        return None
    by = " (manual)" if e.manual else ""
    return Push("mode", f"MODE {e.previous} -> {e.current}{by}: {'; '.join(e.reasons)[:300]}")


def _state(e: TradingStateChanged) -> Push | None:
    if e.previous == e.current:
        return None
    return Push("state", f"TRADING {e.previous} -> {e.current} by {e.actor}: {e.reason}")


def _failed(e: SymbolFailed) -> Push:
    return Push(
        "error",
        f"ERROR {e.symbol} ({e.strikes}x): {e.error[:200]}; no entries before {fmt_ts(e.until_ms)}",
    )


def _gap(e: DataGapDetected) -> Push:
    return Push(
        "error",
        f"DATA GAP {e.symbol} {e.timeframe}: {e.missing} candle(s) {fmt_ts(e.from_ms)} - "
        f"{fmt_ts(e.to_ms)}",
    )


_RENDER: dict[type[Event], Callable[[Any], Push | None]] = {
    OrderFilled: _fill,
    TradeClosed: _trade,
    ModeChanged: _mode,
    TradingStateChanged: _state,
    AlertRaised: lambda e: Push("alert", f"ALERT ({e.severity}) {e.title}: {e.detail}"),
    ExposureReduced: lambda e: Push(
        "alert",
        f"REDUCED: closed {', '.join(e.symbols) or 'nothing'}: {e.reason}"
        + "".join(f"\nNOT closed {why}" for why in e.not_closed),
    ),
    SignalProviderChanged: lambda e: Push(
        "models", f"SIGNALS {e.previous} -> {e.provider}: {e.reason}"
    ),
    SymbolFailed: _failed,
    OrderRejected: lambda e: Push("error", f"REJECTED {e.symbol} {e.client_order_id}: {e.reason}"),
    DataGapDetected: _gap,
    ProcessStarted: lambda e: Push(
        "process", f"STARTED {e.mode} on {e.exchange} at {fmt_ts(e.ts_ms)}"
    ),
    ProcessStopped: lambda e: Push("process", f"STOPPED ({e.reason}) at {fmt_ts(e.ts_ms)}"),
    ModelPromoted: lambda e: Push(
        "models",
        f"PROMOTED {e.member} {e.version_id}"
        + (f" (replaces {e.previous})" if e.previous else "")
        + f": {e.reason}",
    ),
    ModelRolledBack: lambda e: Push(
        "models",
        f"ROLLED BACK {e.member}: "
        + (
            f"{e.version_id} serves again, not {e.rolled_back}"
            if e.version_id
            else f"{e.rolled_back} retired, no earlier champion: the fallback serves"
        )
        + f": {e.reason}",
    ),
    ModelRetired: lambda e: Push("models", f"RETIRED {e.member} {e.version_id}: {e.reason}"),
    ModelDrifted: lambda e: Push(
        "alert", f"DRIFT {e.member} {e.version_id}: {'; '.join(e.reasons)}"
    ),
    ModelTrainingFailed: lambda e: Push("error", f"TRAINING FAILED {e.member}: {e.reason}"),
    SizingFallback: lambda e: Push(
        "alert", f"SIZING {e.method} -> fixed ({e.reason}): {e.detail[:300]}"
    ),
}


class Renderer:
    """Render events; remembers the last risk level so only a change is pushed."""

    def __init__(self) -> None:
        self._risk_level: str | None = None

    def render(self, event: Event) -> Push | None:
        """Return the push for ``event`` (None: not pushed)."""
        if isinstance(event, RiskAssessed):
            return self._risk(event)
        render = _RENDER.get(type(event))
        return None if render is None else render(event)

    def _risk(self, e: RiskAssessed) -> Push | None:
        previous, self._risk_level = self._risk_level, e.level
        if previous is None or previous == e.level:
            return None  # the first one sets the baseline; only changes are news
        acts = f"; {'; '.join(e.measures)}" if e.measures else ""
        return Push(
            "risk",
            f"RISK {previous} -> {e.level} ({e.score:.0f}/100), drawdown {e.drawdown:.1%}{acts}",
        )


TOPICS = (RiskAssessed.topic, *(kind.topic for kind in _RENDER))


def chunks(text: str, limit: int) -> list[str]:
    """Return ``text`` in messages of at most ``limit`` characters (the platforms' limits),
    cut between lines where a line fits (a longer line is cut where it must)."""
    out: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:  # one line longer than a message: cut it
            if current:
                out.append(current)
                current = ""
            out.append(line[:limit])
            line = line[limit:]
        joined = f"{current}\n{line}" if current else line
        if len(joined) > limit:
            out.append(current)
            joined = line
        current = joined
    if current or not out:
        out.append(current)
    return out
