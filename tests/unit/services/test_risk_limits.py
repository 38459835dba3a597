"""The limits' service on an injected SimClock: what it learns from the bus, what survives a
restart, and the daily halt it sets and lifts (only while it is still its own)."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np

from core.brains.risk_gate import DenyReason, GateInput, OrderIntent, RiskVerdict, check_order
from core.clock import SimClock
from core.domain.enums import MarketType, PositionSide, TradingState
from core.domain.events import (
    CandleClosed,
    Event,
    OrderFilled,
    OrderSubmitted,
    TradeClosed,
    TradingStateChanged,
)
from core.domain.market import CandleSeries
from core.domain.policy import Policy
from core.domain.portfolio import Position
from core.services.bus import EventBus
from core.services.execution import ExecutionService
from core.services.portfolio import AccountView
from core.services.risk_limits import LIMITS_ACTOR, RiskLimitsService
from core.services.signal_book import SignalBook
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.fakes import FakeExchange
from tests.unit.services.engine_harness import ScriptedProvider

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
POLICY = Policy(allow_short=True)  # the limits at their defaults
BTC_LONG = Position(
    symbol="BTC/USDT",
    market_type=MarketType.SPOT,
    side=PositionSide.LONG,
    amount=D(1),
    entry_price=D(100),
    opened_ms=T0,
    updated_ms=T0,
)


class World:
    """A limits service over one store, as a process builds it; ``restart`` builds another."""

    def __init__(self, storage: MemoryStorage | None = None, clock: SimClock | None = None):
        self.storage = storage or MemoryStorage()
        self.clock = clock or SimClock(T0)
        self.bus = EventBus()
        self.events: list[Event] = []
        self.equity = D(10_000)
        self.positions: tuple[Position, ...] = ()

        async def record(e: Event) -> None:
            self.events.append(e)

        self.bus.subscribe("*", record)
        self.trading_state = TradingStateService(self.storage.state, self.bus, self.clock)
        self.signals = SignalBook(ScriptedProvider())
        self.limits = RiskLimitsService(
            store=self.storage.state,
            bus=self.bus,
            clock=self.clock,
            trading_state=self.trading_state,
            policy=lambda: POLICY,
            account=self.account,
            timeframe_ms=HOUR_MS,
            signals=self.signals,
        )

    async def account(self, marks: object = None) -> AccountView:
        return AccountView(
            equity=self.equity, free_quote=self.equity, exposure=D(0), positions=self.positions
        )

    def restart(self) -> World:
        return World(self.storage, self.clock)

    async def candle(self, symbol: str = "BTC/USDT") -> None:
        now = self.clock.now_ms()
        await self.bus.publish(
            CandleClosed(
                ts_ms=now,
                symbol=symbol,
                timeframe="1h",
                open_ms=now - HOUR_MS,
                open=100.0,
                high=100.0,
                low=100.0,
                close=100.0,
                volume=1.0,
            )
        )

    async def closed(self, pnl: str, symbol: str = "BTC/USDT") -> None:
        now = self.clock.now_ms()
        await self.bus.publish(
            TradeClosed(
                ts_ms=now,
                trade_id=f"t{now}",
                symbol=symbol,
                side="long",
                opened_ms=now - HOUR_MS,
                closed_ms=now,
                amount=D(1),
                entry_price=D(100),
                exit_price=D(100) + D(pnl),
                fees=D(0),
                pnl=D(pnl),
                pnl_pct=float(pnl) / 100,
                exit_reason="SL" if D(pnl) < 0 else "TP1",
            )
        )

    async def entry_sent(self, symbol: str = "BTC/USDT", tag: str = "entry") -> None:
        await self.bus.publish(
            OrderSubmitted(
                ts_ms=self.clock.now_ms(),
                client_order_id=f"qt-{symbol}-{self.clock.now_ms()}-{tag}",
                exchange_order_id="1",
                symbol=symbol,
                side="buy",
                type="market",
                amount=D(1),
                price=None,
                stop_price=None,
                reduce_only=tag != "entry",
                tag=tag,
            )
        )

    async def check(self, symbol: str = "ETH/USDT", *, short: bool = False) -> RiskVerdict:
        intent = OrderIntent(
            symbol=symbol, notional=D(100), reduces_exposure=False, opens_short=short
        )
        limits = await self.limits.context(intent, None)  # first, as ExecutionService does
        return check_order(
            GateInput(
                intent=intent,
                state=await self.trading_state.current(),
                policy=POLICY,
                equity=self.equity,
                open_positions=0,
                total_exposure=D(0),
                limits=limits,
            )
        )

    def later(self, ms: int) -> None:
        self.clock.advance_to(self.clock.now_ms() + ms)

    def state_changes(self) -> list[TradingStateChanged]:
        return [e for e in self.events if isinstance(e, TradingStateChanged)]


async def test_nothing_recorded_allows_an_entry() -> None:
    assert (await World().check()).allowed


async def test_a_loss_streak_cooldown_survives_a_restart_and_ends_on_time() -> None:
    w = World()
    for _ in range(3):
        w.later(HOUR_MS)
        await w.closed("-10", symbol="SOL/USDT")
    assert (await w.check()).reason is DenyReason.LOSS_STREAK
    again = w.restart()  # the process restarts three hours into the six-hour cooldown
    again.later(3 * HOUR_MS)
    assert (await again.check()).reason is DenyReason.LOSS_STREAK
    again.later(3 * HOUR_MS - 1)
    assert (await again.check()).reason is DenyReason.LOSS_STREAK
    again.later(1)
    assert (await again.check()).allowed


async def test_a_win_ends_the_streak() -> None:
    w = World()
    for pnl in ("-10", "-10", "5", "-10", "-10"):
        w.later(HOUR_MS)
        await w.closed(pnl, symbol="SOL/USDT")
    assert (await w.check()).allowed  # two losses since the win


async def test_a_symbol_cools_down_after_its_own_close_only() -> None:
    w = World()
    await w.closed("5", symbol="ETH/USDT")
    assert (await w.check("ETH/USDT")).reason is DenyReason.SYMBOL_COOLDOWN
    assert (await w.check("BTC/USDT")).allowed
    w.later(HOUR_MS)
    assert (await w.restart().check("ETH/USDT")).allowed


async def test_entries_sent_count_and_exits_do_not() -> None:
    w = World()
    for i in range(4):
        await w.entry_sent(f"S{i}/USDT")
        await w.entry_sent(f"S{i}/USDT", tag="TP1")
    assert (await w.check()).reason is DenyReason.ENTRIES_PER_HOUR
    w.later(HOUR_MS)
    assert (await w.check()).allowed


async def test_the_daily_loss_halts_until_the_next_utc_day() -> None:
    w = World()
    w.positions = (BTC_LONG,)  # an open position moves the equity between fills
    w.later(HOUR_MS)
    await w.candle()  # the day's first candle: it starts at 10_000
    w.equity = D("9500.01")
    await w.candle()
    assert await w.trading_state.current() is TradingState.ACTIVE  # 499.99 lost: not yet
    w.equity = D(9_500)
    await w.candle()
    assert await w.trading_state.current() is TradingState.HALTED
    [halt] = w.state_changes()
    assert halt.actor == LIMITS_ACTOR and "daily loss limit" in halt.reason
    assert "2026-01-01" in halt.reason
    w.later(22 * HOUR_MS)  # 23:00, still the same day
    await w.candle()
    assert await w.trading_state.current() is TradingState.HALTED
    assert (await w.check("BTC/USDT")).reason is DenyReason.HALTED
    w.later(HOUR_MS)  # midnight: a new UTC day, its own starting equity
    await w.candle()
    assert await w.trading_state.current() is TradingState.ACTIVE
    assert w.state_changes()[-1].actor == LIMITS_ACTOR
    assert (await w.check("BTC/USDT")).allowed


async def test_the_gate_denies_the_daily_loss_even_before_a_candle_halts() -> None:
    w = World()
    w.positions = (BTC_LONG,)  # an open position moves the equity between fills
    await w.candle()
    w.equity = D(9_000)
    verdict = await w.check("BTC/USDT")  # gathering the context notices the loss and halts
    assert verdict.reason is DenyReason.HALTED
    assert await w.trading_state.current() is TradingState.HALTED


async def test_an_operator_halt_on_top_of_the_limit_is_not_lifted() -> None:
    w = World()
    w.positions = (BTC_LONG,)  # an open position moves the equity between fills
    await w.candle()
    w.equity = D(9_000)
    await w.candle()
    assert await w.trading_state.current() is TradingState.HALTED
    cli = TradingStateService(w.storage.state, EventBus(), w.clock)  # another process
    await cli.set(TradingState.HALTED, reason="exchange incident", actor="cli")
    w.later(DAY_MS)
    await w.candle()
    assert await w.trading_state.current() is TradingState.HALTED


async def test_a_resume_and_halt_in_between_is_not_lifted_even_with_the_same_reason() -> None:
    w = World()
    w.positions = (BTC_LONG,)  # an open position moves the equity between fills
    await w.candle()
    w.equity = D(9_000)
    await w.candle()
    ours = await w.trading_state.reason()
    await w.trading_state.set(TradingState.ACTIVE, reason="looked at it", actor="telegram:1")
    await w.candle()  # still today: the limit does not halt twice on one day
    assert await w.trading_state.current() is TradingState.ACTIVE
    await w.trading_state.set(TradingState.HALTED, reason=ours, actor="telegram:1")
    w.later(DAY_MS)
    await w.restart().candle()  # a restart in between too
    assert await w.trading_state.current() is TradingState.HALTED


async def test_a_halt_by_someone_else_first_is_never_taken_over() -> None:
    w = World()
    w.positions = (BTC_LONG,)  # an open position moves the equity between fills
    await w.candle()
    await w.trading_state.set(TradingState.HALTED, reason="operator", actor="cli")
    w.equity = D(9_000)
    await w.candle()
    assert len(w.state_changes()) == 1  # no halt of its own
    w.later(DAY_MS)
    await w.candle()
    assert await w.trading_state.current() is TradingState.HALTED
    assert await w.trading_state.reason() == "operator"


async def test_reducing_before_the_halt_is_what_the_next_day_restores() -> None:
    w = World()
    w.positions = (BTC_LONG,)  # an open position moves the equity between fills
    await w.candle()
    await w.trading_state.set(TradingState.REDUCING, reason="winding down", actor="cli")
    w.equity = D(9_000)
    await w.candle()
    assert await w.trading_state.current() is TradingState.HALTED
    w.later(DAY_MS)
    await w.candle()
    assert await w.trading_state.current() is TradingState.REDUCING
    assert await w.trading_state.reason() == "winding down"


def walk(symbol: str, steps: np.ndarray) -> CandleSeries:
    ts = T0 - len(steps) * HOUR_MS + np.arange(len(steps), dtype=np.int64) * HOUR_MS
    close = 100 * np.exp(np.cumsum(steps))
    return CandleSeries.from_columns(symbol, "1h", ts, close, close, close, close, np.ones(len(ts)))


async def test_correlation_with_an_open_position_on_the_same_side() -> None:
    rng = np.random.default_rng(7)
    common = rng.normal(0, 0.01, 150)
    w = World()
    w.signals.seed(walk("BTC/USDT", common))
    w.signals.seed(walk("ETH/USDT", common + rng.normal(0, 0.002, 150)))  # ~0.98
    w.signals.seed(walk("SOL/USDT", rng.normal(0, 0.01, 150)))  # unrelated
    w.positions = (BTC_LONG,)
    verdict = await w.check("ETH/USDT")
    assert verdict.reason is DenyReason.CORRELATION and "0.9" in verdict.detail
    assert (await w.check("SOL/USDT")).allowed
    assert (await w.check("ETH/USDT", short=True)).allowed  # the other side: a hedge


async def test_too_little_common_history_is_an_unknown_correlation() -> None:
    rng = np.random.default_rng(3)
    w = World()
    w.signals.seed(walk("BTC/USDT", rng.normal(0, 0.01, 150)))
    w.signals.seed(walk("ETH/USDT", rng.normal(0, 0.01, 15)))  # a new listing
    w.positions = (BTC_LONG,)
    assert (await w.check("ETH/USDT")).reason is DenyReason.LIMIT_CONTEXT_MISSING


async def test_only_closed_candles_are_correlated() -> None:
    """A backtest's book holds the whole series: the candles after now must not count."""
    w = World()
    series = walk("BTC/USDT", np.zeros(200))
    w.signals.seed(series)
    seen = w.signals.closes("BTC/USDT", T0 - HOUR_MS, 500)
    assert seen is not None and int(seen[0][-1]) == T0 - HOUR_MS and len(seen[0]) == 200


