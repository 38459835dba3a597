"""The command core: one method per chat command, each returning a neutral ``Reply``.

Telegram, Discord and the console are thin front ends over it (``bot/chat``): the registry
(``bot/chat/registry.py``) names the commands, their arguments and roles; the dispatcher
checks who may run what, asks for confirmations and writes the audit trail; this module does
the work, on the live process's own services: the engine's trades, the trading state, the
policy store, the Risk Brain's latest assessment, the portfolio; the closed trades from their
record when one is wired (they outlive a restart), else the engine's memory. A capability that
is not running says so in one line; nothing here pretends.

Every reply is plain text lines (a front end may add its own formatting) and, for a chart, a
PNG. Arguments arrive parsed and validated (the registry's ``parse``): a method never sees a
malformed one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from core.brains.risk import RiskAssessment
from core.clock import Clock
from core.domain.enums import Mode, TradingState
from core.domain.events import ModeChanged
from core.domain.market import fmt_ts
from core.domain.model_versions import ModelStatus
from core.domain.portfolio import EquitySnapshot
from core.domain.trades import ClosedTrade
from core.errors import DataError, StorageUnavailable
from core.ports import Exchange, StateKey, Storage, TradeRepo
from core.services.adoption import ADOPT_PROVIDER
from core.services.brains import Brains
from core.services.bus import EventBus
from core.services.ceo_service import manual_levers, parse_manual
from core.services.engine import Engine
from core.services.health import HealthReport
from core.services.learning import LearningManager
from core.services.open_trade import OpenTrade
from core.services.policy_store import PolicyStore
from core.services.portfolio import PortfolioService
from core.services.trade_history import closed_trades
from core.services.trading_state import TradingStateService
from core.values import value_class

BRAINS_OFF = (
    "the brains are off (QT__BRAINS__ENABLED=false): there is no mode to set; /halt and "
    "/resume still work"
)
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_UNITS_MS = {"m": 60_000, "h": HOUR_MS, "d": DAY_MS}
MAX_MANUAL_MS = 365 * DAY_MS
MIN_MANUAL_MS = 60_000


def duration_ms(value: str) -> int:
    """Parse ``30m``, ``4h`` or ``2d`` into milliseconds (> 0, at most a year); raise
    ``ValueError`` with the accepted form otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([mhd])\s*", value)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(
            f"a duration is a number and m, h or d, like 30m, 4h or 2d; received {value!r}"
        )
    ms = round(float(match.group(1)) * _UNITS_MS[match.group(2)])
    if ms < MIN_MANUAL_MS:
        raise ValueError(f"at least 1m, received {value!r}")
    if ms > MAX_MANUAL_MS:
        raise ValueError(f"at most 365d, received {value!r} (until unset: leave it out)")
    return ms


def duration_text(ms: int) -> str:
    """Return ``ms`` as the largest whole unit: ``45m``, ``6h``, ``3d``."""
    for unit in ("d", "h", "m"):
        if ms >= _UNITS_MS[unit]:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return "<1m"


@value_class(frozen=True, slots=True)
class Reply:
    """What a command answers: a title, its lines, and optionally a PNG."""

    title: str
    lines: tuple[str, ...] = ()
    photo: bytes | None = None
    ok: bool = True  # False: refused or failed (the audit trail's outcome)
    confirm: str | None = None  # a confirmation the asker must give (its token), or none

    def text(self) -> str:
        """Return the reply as plain text (title, then its lines)."""
        return "\n".join((self.title, *self.lines))


def _money(x: Decimal | float) -> str:
    return f"{float(x):,.2f}"


NO_LEARNING = (
    "the learning manager is not running (the ensemble does not trade here, or "
    "QT__LEARNING__ENABLED=false)"
)


