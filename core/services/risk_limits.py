"""Gather what the pre-trade limits need (``core.brains.limits``) and enforce the daily halt.

It listens on the bus: ``TradeClosed`` (the loss streak, each symbol's last close),
``OrderSubmitted`` of entries (entries per hour: counted when sent, not when filled, so
several symbols entering on one candle count before their fills) and ``CandleClosed`` (the
market-time tick of the daily loss). Its state is kept in the key-value store
(``StateKey.RISK_LIMITS``), so a restart in the middle of a cooldown keeps it.

Daily loss: the UTC day starts with the equity first valued in it (the day's first candle, or
the first entry checked); when today's loss (equity now, open pnl included, against that)
reaches the limit, trading is HALTED (actor "risk"), and at the first candle of the next UTC
day the state before the halt is restored: only if the halt is still its own (the same
reason, no resume and no other halt asked for in between: ``StateKey.HALT_MARK``). An
operator's halt, or anything's later halt, is never lifted.
The clock is market time, so a backtest halts and resumes on simulated days. A fast backtest
(``FastReplay``) values the account only on the candles it processes, so open losses that
come back before any fill or signal may not halt it where a full replay would.

Correlations come from the signal book's closes (the newest ``CORRELATION_RETURNS`` log
returns, closed by now); funding from ``funding`` (a backtest's funding file; the exchange
port does not tell it, so demo and run say "unknown", which denies only with
``funding_unknown_denies``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from core.analytics.correlation import log_return_correlation
from core.brains.limits import HOUR_MS, LimitContext, OpenCorrelation
from core.brains.risk_gate import OrderIntent
from core.clock import Clock
from core.domain.enums import PositionSide, Side, TradingState
from core.domain.events import CandleClosed, Event, OrderFilled, OrderSubmitted, TradeClosed
from core.domain.policy import Policy
from core.errors import StorageUnavailable
from core.ports import KeyValueRepo, StateKey
from core.services.bus import EventBus
from core.services.portfolio import AccountView
from core.services.signal_book import SignalBook
from core.services.trading_state import TradingStateService

log = logging.getLogger(__name__)

LIMITS_ACTOR = "risk"
DAY_MS = 86_400_000
CORRELATION_RETURNS = 100  # candles of log returns compared
MIN_CORRELATION_RETURNS = 20  # fewer in common: the correlation is unknown
# json.dumps(..., sort_keys=True) made a new encoder per call; the state is dumped after every
# change it may have seen (a candle of a new day, an entry, a close), to tell if it moved.
_ENCODER = json.JSONEncoder(sort_keys=True)
FundingLookup = Callable[[str, int], Decimal | None]
"""Return a symbol's current funding rate at a market time (None: unknown)."""


@dataclass(slots=True)
class _Halt:
    reason: str
    day: int
    resume_mark: str | None  # StateKey.RESUMED_MS when we halted: a resume since moves it
    halt_mark: str | None  # StateKey.HALT_MARK of our halt: another halt since moves it
    previous: str  # the state before the halt, restored the next day
    previous_reason: str


@dataclass(slots=True)
class _State:
    day: int | None = None
    day_start_equity: Decimal | None = None
    losses: int = 0
    last_loss_ms: int | None = None
    entries: list[int] = field(default_factory=list)
    closes: dict[str, int] = field(default_factory=dict)
    halt: _Halt | None = None

    def dump(self) -> str:
        return _ENCODER.encode(
            {
                "day": self.day,
                "day_start_equity": (
                    None if self.day_start_equity is None else str(self.day_start_equity)
                ),
                "losses": self.losses,
                "last_loss_ms": self.last_loss_ms,
                "entries": self.entries,
                "closes": self.closes,
                "halt": None
                if self.halt is None
                else {
                    "reason": self.halt.reason,
                    "day": self.halt.day,
                    "resume_mark": self.halt.resume_mark,
                    "halt_mark": self.halt.halt_mark,
                    "previous": self.halt.previous,
                    "previous_reason": self.halt.previous_reason,
                },
            }
        )

    @classmethod
    def load(cls, text: str) -> _State:
        raw = json.loads(text)
        start = raw.get("day_start_equity")
        halt = raw.get("halt")
        return cls(
            day=raw.get("day"),
            day_start_equity=None if start is None else Decimal(start),
            losses=int(raw.get("losses", 0)),
            last_loss_ms=raw.get("last_loss_ms"),
            entries=[int(t) for t in raw.get("entries", [])],
            closes={str(s): int(t) for s, t in raw.get("closes", {}).items()},
            halt=None if halt is None else _Halt(**halt),
        )