async def test_unreadable_stored_limits_deny_new_entries() -> None:
    storage = MemoryStorage()
    from core.ports import StateKey

    await storage.state.set(StateKey.RISK_LIMITS, "{not json")
    w = World(storage)
    assert (await w.check()).reason is DenyReason.LIMIT_CONTEXT_MISSING


async def test_execution_without_the_limits_denies_new_exposure_but_not_exits() -> None:
    clock = SimClock(T0)
    bus = EventBus()
    denied: list[Event] = []

    async def record(e: Event) -> None:
        denied.append(e)

    bus.subscribe("risk.*", record)

    async def active() -> TradingState:
        return TradingState.ACTIVE

    async def exposure(symbol: str) -> tuple[D, int, D]:
        return D(10_000), 0, D(0)

    service = ExecutionService(
        exchange=FakeExchange(balances={"USDT": D(10_000)}, clock=clock),
        bus=bus,
        clock=clock,
        trading_state=active,
        policy=Policy,
        exposure=exposure,
    )
    entry = OrderIntent(symbol="BTC/USDT", notional=D(100), reduces_exposure=False)
    assert (await service.check(entry)).reason is DenyReason.LIMIT_CONTEXT_MISSING
    exit_ = OrderIntent(symbol="BTC/USDT", notional=D(100), reduces_exposure=True)
    assert (await service.check(exit_)).allowed


async def test_while_flat_only_a_fill_moves_the_equity_a_candle_watches() -> None:
    w = World()
    await w.candle()  # valued once: flat
    w.equity = D(9_000)  # (a fee or a close, without its fill heard of yet)
    await w.candle()
    assert await w.trading_state.current() is TradingState.ACTIVE  # not valued: nothing open
    await w.bus.publish(
        OrderFilled(
            ts_ms=w.clock.now_ms(),
            fill_ts_ms=w.clock.now_ms(),
            client_order_id="qt-x",
            symbol="BTC/USDT",
            side="sell",
            amount=D(1),
            price=D(90),
            fee=D(0),
            liquidity="taker",
        )
    )
    await w.candle()
    assert await w.trading_state.current() is TradingState.HALTED