@dataclass(slots=True, kw_only=True)
class CommandServices:
    """The live process's parts the commands read and act on (``bot.app`` builds it)."""

    clock: Clock
    bus: EventBus
    storage: Storage
    engine: Engine
    exchange: Exchange
    trading_state: TradingStateService
    policy: PolicyStore
    portfolio: PortfolioService
    quote: str
    mode_label: str  # "demo" or "run"
    last_close: Callable[[], dict[str, float]] = dict  # by symbol, the newest close seen
    last_candle_ms: Callable[[], int | None] = lambda: None
    risk_latest: Callable[[], tuple[RiskAssessment | None, int | None]] | None = None
    # What trades now: the provider's name and its members' versions (none: a baseline).
    models: Callable[[], Sequence[str]] = tuple
    health_latest: Callable[[], HealthReport | None] | None = None
    brains: Brains | None = None  # None: the brains are off (no mode to set)
    learning: LearningManager | None = None  # None: no learning manager in this process
    trades: TradeRepo | None = None  # the closed trades' record (None: the engine's memory)


class CommandCore:
    """Run the commands (see module docstring)."""

    def __init__(self, services: CommandServices) -> None:
        self.s = services

    # --- read ----------------------------------------------------------------------------

    async def status(self) -> Reply:
        """Mode, state, equity, open positions with their exit ladders, the last candles."""
        s = self.s
        policy = s.policy.current()
        state = await s.trading_state.current()
        models = s.models()
        lines = [
            f"trading state {state.value} (operator), {policy.state.value} (brains); "
            f"mode {policy.mode.value} (policy v{policy.version})",
            await self._equity_line(),
            f"signals: {s.engine.signals.provider.name}"
            + (f" ({', '.join(models)})" if models else ""),
        ]
        if s.learning is not None:
            lines.append(s.learning.status_line(bool(models)))
        risk = self._risk()
        if risk is not None:
            lines.append(f"risk {risk.level.value} {risk.score:.0f}/100")
        trades = list(s.engine.trades.values())
        lines.append(f"open positions: {len(trades)}")
        lines.extend(self._position_lines(trades))
        closes = s.last_close()
        if closes:
            lines.append(
                f"last candle {fmt_ts(s.last_candle_ms())} UTC: "
                + ", ".join(f"{sym} {c:,.6g}" for sym, c in sorted(closes.items()))
            )
        return Reply(f"[{s.mode_label}] status", tuple(lines))

    async def positions(self) -> Reply:
        """The open positions with unrealised P&L and their exit ladders."""
        trades = list(self.s.engine.trades.values())
        if not trades:
            return Reply("no open position")
        return Reply(f"{len(trades)} open position(s)", tuple(self._position_lines(trades)))

    async def trades(self, n: int = 10) -> Reply:
        """The newest ``n`` closed trades."""
        closed = (await self._closed(limit=n))[::-1]
        if not closed:
            return Reply("no closed trade yet")
        return Reply(
            f"the {len(closed)} newest closed trade(s)", tuple(_trade_line(t) for t in closed)
        )

    async def profit(self, days: int | None = None) -> Reply:
        """Realised P&L of the trades closed in the last ``days`` (None: since the start)."""
        now = self.s.clock.now_ms()
        # Closed within the last ``days``: after the moment that many days ago.
        closed = await self._closed(since_ms=None if days is None else now - days * DAY_MS + 1)
        span = "since the start" if days is None else f"in the last {days} day(s)"
        if not closed:
            return Reply(f"no trade closed {span}")
        pnl = sum((t.pnl for t in closed), Decimal(0))
        wins = sum(1 for t in closed if t.pnl > 0)
        gains = sum((t.pnl for t in closed if t.pnl > 0), Decimal(0))
        losses = -sum((t.pnl for t in closed if t.pnl < 0), Decimal(0))
        pf = "inf" if not losses else f"{float(gains / losses):.2f}"
        return Reply(
            f"profit {span}: {_money(pnl)} {self.s.quote}",
            (
                f"{len(closed)} trades, {wins} won ({wins / len(closed):.0%}), profit factor {pf}",
                f"fees {_money(sum((t.fees for t in closed), Decimal(0)))} {self.s.quote}",
            ),
        )

    async def daily(self, n: int = 7) -> Reply:
        """Realised P&L per UTC day, the newest ``n`` days."""
        now = self.s.clock.now_ms()
        today = now - now % DAY_MS
        closed = await self._closed(since_ms=today - (n - 1) * DAY_MS, until_ms=today + DAY_MS)
        rows = []
        for k in range(n):
            start = today - k * DAY_MS
            day = [t for t in closed if start <= t.closed_ms < start + DAY_MS]
            pnl = sum((t.pnl for t in day), Decimal(0))
            rows.append(f"{fmt_ts(start)[:10]}: {_money(pnl)} {self.s.quote} ({len(day)} trades)")
        return Reply(f"daily profit, the last {n} UTC day(s)", tuple(rows))

    async def balance(self) -> Reply:
        """The account: equity, cash and each asset held."""
        held = await self.s.exchange.fetch_balances()
        lines = [await self._equity_line()]
        for asset, b in sorted(held.items()):
            if b.total:
                lines.append(f"{asset}: {b.total} (free {b.free})")
        return Reply("balance", tuple(lines))

    async def risk(self) -> Reply:
        """The Risk Brain's latest assessment."""
        if self.s.risk_latest is None:
            return Reply("risk brain not running (QT__BRAINS__ENABLED=false)", ok=False)
        a, at = self.s.risk_latest()
        if a is None:
            return Reply("no risk assessment yet (the risk_assessment job runs every hour)")
        lines = [
            f"drawdown {a.drawdown:.2%} (tier {a.tier}), exposure {a.exposure_pct:.2f}x equity, "
            f"leverage {a.leverage:.2f}, concentration {a.concentration:.2f}, "
            f"correlation {a.correlation:.2f}",
        ]
        for v in a.var_daily:
            lines.append(f"daily {v.method} {v.level:.0%}: VaR {v.var:.3%}, ES {v.es:.3%}")
        if a.tail is not None:
            hill = "-" if a.tail.hill_index is None else f"{a.tail.hill_index:.2f}"
            lines.append(
                f"tail: skew {a.tail.skew:.2f}, excess kurtosis {a.tail.excess_kurtosis:.2f}, "
                f"Hill {hill}, fat {a.tail.fat_tail}, score {a.tail.score:.0f}"
            )
        lines.extend(f"action: {m.kind.value} {m.value:g} ({m.reason})" for m in a.measures)
        lines.extend(f"note: {note}" for note in a.notes)
        return Reply(f"risk {a.level.value} {a.score:.0f}/100 at {fmt_ts(at)} UTC", tuple(lines))

    async def regime(self) -> Reply:
        """The market regime of each symbol's newest candle."""
        regimes = self.s.engine.regimes
        if not regimes:
            return Reply("no regime known yet (the detector warms up on the first candles)")
        picks = self.s.engine.strategies
        return Reply(
            "regimes",
            tuple(
                f"{sym}: {r.label}" + (f" (trading {picks[sym]})" if sym in picks else "")
                for sym, r in sorted(regimes.items())
            ),
        )

    async def health(self) -> Reply:
        """The health monitor's latest checks."""
        if self.s.health_latest is None:
            return Reply("health monitor not running", ok=False)
        report = self.s.health_latest()
        if report is None:
            return Reply("no health check yet (the health job runs every minute)")
        return Reply(
            f"health {report.status.value} at {fmt_ts(report.ts_ms)} UTC",
            tuple(f"{c.name}: {c.status.value}, {c.detail}" for c in report.checks),
        )

    async def models(self) -> Reply:
        """What trades: the provider, its members' versions, the registry's champions and
        shadows with their validation scores and age, and the method that sizes entries."""
        members = self.s.models()
        name = self.s.engine.signals.provider.name
        lines = list(members)
        now = self.s.clock.now_ms()
        for v in await self.s.storage.model_versions.list_versions():
            if v.status not in (ModelStatus.CHAMPION, ModelStatus.SHADOW):
                continue
            ll, gain = v.metrics.get("log_loss"), v.metrics.get("gate_sharpe_gain")
            score = (
                f"Sharpe {gain:+.2f} over the best simple sizer out of sample"
                if ll is None and gain is not None
                else "validation log-loss " + ("-" if ll is None else f"{ll:.4f}")
            )
            lines.append(
                f"{v.status.value.lower()} {v.member} {v.id}: {score}"
                f", trained {duration_text(now - v.created_ms)} ago"
            )
        if self.s.learning is not None and self.s.learning.training:
            lines.append("a training run is under way")
        sizing = self.s.engine.sizing.status_line()
        if not lines:
            return Reply(f"{name} trades; no model serves (a baseline)", (sizing,))
        return Reply(f"{name} trades", (*lines, sizing))

    async def retrain(self, actor: str, member: str | None = None) -> Reply:
        """Queue a training run of every member, or of ``member``."""
        if self.s.learning is None:
            return Reply(NO_LEARNING, ok=False)
        try:
            said = self.s.learning.request(actor, (member,) if member else ())
        except DataError as e:
            return Reply(str(e), ok=False)
        return Reply(said)

    async def rollback_model(self, actor: str, member: str) -> Reply:
        """Restore ``member``'s previous champion."""
        if self.s.learning is None:
            return Reply(NO_LEARNING, ok=False)
        try:
            said = await self.s.learning.rollback(member, f"asked by {actor}", actor)
        except DataError as e:
            return Reply(str(e), ok=False)
        return Reply(said)

    async def why(self, trade: str | None = None) -> Reply:
        """Why the bot entered a trade (by symbol or trade id; None: the newest open one)."""
        trades = list(self.s.engine.trades.values())
        if trade is not None:
            wanted = trade.upper()
            trades = [t for t in trades if wanted in (t.symbol.upper(), t.trade_id.upper())]
        if not trades:
            return Reply(f"no open trade {trade or ''}".rstrip())
        t = max(trades, key=lambda t: t.decided_ms)
        lines = [
            f"decided on the candle of {fmt_ts(t.decided_ms)} UTC with confidence "
            f"{t.confidence:.2f}, ATR {t.atr:.6g}",
        ]
        explanation = t.explanation
        if explanation is not None:
            lines.append(f"P(up) {explanation.p_up:.2f}: {explanation.members_text()}")
            lines.append(f"regime {explanation.regime}; top {explanation.features_text()}")
        else:
            lines.append("no model explanation (a baseline signal)")
        if t.sizing is not None:
            lines.append(f"sized {t.sizing.text()} (of the fixed-fractional risk size)")
        lines.extend(self._ladder_lines(t))
        return Reply(f"why {t.symbol} {t.side.value} ({t.trade_id})", tuple(lines))

    async def equity_history(self, days: int) -> list[EquitySnapshot]:
        """Return the account's equity snapshots of the last ``days`` (oldest first)."""
        since = self.s.clock.now_ms() - days * DAY_MS
        return await self.s.storage.balances.list_equity(start_ms=since)

    def closes(self, symbol: str, count: int) -> tuple[list[int], list[float]] | None:
        """Return the open times and closes of the symbol's newest ``count`` candles held
        (None: the process holds none of it)."""
        held = self.s.engine.signals.closes(symbol, self.s.clock.now_ms(), count)
        if held is None or not len(held[0]):
            return None
        return [int(t) for t in held[0]], [float(c) for c in held[1]]

    async def daily_report(self) -> Reply:
        """The day's summary: realised P&L and trades, the risk, the mode, the equity."""
        profit = await self.profit(1)
        lines = [profit.title, *profit.lines, await self._equity_line()]
        policy = self.s.policy.current()
        lines.append(
            f"mode {policy.mode.value}, trading {(await self.s.trading_state.current()).value}"
        )
        risk = self._risk()
        if risk is not None:
            lines.append(
                f"risk {risk.level.value} {risk.score:.0f}/100, drawdown {risk.drawdown:.1%}"
            )
        return Reply(
            f"[{self.s.mode_label}] daily report {fmt_ts(self.s.clock.now_ms())} UTC", tuple(lines)
        )

    # --- act -----------------------------------------------------------------------------

    async def halt(self, actor: str, flatten: bool = False) -> Reply:
        """Persist HALTED (new exposure stops now; waiting entries are canceled); with
        ``flatten`` also close every position the venue holds at market, those the engine
        has no plan or no trade for included, and say each symbol closed and each that could
        not be, with why. A database that refuses the write halts in memory at once
        (``fail_closed``), written as soon as it can be."""
        why = f"/halt by {actor}"
        lines = ["no new exposure; stops and exits at market still go; waiting entries canceled"]
        try:
            changed = await self.s.trading_state.set(TradingState.HALTED, reason=why, actor=actor)
        except StorageUnavailable as e:
            await self.s.trading_state.fail_closed(f"{why}; the database refused it: {e}")
            changed = True
            lines.append(f"held in memory: the database refused the write ({e}); kept retrying")
        title = "HALTED" + ("" if changed else " (it was already)")
        if flatten:
            cut = await self.s.engine.reduce_exposure(0.0, f"/halt flatten by {actor}")
            if cut.closed or not cut.not_closed:
                lines.append(f"closing at market: {', '.join(cut.closed) or 'nothing held'}")
            lines.extend(f"NOT closed {why}" for why in cut.not_closed)
            if cut.not_closed:  # a user who asked for a flat account must see it is not
                title += f", NOT flat: {len(cut.not_closed)} position(s) left"
        return Reply(title, tuple(lines))

    async def resume(self, actor: str) -> Reply:
        """Set the operator's state ACTIVE again (the brains' pause, if any, still holds)."""
        await self.s.trading_state.set(
            TradingState.ACTIVE, reason=f"/resume by {actor}", actor=actor
        )
        policy = self.s.policy.current()
        lines = []
        if policy.state is not TradingState.ACTIVE:
            lines.append(f"the brains still hold {policy.state.value} (mode {policy.mode.value})")
        return Reply("ACTIVE", tuple(lines))

    async def mode(
        self, actor: str, mode: Mode | None = None, for_ms: int | None = None, reason: str = ""
    ) -> Reply:
        """Show the mode, or set it by hand (optionally for ``for_ms``) between two brains
        cycles, recombined with the Risk Brain's actions at once (never looser than they)."""
        s = self.s
        policy = s.policy.current()
        if mode is None:
            manual = parse_manual(await s.storage.state.get(StateKey.MANUAL_MODE))
            if manual is None or not manual.active(s.clock.now_ms()):
                line = "the CEO Brain decides"
            else:
                line = f"manual, by {manual.actor} until {fmt_ts(manual.until_ms)}"
            return Reply(f"mode {policy.mode.value} (policy v{policy.version})", (line,))
        if s.brains is None:
            return Reply(BRAINS_OFF, ok=False)

        async def write() -> None:
            await set_manual_mode(
                s.storage, s.policy, s.clock, mode, for_ms, reason or "no reason given", actor
            )

        await s.brains.manual(write)  # the CEO announces the change (ModeChanged)
        until = "" if for_ms is None else f" for {for_ms // 60_000} min"
        now = s.policy.current()
        return Reply(
            f"mode {now.mode.value}{until} (manual, by {actor})",
            (f"policy v{now.version}, trading {now.state.value}; the Risk Brain's actions hold",),
        )

    async def clear_mode(self, actor: str) -> Reply:
        """Hand the mode back to the CEO Brain."""
        s = self.s
        if s.brains is None:
            return Reply(BRAINS_OFF, ok=False)

        await s.brains.manual(
            lambda: clear_manual_mode(s.storage, s.policy, s.clock, "/mode auto", actor)
        )
        now = s.policy.current()
        return Reply(f"mode {now.mode.value}: the CEO Brain decides again", (f"by {actor}",))

    # --- inside --------------------------------------------------------------------------

    async def _closed(
        self, *, since_ms: int | None = None, until_ms: int | None = None, limit: int | None = None
    ) -> list[ClosedTrade]:
        s = self.s
        return await closed_trades(
            s.trades, s.engine.closed_trades, since_ms=since_ms, until_ms=until_ms, limit=limit
        )

    def _risk(self) -> RiskAssessment | None:
        return None if self.s.risk_latest is None else self.s.risk_latest()[0]

    async def _equity_line(self) -> str:
        last = self.s.portfolio.last
        if last is None:
            account = await self.s.engine.account()
            return f"equity {_money(account.equity)} {self.s.quote}"
        return (
            f"equity {_money(last.equity)} {self.s.quote} (cash {_money(last.cash)}, "
            f"unrealised {_money(last.unrealized_pnl)}) at {fmt_ts(last.ts_ms)} UTC"
        )

    def _position_lines(self, trades: Sequence[OpenTrade]) -> list[str]:
        out = []
        prices = self.s.engine.prices
        for t in sorted(trades, key=lambda t: t.symbol):
            if not t.amount:
                out.append(f"{t.symbol} {t.side.value}: entry waiting")
                continue
            entry = t.entry_price
            price = prices.get(t.symbol, entry)
            sign = 1 if t.side.value == "long" else -1
            upnl = sign * (price - entry) * t.amount
            out.append(
                f"{t.symbol} {t.side.value} {t.amount} @ {entry:.6g}, now {price:.6g}, "
                f"unrealised {_money(upnl)} {self.s.quote}"
                + (" (adopted from the venue)" if t.provider == ADOPT_PROVIDER else "")
            )
            out.extend(f"  {line}" for line in self._ladder_lines(t))
        return out

    @staticmethod
    def _ladder_lines(t: OpenTrade) -> list[str]:
        plan = t.plan
        if plan is None:
            return []
        legs = [
            f"{leg.name} {leg.price:.6g} x {leg.amount - leg.filled}"
            for leg in plan.legs
            if not leg.canceled and leg.filled < leg.amount
        ]
        if plan.stop is not None:
            legs.append(
                f"stop {plan.stop.price:.6g}"
                + (f" ({plan.stop.reason})" if plan.stop.reason else "")
            )
        return [f"exits: {', '.join(legs) or 'none left'}"]