class RiskLimitsService:
    """Keep the limits' state from the bus; build each entry's ``LimitContext``."""

    def __init__(
        self,
        *,
        store: KeyValueRepo,
        bus: EventBus,
        clock: Clock,
        trading_state: TradingStateService,
        policy: Callable[[], Policy],
        account: Callable[[Mapping[str, Decimal]], Awaitable[AccountView]],
        timeframe_ms: int,
        signals: SignalBook | None = None,
        perp: bool = False,
        funding: FundingLookup | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._trading_state = trading_state
        self._policy = policy
        self._account = account  # values the account, these marks over the engine's prices
        # Whether the account may hold positions (None: not valued yet): while it holds none,
        # only a fill moves its equity, so a candle needs no valuation.
        self._exposed: bool | None = None
        self._timeframe_ms = timeframe_ms
        self.signals = signals
        self._perp = perp
        self._funding = funding
        self._state: _State | None = None
        self._unreadable = False
        self._saved = ""
        bus.subscribe(TradeClosed.topic, self._on_trade_closed, name="risk_limits.trade_closed")
        bus.subscribe(OrderSubmitted.topic, self._on_submitted, name="risk_limits.submitted")
        bus.subscribe(CandleClosed.topic, self._on_candle, name="risk_limits.candle")
        bus.subscribe(OrderFilled.topic, self._on_filled, name="risk_limits.filled")

    # --- the state, kept in the store -----------------------------------------------------------

    async def _loaded(self) -> _State:
        if self._state is None:
            text = await self._store.get(StateKey.RISK_LIMITS)
            try:
                self._state = _State.load(text) if text else _State()
                self._saved = text or ""
            except (ValueError, TypeError, KeyError) as e:
                # Fail closed: every limit that is on denies until the key is readable again.
                log.error("stored risk limits are unreadable (%s): new entries denied", e)
                self._unreadable = True
                self._state = _State()
        return self._state

    async def _save(self) -> None:
        if self._unreadable or self._state is None:
            return  # never overwrite what an operator must look at
        text = self._state.dump()
        if text == self._saved:
            return
        try:
            await self._store.set(StateKey.RISK_LIMITS, text)
        except StorageUnavailable as e:
            await self._trading_state.fail_closed(str(e))
            return
        self._saved = text

    # --- what the bus tells -----------------------------------------------------------------

    async def _on_trade_closed(self, event: Event) -> None:
        if not isinstance(event, TradeClosed):
            return
        state = await self._loaded()
        state.closes[event.symbol] = max(event.closed_ms, state.closes.get(event.symbol, 0))
        if event.pnl < 0:
            state.losses += 1
            state.last_loss_ms = event.closed_ms
        else:
            state.losses = 0  # a winning (or even) trade ends the streak
        await self._save()

    async def _on_submitted(self, event: Event) -> None:
        if not isinstance(event, OrderSubmitted) or event.tag != "entry":
            return
        state = await self._loaded()
        state.entries = [t for t in state.entries if event.ts_ms - t < HOUR_MS] + [event.ts_ms]
        await self._save()

    async def _on_filled(self, event: Event) -> None:
        self._exposed = True  # value the account at the next candle

    async def _on_candle(self, event: Event) -> None:
        if not isinstance(event, CandleClosed):
            return
        state = await self._loaded()
        day = self._clock.now_ms() // DAY_MS
        if state.day == day and state.halt is None:
            if not self._policy().daily_loss_limit_pct or self._exposed is False:
                return  # nothing to watch, or nothing open to move the equity
        # The engine has not seen this close yet (it runs after the event): value at it.
        account = await self._account({event.symbol: Decimal(repr(event.close))})
        self._exposed = bool(account.positions or account.pending_entries)
        await self.observe(account.equity)

    # --- the daily loss ---------------------------------------------------------------------

    async def observe(self, equity: Decimal) -> None:
        """Note the equity now: start a new UTC day (lifting our own halt), or halt trading
        when today's loss reached the daily limit."""
        state = await self._loaded()
        now = self._clock.now_ms()
        day = now // DAY_MS
        if state.day != day:
            state.day, state.day_start_equity = day, equity
            await self._save()
        if state.halt is not None and state.halt.day < day:
            await self._lift_halt(state, state.halt)
        limit = self._policy().daily_loss_limit_pct
        start = state.day_start_equity
        if not limit or start is None or start <= 0 or state.halt is not None:
            return
        if start - equity >= limit * start:
            await self._halt(state, day, start - equity, limit * start)

    async def _halt(self, state: _State, day: int, loss: Decimal, limit: Decimal) -> None:
        previous = await self._trading_state.current()
        if previous is TradingState.HALTED:
            return  # halted by someone else: theirs to lift
        previous_reason = await self._trading_state.reason()
        when = datetime.fromtimestamp(day * DAY_MS / 1000, UTC).date().isoformat()
        reason = (
            f"risk: daily loss limit reached on {when} UTC (loss {loss:.2f} >= {limit:.2f}); "
            "trading resumes at the next UTC day"
        )
        await self._trading_state.set(TradingState.HALTED, reason=reason, actor=LIMITS_ACTOR)
        state.halt = _Halt(
            reason=await self._trading_state.reason(),  # as stored (redacted)
            day=day,
            resume_mark=await self._store.get(StateKey.RESUMED_MS),
            halt_mark=await self._store.get(StateKey.HALT_MARK),
            previous=previous.value,
            previous_reason=previous_reason,
        )
        log.warning("%s", reason)
        await self._save()

    async def _lift_halt(self, state: _State, halt: _Halt) -> None:
        state.halt = None
        current = await self._trading_state.current()
        ours = (
            current is TradingState.HALTED
            and await self._trading_state.reason() == halt.reason
            and await self._store.get(StateKey.RESUMED_MS) == halt.resume_mark
            and await self._store.get(StateKey.HALT_MARK) == halt.halt_mark
        )
        if not ours:
            log.info("the daily loss halt was taken over or lifted since: left as it is")
        else:
            back = TradingState(halt.previous)
            why = (
                halt.previous_reason
                if back is TradingState.REDUCING
                else "risk: a new UTC day, the daily loss limit starts again"
            )
            await self._trading_state.set(back, reason=why, actor=LIMITS_ACTOR)
        await self._save()

    # --- an entry's context -----------------------------------------------------------------

    async def context(
        self, intent: OrderIntent, account: AccountView | None
    ) -> LimitContext | None:
        """Return what the limits need to judge ``intent`` (new exposure) now; None when the
        stored state is unreadable (the limits that are on deny)."""
        account = account if account is not None else await self._account({})
        await self.observe(account.equity)  # a new day, or the limit reached, counts first
        state = await self._loaded()
        if self._unreadable:
            return None
        now = self._clock.now_ms()
        start = state.day_start_equity
        return LimitContext(
            now_ms=now,
            day_start_equity=start,
            day_pnl=None if start is None else account.equity - start,
            consecutive_losses=state.losses,
            last_loss_ms=state.last_loss_ms,
            entry_times_ms=tuple(state.entries),
            last_close_ms=dict(state.closes),
            correlations=self._correlations(intent, account, now),
            perp=self._perp,
            funding_rate=None if self._funding is None else self._funding(intent.symbol, now),
        )

    def _correlations(
        self, intent: OrderIntent, account: AccountView, now_ms: int
    ) -> tuple[OpenCorrelation, ...] | None:
        """Correlate the candidate with every other open position and waiting entry."""
        if self._policy().max_correlation >= 1:
            return ()  # off: nothing to compute
        if self.signals is None:
            return None
        opened = {p.symbol: p.side is PositionSide.LONG for p in account.positions}
        for order in account.pending_entries:
            opened.setdefault(order.symbol, order.request.side is Side.BUY)
        opened.pop(intent.symbol, None)
        if not opened:
            return ()
        until = now_ms - self._timeframe_ms  # candles closed by now
        mine = self.signals.closes(intent.symbol, until, CORRELATION_RETURNS + 1)
        out = []
        for symbol, long in sorted(opened.items()):
            theirs = self.signals.closes(symbol, until, CORRELATION_RETURNS + 1)
            corr = (
                None
                if mine is None or theirs is None
                else log_return_correlation(
                    mine,
                    theirs,
                    returns=CORRELATION_RETURNS,
                    min_returns=MIN_CORRELATION_RETURNS,
                )
            )
            out.append(OpenCorrelation(symbol=symbol, long=long, correlation=corr))
        return tuple(out)