def _trade_line(t: ClosedTrade) -> str:
    return (
        f"{fmt_ts(t.closed_ms)} {t.symbol} {t.side.value} {_money(t.pnl)} ({t.pnl_pct:+.2%}) "
        f"exit {t.exit_reason}" + (f" by {t.provider}" if t.provider else "")
    )


async def set_manual_mode(
    storage: Storage,
    store: PolicyStore,
    clock: Clock,
    mode: Mode,
    for_ms: int | None,
    reason: str,
    actor: str,
) -> ModeChanged:
    """Hold ``mode`` by hand (for ``for_ms``; None: until cleared): stored for the CEO Brain,
    which honours it at its reviews, and its levers written through the policy store now
    (the Risk Brain's actions are combined in at the next cycle, never loosened). Return the
    ``ModeChanged`` to publish or append."""
    now = clock.now_ms()
    previous = store.current().mode
    until = None if for_ms is None else now + for_ms
    manual = {"mode": mode.value, "until_ms": until, "reason": reason, "actor": actor}
    await storage.state.set(StateKey.MANUAL_MODE, json.dumps(manual))
    await storage.state.set(StateKey.CEO_STATE, json.dumps({"mode": mode.value, "since_ms": now}))
    why = f"manual mode by {actor}: {reason}"
    await store.apply(
        manual_levers(mode, store.current(), store.base),
        source="manual",
        reason=why,
        expires_ms=until,
    )
    return ModeChanged(
        ts_ms=now, previous=previous.value, current=mode.value, reasons=(why,), manual=True
    )


async def clear_manual_mode(
    storage: Storage, store: PolicyStore, clock: Clock, reason: str, actor: str
) -> ModeChanged:
    """Hand the mode back to the CEO Brain (from its next review); return the event."""
    await storage.state.set(StateKey.MANUAL_MODE, "")
    mode = store.current().mode.value
    why = f"manual mode cleared by {actor}: {reason}"
    return ModeChanged(
        ts_ms=clock.now_ms(), previous=mode, current=mode, reasons=(why,), manual=True
    )
