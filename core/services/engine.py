"""The trading engine: one per process, the same in backtest, demo and run.

On every closed candle of a symbol: signal -> (open trade? manage it : maybe enter) with
sizing from the stop distance and the pre-trade risk gate in the execution service. Fills
arrive as ``OrderFilled`` events: an entry fill gets an exit plan from the Exit Brain, exit
fills go back to the brain through the exit executor. Only the clock, the feed and the exchange
differ between modes; nothing here knows which mode it is in.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TypeVar

from core.brains.exit_moves import (
    CandleClose,
    hold_ends_ms,
    on_candle,
    tighten_stop,
    watch_level,
)
from core.brains.exits import (
    ExitPlan,
    PlanRefused,
    StopMode,
    exit_at_market,
    plan_exits,
)
from core.brains.regime import Regime
from core.brains.sizing import VOL_WINDOW, daily_vol_pct, volatility_scale
from core.clock import Clock
from core.domain.enums import (
    MarketType,
    OrderStatus,
    OrderType,
    PositionSide,
    Side,
    TradingState,
)
from core.domain.events import (
    AlertRaised,
    EntryExplained,
    Event,
    ExposureReduced,
    FundingSettled,
    ModelMemberExcluded,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    PolicyUpdated,
    RegimeChanged,
    StrategySelected,
    SymbolFailed,
    SymbolRecovered,
    TradingStateChanged,
)
from core.domain.explanations import EntryExplanation
from core.domain.market import Candle, timeframe_to_ms
from core.domain.market_rules import MarketRules
from core.domain.orders import OrderRequest, closed_outside_id, is_closed_outside, is_liquidation
from core.domain.policy import Policy
from core.domain.portfolio import Position
from core.domain.trades import ClosedTrade
from core.errors import (
    DataError,
    DependencyError,
    InvariantViolation,
    QTError,
    StorageUnavailable,
)
from core.errors import OrderRejected as VenueRejected
from core.market.rules_book import RulesBook
from core.ml.rl.observation import entry_features
from core.ports import Exchange, KeyValueRepo, StateKey
from core.services.adoption import adopted_position_trade, adoption_plan
from core.services.bus import EventBus
from core.services.engine_locks import SymbolLocks, acquire_even_if_cancelled, all_of
from core.services.execution import ExecutionService, Submission, client_order_id
from core.services.exit_executor import CLOSED_OUTSIDE_NAME, LIQUIDATION_NAME, ExitExecutor
from core.services.flatten import (
    ADOPTED_PROVIDER,
    ExposureCut,
    adopted_trade,
    adoption_order,
    market_plan,
)
from core.services.open_trade import OpenTrade, missed_fill
from core.services.order_plans import EngineConfig, OrderPlanner
from core.services.portfolio import AccountView, view_account
from core.services.risk_limits import LIMITS_ACTOR
from core.services.signal_book import SignalBook
from core.services.sizing_service import SizingService
from core.services.symbol_health import SymbolHealth
from core.services.trade_codec import decode_trades, encode_trades
from core.services.universe import Universe
from core.services.watched_stop import watched_stop_hit
from core.signals.base import Signal
from core.signals.handover import excluded_members

log = logging.getLogger(__name__)
_T = TypeVar("_T")
ZERO = Decimal(0)
# How long the venue must show no position, while the plan holds one, before the engine books
# it as closed outside its orders: longer than any venue's positions lag behind its fills.
CLOSED_OUTSIDE_AFTER_MS = 60_000
# The order ids of the latest closed trades the engine remembers, so a fill of one of them
# that comes after the trade was forgotten is said (``Engine._late_fill``), not dropped.
CLOSED_ORDERS_KEPT = 256
# A venue position on the side of the engine's trade is that trade's unless it holds more than
# the trade explains by over this share of it or this many amount steps, whichever is larger:
# rounding to the venue's step and contract sizes is honest noise, a hand addition is not.
EXCESS_TOLERANCE = Decimal("0.01")
EXCESS_STEPS = 2


class Engine:
    """Turn closed candles into orders and manage exits (see module docstring)."""

    def __init__(
        self,
        *,
        config: EngineConfig,
        clock: Clock,
        bus: EventBus,
        exchange: Exchange,
        execution: ExecutionService,
        exits: ExitExecutor,
        signals: SignalBook,
        policy: Callable[[], Policy],
        state: KeyValueRepo | None = None,
        on_storage_failure: Callable[[str], Awaitable[None]] | None = None,
        book: RulesBook | None = None,
        sizing: SizingService | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._exchange = exchange
        self._execution = execution
        self._exits = exits
        self.signals = signals
        self._policy = policy
        signals.follow_policy(policy)  # the Strategy Brain's choices bind the provider
        self.trades: dict[str, OpenTrade] = {}  # by symbol: one position per symbol
        self.decided: dict[str, int] = {}  # by symbol: open time of the last candle decided
        # By symbol, of its newest closed candle: the regime, and the provider a choosing one
        # (the meta-strategy) took its signal from; each change is published.
        self.regimes: dict[str, Regime] = {}
        self.strategies: dict[str, str] = {}
        # By symbol: the members the provider (the ensemble) leaves out now, and why; each
        # change is published (not kept across restarts: a restart says it again).
        self.excluded: dict[str, dict[str, str]] = {}
        self.health = SymbolHealth(timeframe_to_ms(config.timeframe))  # symbols failed closed
        self.universe: Universe | None = None  # None: every symbol fed may enter (static list)
        self._candle_ms = timeframe_to_ms(config.timeframe)
        # An entry decided on a candle that closed longer ago than this (by the clock) is
        # skipped: a feed catching up after it stopped hands over candles the market has left
        # behind, and a market order now would fill far from the price decided on. None: never
        # (a replay's candles are never late, only a slow loop is: the process sets it for a
        # polling feed, ``ProcessParts.stale_entry_candles``).
        self.stale_entry_ms: int | None = None
        self.orders = OrderPlanner(config, book)
        # Each entry's size multiplier (None: fixed-fractional, multiplier 1, as before).
        self.sizing = sizing or SizingService(bus=bus, clock=clock)
        self.prices: dict[str, Decimal] = {}
        self._state = state
        self._bus = bus
        self._on_storage_failure = on_storage_failure
        self._saved = self._saved_account = ""
        exits.persist_with(self._save)  # every exit order is stored before it goes out
        # A symbol's trade work holds that symbol's lock (``engine_locks``): its cycle, the
        # venue sync's reconcile of its trade, an adoption, a flatten's close of it. Live, the
        # sync (a job) and the market loop are two tasks that would otherwise interleave at
        # every await on the same trade; one symbol's slow venue calls never hold up another's.
        self._locks = SymbolLocks()
        # The decision to open is shared (the open positions, the exposure, the account an
        # entry is sized on): one entry at a time holds it, from its account read to its
        # order's answer, and so does an exposure cut. Never waited for while holding a
        # symbol's lock (``_one_entry``): an entry holding it takes its symbol's lock again.
        self._opening = asyncio.Lock()
        # One write of the stored trades at a time, each of what memory holds when it writes:
        # two tasks' saves never store an older state over a newer one.
        self._saving = asyncio.Lock()
        self._closed_orders: dict[str, OpenTrade] = {}  # order id -> its closed trade
        # By symbol: the id base time of the adoption last given up (the next one's ids differ:
        # a venue may answer a canceled order's id with that order).
        self._gave_up_ms: dict[str, int] = {}
        bus.subscribe(OrderFilled.topic, self._on_filled, name="engine.on_filled")
        bus.subscribe(OrderCanceled.topic, self._on_canceled, name="engine.on_canceled")
        bus.subscribe(FundingSettled.topic, self._on_funding, name="engine.on_funding")
        bus.subscribe(
            TradingStateChanged.topic, self._on_state_changed, name="engine.on_state_changed"
        )
        bus.subscribe(PolicyUpdated.topic, self._on_policy, name="engine.on_policy")

    def use_market_rules(self, rules: Mapping[str, MarketRules]) -> None:
        """Size and round every order of these symbols by the venue's own rules."""
        self.orders.book.use_venue(rules)

    def rules(self, symbol: str) -> MarketRules:
        """Return the rules orders of ``symbol`` are sized and rounded by."""
        return self.orders.rules(symbol)

    # --- persistence: a restart resumes managing the same trades --------------------------------

    async def start(self) -> None:
        """Restore the open trades saved before a restart and check them against the venue."""
        if self._state is None:
            return
        saved = await self._state.get(StateKey.ENGINE_TRADES)
        if saved:
            try:
                stored = decode_trades(saved)
                self.trades, self.decided = stored.trades, stored.decided
                self.health.load(stored.failed)
                labels = {r.label: r for r in Regime}
                self.regimes = {s: labels[r] for s, r in stored.regimes.items() if r in labels}
                self.strategies = dict(stored.strategies)
            except (ValueError, KeyError, TypeError) as e:
                raise InvariantViolation(f"stored engine trades are unreadable: {e}") from e
            self._saved = saved
        # the sizing account of these trades and its record, before the venue's news
        for trade in [t for t in self.trades.values() if t.adopting]:
            # Died before the venue held its stop: the stop refused or lost, its give-up
            # unsaved. Resumed, its stop would be placed again with the fallback (an adoption
            # has none) and nothing said: given up, the position is unknown again.
            log.warning("%s: an adoption interrupted by a restart given up", trade.symbol)
            trade.plan = None  # its orders' cancels place nothing again
            await self._give_up(trade, "interrupted by a restart")
        ids = {t.trade_id for t in self.trades.values()}
        self.sizing.load(await self._state.get(StateKey.SIZING_ACCOUNT), ids)
        for trade in [t for t in self.trades.values() if t.finished]:
            await self._exits.recover_finished(trade)  # killed before its record, maybe
        if saved:
            await self.sync_with_venue()  # what the venue did while we were away
            log.info("restored %d open trade(s): %s", len(self.trades), ", ".join(self.trades))

    async def unknown_positions(self) -> list[Position]:
        """Return the venue's positions the engine has no trade for (not its to manage:
        ``core.services.reconciliation`` says what happens to them). A position on the other
        side of the engine's trade in its symbol is not that trade's (closed by hand and
        reversed, or a hedge-mode position beside it): unknown too. So is one on its side
        that is larger than the trade by more than honest noise (``excess``): added by hand,
        or an entry fill the engine lost; a smaller one is the trade's (partly exited, spot
        fees taken in the base, a venue lagging behind our fills)."""
        positions = await self._exchange.fetch_positions()
        unknown = []
        for p in positions:
            trade = self.trades.get(p.symbol)
            if trade is None or p.side is not trade.side or await self.excess(p, trade) > 0:
                unknown.append(p)
        return unknown

    async def excess(self, position: Position, trade: OpenTrade) -> Decimal:
        """Return how much more ``position`` holds than ``trade`` explains (0 or less: none).

        The trade explains its entry's filled amount (exits only make it smaller), or while
        its entry still works the entry order's whole amount (a fill the venue made that the
        start's venue sync has not heard yet), plus a tolerance for rounding: 1 % of that
        amount or two of the symbol's amount steps, whichever is larger
        (``EXCESS_TOLERANCE``, ``EXCESS_STEPS``)."""
        explained = trade.amount
        if trade.plan is None:  # the entry still works (or ended unheard): its order says
            try:
                entry = await self._exchange.fetch_order(trade.entry_cid, trade.symbol)
                explained = max(explained, entry.request.amount if entry.is_open else entry.filled)
            except VenueRejected:
                pass  # the venue knows no such order: only what filled is explained
        step = self.rules(trade.symbol).amount_step
        tolerance = max(explained * EXCESS_TOLERANCE, step * EXCESS_STEPS)
        return position.amount - explained - tolerance

    async def sync_with_venue(self) -> int:
        """Ask the venue about every order the engine waits on and publish what it did that we
        have not heard of: fills (``OrderFilled``) and orders it ended on its own
        (``OrderCanceled``, reason ``venue: ...``). Return how many events that made.

        Live venues report this way (a job calls it every few seconds); the paper venue reports
        its fills as they happen, so there it only matters after a crash between a fill and
        our save. A venue error on one order is logged and that order is asked again next time.
        """
        # Each trade at once, under its symbol's lock: one symbol's slow venue (its exits'
        # cancels and re-placements, retried with backoff) must not keep another's fresh
        # fill waiting for its stop.
        published = await all_of([self._sync_trade(t) for t in list(self.trades.values())])
        await self._exits.record_waiting()  # closed trades an outage left unstored
        return sum(published)

    async def _sync_trade(self, trade: OpenTrade) -> int:
        """Reconcile ``trade`` under its symbol's lock; return how many events that made. A
        symbol another task works on now is left to the next sync (its entry going out,
        in doubt until answered; its cycle's exits): waiting would hold this sync's end, and
        with it the next one, behind that symbol's venue calls."""
        symbol = trade.symbol
        lock = self._locks.of(symbol)
        if lock.locked():
            log.debug("%s: busy in another task, synced next time", symbol)
            return 0
        async with lock:
            if self.trades.get(symbol) is not trade:
                return 0  # gone (or replaced) before this sync came to it
            # One symbol's trouble must not keep the others from being looked at.
            try:
                return await self._reconcile(trade)
            except StorageUnavailable as e:
                log.error("%s: sync incomplete, the database is unavailable: %s", symbol, e)
                await self._storage_failed(str(e))
            except (DependencyError, DataError, VenueRejected) as e:
                log.error("%s: sync incomplete, asked again next time: %s", symbol, e)
        return 0

    async def _reconcile(self, trade: OpenTrade) -> int:
        pending = [("entry", trade.entry_cid)] if trade.plan is None else []
        published = 0
        for name, cid in pending + list(trade.working.items()):
            published += await self._ask_about(trade, name, cid)
        if self.trades.get(trade.symbol) is trade:
            published += await self._notice_closed_outside(trade)
        if self.trades.get(trade.symbol) is trade:
            await self._exits.retry_cancels(trade)
            if trade.finished:
                self._forget_if_done(trade)
            elif trade.plan is None:
                await self._settle_entry(trade)
            else:
                reference = self.prices.get(trade.symbol, trade.entry_price)
                await self._exits.ensure_plan(trade, reference)
        await self._save()
        return published

    async def _ask_about(self, trade: OpenTrade, name: str, cid: str) -> int:
        """Ask the venue about one order of ``trade``; publish what it did that we have not
        heard of (fills, its end); return how many events that made."""
        if self.trades.get(trade.symbol) is not trade:
            # Closed and forgotten by a fill heard earlier in this sync: its cancels reported
            # what its orders filled (a fill counted by no trade now would be reported twice).
            return 0
        try:
            order = await self._exchange.fetch_order(cid, trade.symbol)
        except (DependencyError, DataError) as e:
            log.warning("%s: cannot check %s order %s: %s", trade.symbol, name, cid, e)
            return 0
        except VenueRejected:  # the venue does not know it (any more)
            if trade.working.get(name) != cid:
                return 0
            lost = _venue_ended(trade.symbol, cid, "unknown order", self._clock.now_ms())
            await self._bus.publish(lost)  # purged, or never placed
            return 1
        published = 0
        missed = missed_fill(trade, order, self._clock.now_ms())
        if missed is not None:
            log.info("%s: %s %s filled %s at the venue", trade.symbol, name, cid, missed.amount)
            await self._bus.publish(missed)
            published += 1
        if order.is_open or self.trades.get(trade.symbol) is not trade:
            return published
        if trade.working.get(name) == cid:
            if order.status is OrderStatus.FILLED:
                trade.working.pop(name)  # its fills are in; nothing more will come
            else:
                why = order.status.value + (f": {order.reason}" if order.reason else "")
                await self._bus.publish(_venue_ended(trade.symbol, cid, why, self._clock.now_ms()))
                published += 1
        return published

    async def _notice_closed_outside(self, trade: OpenTrade) -> int:
        """Book a position the venue closed without an order of ours (a liquidation or
        auto-deleveraging the venue reports no order for, a close by hand): flat at the venue
        for a minute of syncs while the plan still holds some. Booked at the last price (the
        venue's own price is not known) as exit VENUE, and the trade closes."""
        plan = trade.plan
        if plan is None or trade.finished or plan.is_closed:
            return 0
        now = self._clock.now_ms()
        if await self._execution.position_amount(trade.symbol) > 0:
            trade.flat_since_ms = None
            return 0
        if trade.flat_since_ms is None:
            trade.flat_since_ms = now
        if now - trade.flat_since_ms < CLOSED_OUTSIDE_AFTER_MS:
            return 0  # a fill of ours may be on its way, or the venue's positions lag
        price = self.prices.get(trade.symbol, trade.entry_price)
        log.error(
            "%s: the venue holds no position but the plan holds %s: closed outside our orders",
            trade.symbol,
            plan.remaining,
        )
        await self._bus.publish(
            OrderFilled(
                # One per trade (it closes the plan): a restart whose state lost it (not its
                # event, kept while the database failed) finds it again a minute later under
                # another order id, and the audit trail must hold it once.
                event_id=f"closed-outside:{trade.trade_id}",
                ts_ms=now,
                fill_ts_ms=now,
                client_order_id=closed_outside_id(trade.symbol, now),
                symbol=trade.symbol,
                side=(Side.SELL if trade.side is PositionSide.LONG else Side.BUY).value,
                amount=plan.remaining,
                price=price,
                fee=ZERO,
                liquidity="unknown",
            )
        )
        return 1

    async def stop(self) -> None:
        """Save the open trades (they are also saved after every change) and the closed
        ones a refused write left waiting."""
        await self._exits.record_waiting()
        await self._save_if_possible()

    async def _save_if_possible(self) -> None:
        try:
            await self._save()
        except StorageUnavailable as e:
            await self._storage_failed(str(e))

    async def _storage_failed(self, error: str) -> None:
        """Fail closed: the database cannot be written (trading halts; nothing is lost in
        memory, and the trades are saved again with the next change)."""
        self._saved = self._saved_account = ""  # what was not written is written next time
        if self._on_storage_failure is not None:
            await self._on_storage_failure(error)

    async def _save(self) -> None:
        if self._state is None:
            return
        async with self._saving:
            await self._write_state(self._state)
        # The database takes writes: the closed trades a refused write left out go too (else
        # they wait for the next close, and a crash before it loses their rows).
        await self._exits.record_waiting()

    async def _write_state(self, state: KeyValueRepo) -> None:
        """Write the sizing account and the trades as they are now, each only when it
        changed."""
        # The account first: written alone (the database lost before the trades), a restart
        # drops the trades it holds that the stored ones do not, and ignores the close the
        # venue sync announces again of a trade it booked already. The other way round, a
        # trade closed in the stored trades but open in the stored account loses its outcome.
        # Both taken at one instant, before either write lets the other tasks run.
        account = self.sizing.dump()
        text = encode_trades(
            self.trades,
            self.decided,
            self.health.dump(),
            {s: r.label for s, r in self.regimes.items()},
            self.strategies,
        )
        if account != self._saved_account:
            await state.set(StateKey.SIZING_ACCOUNT, account)
            self._saved_account = account
        if text != self._saved:
            await state.set(StateKey.ENGINE_TRADES, text)
            self._saved = text

    @property
    def closed_trades(self) -> list[ClosedTrade]:
        """Return the round trips closed so far, oldest first."""
        return self._exits.closed

    # --- what a fast-forwarding backtest needs to know ------------------------------------------

    def observe_price(self, symbol: str, close: float) -> None:
        """Note a close the engine did not run a cycle on (a skipped, provably quiet candle)."""
        self.prices[symbol] = Decimal(repr(close))

    def watch_band(self, symbol: str) -> tuple[float, float, bool]:
        """Return ``(down, up, every_candle)``: the engine acts on a candle of ``symbol`` without
        a signal only if low <= down or high >= up (a bot-side stop), or on every candle while
        an entry waits for its fill."""
        trade = self.trades.get(symbol)
        if trade is None:
            return float("-inf"), float("inf"), False
        if trade.plan is None or trade.canceling or self._exits.incomplete(trade):
            # An entry waiting for its fill, or exits held back (a halt) that each cycle tries
            # to place again.
            return float("-inf"), float("inf"), True
        if self._tightening_due(trade.plan):
            return float("-inf"), float("inf"), True  # the policy's factor is not applied yet
        down, up = float("-inf"), float("inf")
        stop = trade.plan.stop
        if stop is not None and stop.mode is StopMode.BOT_SIDE:
            level = float(stop.price)
            if trade.side is PositionSide.LONG:
                down = level * (1 + 1e-9)
            else:
                up = level * (1 - 1e-9)
        moves = watch_level(
            trade.plan,
            self.orders.profiles.config(trade.exit_profile),
            _entry_atr(trade.atr),
            self.rules(symbol).price_tick,
        )
        if moves is not None:  # a candle reaching it moves the stop (trail, profit lock)
            if trade.side is PositionSide.LONG:
                up = min(up, float(moves))
            else:
                down = max(down, float(moves))
        return down, up, False

    def exit_due_ms(self, symbol: str) -> int | None:
        """Return the market time from which the open trade of ``symbol`` exits for its
        maximum holding time (None: no such limit, or nothing to exit)."""
        trade = self.trades.get(symbol)
        if trade is None or trade.plan is None or trade.plan.is_closed:
            return None
        config = self.orders.profiles.config(trade.exit_profile)
        return hold_ends_ms(config, trade.opened_ms)

    def _tightening_due(self, plan: ExitPlan) -> bool:
        """Return True when the policy tightens stops further than ``plan`` was tightened."""
        stop = plan.stop
        moving = stop is not None and stop.mode is not StopMode.MARKET and not plan.is_closed
        return moving and self._policy().stop_tighten < plan.stop_factor

    def watched_signal(self, symbol: str) -> str:
        """Return the ``SignalFrame`` column whose signal makes the engine act on a candle of
        ``symbol``: ``entry`` while flat, else the exit of the open trade's side. The others
        are ignored in that state (``on_candle``: a trade is managed, never entered again)."""
        trade = self.trades.get(symbol)
        if trade is None:
            return "entry"
        return "exit_long" if trade.side is PositionSide.LONG else "exit_short"

    # --- the cycle ------------------------------------------------------------------------------

    async def on_candle(self, symbol: str, candle: Candle) -> None:
        """Run one trading cycle for ``symbol`` on a closed candle.

        A venue that is unavailable (``DependencyError``, after the adapter's retries) skips
        the rest of this cycle; the next candle and the venue sync pick up from there.
        """
        try:
            async with self._locks.of(symbol):
                await self._cycle(symbol, candle)
        except StorageUnavailable as e:
            log.error("%s: cycle skipped, the database cannot be written: %s", symbol, e)
            await self._storage_failed(str(e))
        except DependencyError as e:
            log.error("%s: cycle skipped, the venue is unavailable: %s", symbol, e)
            await self._save_if_possible()
        except (DataError, VenueRejected) as e:
            # A venue answer nothing on the order path expected: logged, the cycle skipped;
            # the next cycle places what the plan misses.
            log.error("%s: cycle skipped: %s", symbol, e)
            await self._save_if_possible()
        except Exception as e:  # noqa: BLE001 - one symbol's bug must not stop the others
            await self._fail_symbol(symbol, candle, e)

    async def before_batch(self, candles: Sequence[tuple[str, Candle]]) -> None:
        """Compute the signals of several symbols' candles of one close at once, before their
        cycles run (``MarketService.before_batch``): a running process (offloaded signals)
        appends them all and prepares them together in one worker-thread call
        (``SignalBook.prepare_many``); each cycle then finds its frame ready. A batch that
        fails leaves each cycle to compute its own (a broken symbol fails alone there)."""
        if not self.signals.offload or len(candles) < 2:
            return  # a backtest computes in line; one symbol: its cycle prepares it
        symbols = []
        for symbol, candle in candles:
            if candle.ts_ms > self.decided.get(symbol, -1):  # decided before: no signal asked
                self.signals.append(symbol, self.config.timeframe, candle)
                symbols.append(symbol)
        try:
            await self.signals.prepare_many(symbols)
        except Exception as e:  # noqa: BLE001 - each cycle computes its own and fails alone
            log.warning("the signals of %d symbols failed together: %s", len(symbols), e)

    async def _fail_symbol(self, symbol: str, candle: Candle, error: Exception) -> None:
        """Fail ``symbol`` closed after an unexpected error in its cycle (``SymbolHealth``): no
        new entry for it for a while; its open trade's exits are still managed; the other
        symbols and the process go on."""
        was_blocked = self.health.blocks(symbol) is not None
        failure = self.health.fail(symbol, candle.ts_ms, f"{type(error).__name__}: {error}")
        if was_blocked:  # failing again while paused: the wait grows; one event per pause
            if failure.strikes & (failure.strikes - 1):
                return  # logged at 2, 4, 8, ... failures: a bug on every candle floods nothing
            log.error(
                "%s: the cycle of the candle %d failed again (%d times): %s; no entries before %d",
                symbol,
                candle.ts_ms,
                failure.strikes,
                failure.error,
                failure.until_ms,
            )
            return
        log.exception(
            "%s: the cycle of the candle %d failed (%d time(s)): no entries before %d",
            symbol,
            candle.ts_ms,
            failure.strikes,
            failure.until_ms,
        )
        await self._bus.publish(
            SymbolFailed(
                ts_ms=self._clock.now_ms(),
                symbol=symbol,
                candle_open_ms=candle.ts_ms,
                error=failure.error,
                strikes=failure.strikes,
                until_ms=failure.until_ms,
            )
        )
        await self._save_if_possible()

    async def _cycle(self, symbol: str, candle: Candle) -> None:
        self.prices[symbol] = Decimal(repr(candle.close))
        self.signals.append(symbol, self.config.timeframe, candle)
        if candle.ts_ms <= self.decided.get(symbol, -1):
            # Decided before (a feed repeats its newest candle after a restart): a second
            # decision could send the same entry again, which a venue that keeps client ids
            # unique among open orders only (Binance) would take as a new position.
            log.info("%s: candle %d was decided before a restart", symbol, candle.ts_ms)
            return
        trade = self.trades.get(symbol)
        try:
            await self.signals.prepare(symbol)  # a running process: off the event loop
            # Who decides this candle: a provider handed over during the awaits below (the
            # demo's ensemble trained) did not make this decision.
            source = self.signals.provider.name
            signal, broken = self.signals.signal_at(symbol, candle.ts_ms), None
            regime = self.signals.regime_at(symbol, candle.ts_ms)
            excluded = excluded_members(self.signals.provider, symbol)  # provider code too
        except Exception as e:  # noqa: BLE001 - raised again once the open trade is managed
            signal, broken = None, e
        # Decided from here on: a stop while the signals computed (above) decided nothing, so
        # the restart's repeat of this candle is decided then, its exits run.
        self.decided[symbol] = candle.ts_ms
        if broken is None:
            await self._note_context(symbol, candle, regime, signal)
            await self._note_exclusions(symbol, excluded)
            await self._recover_if_due(symbol, candle)
        if trade is not None:
            await self._manage(trade, candle, signal)  # without a signal, the exits still run
        elif signal is not None and signal.entry != 0:
            failure = self.health.blocks(symbol)
            if failure is not None:
                log.warning("%s: entry skipped, failed earlier: %s", symbol, failure.error)
            elif not self._in_universe(symbol, candle):
                log.debug("%s: entry skipped, not in the universe", symbol)
            elif self._stale(candle):
                late = (self._clock.now_ms() - candle.ts_ms) / self._candle_ms - 1
                log.warning(
                    "%s: entry skipped, the candle %d closed %.1f candles ago (a stale feed)",
                    symbol,
                    candle.ts_ms,
                    late,
                )
            else:
                await self._enter(symbol, candle, signal, source)
        await self._save()
        if broken is not None:
            raise broken  # on_candle handles it by its kind (a bug fails the symbol closed)

    def _stale(self, candle: Candle) -> bool:
        """Return True when ``candle`` closed more than ``stale_entry_ms`` ago."""
        limit = self.stale_entry_ms
        closed_ms = candle.ts_ms + self._candle_ms
        return limit is not None and self._clock.now_ms() - closed_ms > limit

    async def _note_context(
        self, symbol: str, candle: Candle, regime: Regime, signal: Signal | None
    ) -> None:
        """Know the regime (and a choosing provider's pick) of the symbol's newest candle;
        publish each change, the first known after warm-up included."""
        previous = self.regimes.get(symbol, Regime.UNKNOWN)
        if regime is not previous:
            self.regimes[symbol] = regime
            await self._bus.publish(
                RegimeChanged(
                    ts_ms=self._clock.now_ms(),
                    symbol=symbol,
                    candle_open_ms=candle.ts_ms,
                    previous=previous.label,
                    current=regime.label,
                )
            )
        before = self.strategies.get(symbol, "")
        if signal is not None and signal.provider and signal.provider != before:
            picked = self.strategies[symbol] = signal.provider
            await self._bus.publish(
                StrategySelected(
                    ts_ms=self._clock.now_ms(),
                    symbol=symbol,
                    candle_open_ms=candle.ts_ms,
                    regime=regime.label,
                    provider=picked,
                    previous=before or "none",
                    score=signal.score if signal.score == signal.score else None,  # NaN: None
                    record=signal.record,
                )
            )

    async def _note_exclusions(self, symbol: str, now: Mapping[str, str]) -> None:
        """Publish each member the provider newly leaves out of the symbol's decisions (or
        leaves out for another reason), as it computed them for this candle (``now``)."""
        before = self.excluded.get(symbol, {})
        if now == before:
            return
        self.excluded[symbol] = dict(now)
        for member, reason in sorted(now.items()):
            if before.get(member) != reason:
                await self._bus.publish(
                    ModelMemberExcluded(
                        ts_ms=self._clock.now_ms(), symbol=symbol, member=member, reason=reason
                    )
                )

    def _in_universe(self, symbol: str, candle: Candle) -> bool:
        """By the candle's close time, so a backtest and a live run gate alike."""
        close_ms = candle.ts_ms + self._candle_ms
        return self.universe is None or self.universe.allows(symbol, close_ms)

    async def _recover_if_due(self, symbol: str, candle: Candle) -> None:
        recovered = self.health.recover(symbol, candle.ts_ms)
        if recovered is not None:
            log.warning("%s: entries allowed again after %s", symbol, recovered.error)
            await self._bus.publish(
                SymbolRecovered(ts_ms=self._clock.now_ms(), symbol=symbol, actor="engine")
            )

    async def _manage(self, trade: OpenTrade, candle: Candle, signal: Signal | None) -> None:
        await self._exits.retry_cancels(trade)
        if trade.finished:
            self._forget_if_done(trade)
            return
        plan = trade.plan
        if plan is None:
            if await self._execution.trading_state() is TradingState.HALTED:
                await self._cancel_entry(trade)
            await self._settle_entry(trade)
            return
        price = self.prices[trade.symbol]
        hit = watched_stop_hit(trade, plan, candle)
        if hit is not None:
            await self._exits.apply(
                trade, exit_at_market(plan), price, exit_reason=trade.stop_reason(hit)
            )
            return
        wants_out = signal is not None and signal.wants_exit(
            trade.side is PositionSide.LONG, trade.provider
        )
        if wants_out and not plan.is_closed:
            leaving = exit_at_market(plan)
            if leaving.actions:  # not exiting yet (else the plan waits on its market exit)
                await self._exits.apply(trade, leaving, price, exit_reason="SIGNAL")
                return
        await self._move_exits(trade, candle, price)
        # What a halt held back (take-profits), the venue lost or refused (a market exit)
        # goes out again.
        await self._exits.ensure_plan(trade, price)

    async def _move_exits(self, trade: OpenTrade, candle: Candle, price: Decimal) -> None:
        """At the candle's close: the Exit Brain's maximum holding time, profit lock and
        trailing stop, then the policy's stop-tightening factor (``core.brains.exit_moves``)."""
        plan = trade.plan
        if plan is None:
            return
        tick = self.rules(trade.symbol).price_tick
        close_ms = candle.ts_ms + self._candle_ms
        moved = on_candle(
            plan,
            CandleClose(
                high=Decimal(repr(candle.high)),
                low=Decimal(repr(candle.low)),
                close=price,
                price_tick=tick,
                config=self.orders.profiles.config(trade.exit_profile),
                held_ms=None if trade.opened_ms is None else close_ms - trade.opened_ms,
                atr=_entry_atr(trade.atr),
            ),
        )
        if moved.plan != plan:
            await self._exits.apply(trade, moved, price, at_close=True)
        plan = trade.plan
        if plan is None or not self._tightening_due(plan):
            return
        tightened = tighten_stop(plan, self._policy().stop_tighten, price, tick)
        if tightened.plan != plan:
            await self._exits.apply(trade, tightened, price, at_close=True)

    async def before_fills(self, symbol: str, candle: Candle) -> None:
        """Before a simulated venue fills ``candle``: withdraw an entry still waiting for its
        fill if trading was halted meanwhile (say by ``qt state halt`` from another process)."""
        trade = self.trades.get(symbol)
        if trade is None or trade.plan is not None:
            return
        async with self._locks.of(symbol):
            if self.trades.get(symbol) is not trade:
                return
            if await self._execution.trading_state() is TradingState.HALTED:
                await self._cancel_entry(trade)

    async def _cancel_entry(self, trade: OpenTrade) -> None:
        """Cancel the entry order of ``trade`` while it has not (completely) filled."""
        if trade.plan is None:
            await self._execution.cancel(trade.entry_cid, trade.symbol, reason="halted")

    async def _on_state_changed(self, event: Event) -> None:
        """A halt cancels the entries still waiting for their fill, at once. (Exits stay: a
        halt lets protective orders through; resuming re-places what it held back, on the
        next cycle of each trade.)"""
        if not isinstance(event, TradingStateChanged):
            return
        if event.current == TradingState.ACTIVE and event.actor != LIMITS_ACTOR:
            # An operator's resume; the risk limits' next-day resume is not one.
            for symbol in self.health.clear():  # an operator's resume clears every failure
                log.warning("%s: entries allowed again: trading resumed", symbol)
                await self._bus.publish(
                    SymbolRecovered(ts_ms=self._clock.now_ms(), symbol=symbol, actor=event.actor)
                )
        if event.current != TradingState.HALTED:
            return
        # Without the symbols' locks: a halt may be published from inside a symbol's work
        # (the risk limits halting in its order's gate check), which holds its lock.
        await self._cancel_waiting_entries(locked=False)

    async def _cancel_waiting_entries(self, *, locked: bool = True) -> list[tuple[str, str]]:
        """Cancel every entry still waiting for its fill (a halt, an exposure cut), each
        under its symbol's lock unless ``locked`` is False; return the (symbol, why) of those
        the venue did not cancel: one cancel timing out must not stop the others, nor the
        positions' exits that follow (the venue sync finds out)."""
        failed = []
        for trade in [t for t in self.trades.values() if t.plan is None]:
            why = await self._cancel_waiting(trade, locked=locked)
            if why:
                failed.append((trade.symbol, why))
        return failed

    async def _cancel_waiting(self, trade: OpenTrade, *, locked: bool = True) -> str:
        """Cancel the waiting entry of ``trade`` (under its symbol's lock unless ``locked``
        is False); return "" when the venue canceled it (or it ended), else why not."""
        try:
            if not locked:
                await self._cancel_entry(trade)
                return ""
            async with self._locks.of(trade.symbol):
                if self.trades.get(trade.symbol) is trade:
                    await self._cancel_entry(trade)
        except (DependencyError, VenueRejected) as e:
            log.error("%s: the waiting entry was not canceled: %s", trade.symbol, e)
            return str(e)
        return ""

    async def _on_policy(self, event: Event) -> None:
        """A policy that halts (the CEO's EMERGENCY) cancels the entries still waiting, as an
        operator's halt does."""
        if isinstance(event, PolicyUpdated) and self._policy().state is TradingState.HALTED:
            await self._cancel_waiting_entries()

    async def account(self) -> AccountView:
        """Return the account valued at the engine's prices."""
        return await view_account(self._exchange, self.prices, self.config.quote)

    async def reduce_exposure(self, keep: float, reason: str) -> ExposureCut:
        """Close positions at market, the largest first, until the exposure is at most
        ``keep`` times today's (0: close everything); cancel entries still waiting. Return
        the symbols closed and those that could not be, with why (the venue refused, ...).
        Reduce-only market exits: the gate lets them through in any state.
        The exposure is the positions' (as the Risk Brain measured it): a waiting entry is
        cancelled, not counted, and a position already leaving counts as gone, so neither
        makes it close more than asked (a second call in the same hour closes nothing more).

        ``keep`` 0 (``/halt flatten``, the CEO's EMERGENCY) closes every position the venue
        holds: one without an exit plan (an entry that filled before its plan was placed, a
        position the engine has no trade for) is taken over (``_take_over``) and leaves
        through the same exit path. A partial cut (the Risk Brain's) closes only trades
        with a plan: trimming a position the engine does not manage is not its call.

        It holds the decision to open throughout: the account it reads holds the outcome of
        every entry sent before it, and none goes out until it is done. Each position is
        closed under its symbol's lock; a flatten closes them all at once, so a symbol whose
        venue is slow holds up no other's close.
        """
        async with self._opening:
            # The trades as they were before the account read: one a sync closes while the
            # read is out is gone, its position in the answer stale (no exit, no take-over).
            seen = dict(self.trades)
            account = await self.account()

            def notional(p: Position) -> Decimal:
                return p.notional(self.prices.get(p.symbol, p.entry_price))

            held = sorted(account.positions, key=notional, reverse=True)
            before = sum((notional(p) for p in held), ZERO)
            target = before * Decimal(repr(max(0.0, min(1.0, keep))))
            left = before
            closed: list[str] = []
            # A flatten cancels the waiting entries beside the closes, a partial cut first.
            not_closed = (
                []
                if keep <= 0
                else [
                    f"{symbol}: its waiting entry was not canceled: {error}"
                    for symbol, error in await self._cancel_waiting_entries()
                ]
            )
            # Leaving already: closed, or a market exit of it working at the venue (one the
            # venue refused leaves the plan in market mode with nothing out: sent again)
            gone = {s for s, t in self.trades.items() if _leaving(t)}
            left -= sum((notional(p) for p in held if p.symbol in gone), ZERO)
            cut = [p for p in held if p.symbol not in gone]
            if keep <= 0:
                # Every symbol at once: one whose venue is slow (its waiting entry's cancel, its
                # trade's sync) holds up no other's close. A held position's waiting entry is
                # canceled by its close (``_take_over``); the others' here.
                cutting = {p.symbol for p in cut}
                waiting = [
                    t for t in self.trades.values() if t.plan is None and t.symbol not in cutting
                ]
                done = await all_of(
                    [self._cut(p, seen.get(p.symbol), flatten=True) for p in cut]
                    + [self._cancel_waiting(t) for t in waiting]
                )
                whys = done[: len(cut)]
                not_closed = [
                    f"{t.symbol}: its waiting entry was not canceled: {why}"
                    for t, why in zip(waiting, done[len(cut) :], strict=True)
                    if why
                ]
            else:  # largest first, until the target: one after the other
                whys = []
                for position in cut:
                    if left <= target:
                        break
                    whys.append(await self._cut(position, seen.get(position.symbol)))
                    if whys[-1] is None:
                        left -= notional(position)
            for position, why in zip(cut, whys, strict=False):
                if why is None:
                    closed.append(position.symbol)
                elif why:
                    not_closed.append(f"{position.symbol}: {why}")
            await self._save()
        if closed or not_closed or before > target:
            await self._bus.publish(
                ExposureReduced(
                    ts_ms=self._clock.now_ms(),
                    target=target,
                    before=before,
                    symbols=tuple(closed),
                    reason=reason,
                    not_closed=tuple(not_closed),
                )
            )
        return ExposureCut(closed=tuple(closed), not_closed=tuple(not_closed))

    async def _cut(
        self, position: Position, seen: OpenTrade | None, *, flatten: bool = False
    ) -> str | None:
        """Close ``position`` at market under its symbol's lock (``_close_at_market``);
        ``seen`` is the symbol's trade when the cut began (before its account read). One that
        left meanwhile (its own exit went out, or it closed and was forgotten) is gone
        already: None."""
        async with self._locks.of(position.symbol):
            trade = self.trades.get(position.symbol)
            if (trade is not None and _leaving(trade)) or (seen is not None and trade is None):
                return None
            return await self._close_at_market(position, flatten=flatten)

    async def _close_at_market(self, position: Position, *, flatten: bool) -> str | None:
        """Send the market exit of ``position``; return None when it went (or may have: in
        doubt, the venue sync finds out), else why not ("" when it is not ours to close)."""
        symbol = position.symbol
        trade = self.trades.get(symbol)
        if trade is None or trade.plan is None:
            if not flatten:
                return ""  # not ours, or no plan yet: a partial cut leaves it
            try:
                trade, why = await self._take_over(position, trade)
            except (DependencyError, DataError, VenueRejected) as e:
                log.error("%s: not closed, the venue did not answer: %s", symbol, e)
                return f"the venue did not answer: {e}"
            if trade is None:
                return why
        assert trade.plan is not None  # noqa: S101 - planned, or taken over just above
        price = self.prices.get(symbol, position.entry_price)
        if trade.plan.stop is not None and trade.plan.stop.mode is StopMode.MARKET:
            # Taken over: the plan waits on this exit (sent again if the venue loses it).
            sent: Submission | None = await self._exits.market_exit(
                trade, trade.plan.remaining, reason="RISK_REDUCE", reference=price
            )
        else:
            leaving = exit_at_market(trade.plan)
            sent = await self._exits.apply(trade, leaving, price, exit_reason="RISK_REDUCE")
        if sent is None or sent.working:
            return None
        log.error("%s: market exit not sent: %s", symbol, sent.reason)
        if trade.adopted and trade.provider == ADOPTED_PROVIDER:  # taken over to close only
            self._forget(trade)  # not ours: nothing to send again every cycle; said, not retried
        return sent.reason or "the order was not sent"

    async def _take_over(
        self, position: Position, trade: OpenTrade | None
    ) -> tuple[OpenTrade | None, str]:
        """Give a position without an exit plan one that closes it at market
        (``flatten.market_plan``); return its trade, or None and why it cannot be closed now.

        A trade whose entry filled before its plan was placed keeps its own bookkeeping: its
        entry (cancelled just before) is asked for its final fills, which are counted (their
        ``OrderFilled`` arrives with the plan in place, so no stop and take-profits are placed
        only to be cancelled). A position the engine has no trade for (restored from the venue,
        opened by hand), or whose entry ended unfilled, becomes an adopted trade.
        """
        if trade is not None:
            entry = await self._execution.cancel(trade.entry_cid, trade.symbol, reason="flatten")
            if entry is not None and entry.is_open:
                return None, "its entry order is still working at the venue (canceled next cycle)"
            filled = trade.amount if entry is None else entry.filled
            if filled > 0:
                average = entry.average_price if entry is not None else None
                trade.plan = market_plan(trade.side, average or position.entry_price, filled)
                missed = None if entry is None else missed_fill(trade, entry, self._clock.now_ms())
                if missed is not None:
                    await self._bus.publish(missed)  # counted by _on_entry_fill, plan kept
                return trade, ""
            self._forget(trade)  # the entry ended unfilled: the position is not its
        log.warning(
            "%s: taking over the %s position of %s the engine has no trade for, to close it",
            position.symbol,
            position.side.value,
            position.amount,
        )
        adopted = adopted_trade(position, self._clock.now_ms())
        self.trades[position.symbol] = adopted
        return adopted, ""

    async def adopt(self, position: Position) -> str:
        """Take a venue position the engine has no trade for over as its own trade
        (``core.services.adoption``): stored, shown and managed like any other once the venue
        holds its stop. Return "" when it did, else why not: nothing of it is kept then (a
        stop in doubt is canceled), and reconciliation reduces instead."""
        symbol = position.symbol
        async with self._locks.of(symbol):
            why = self.not_adoptable(position)
            if why:
                return why
            try:
                why = await self._cancel_orphans(symbol)
            except (DependencyError, DataError, VenueRejected) as e:
                why = f"the venue's open orders could not be read: {e}"
            if why:
                return why
            frame = self.signals.frame(symbol)
            atr = float(frame.atr[-1]) if frame is not None and len(frame.atr) else 0.0
            now_ms = self._clock.now_ms()
            gave_up_s = self._gave_up_ms.get(symbol, -1000) // 1000
            if now_ms // 1000 <= gave_up_s:  # its ids must not be those of the given-up one
                now_ms = (gave_up_s + 1) * 1000
            trade = adopted_position_trade(position, now_ms, atr)
            trade.adopting = True  # stored so until the venue holds its stop
            price = self.prices.get(symbol)
            try:
                plan = adoption_plan(self.orders, trade, price)
            except (PlanRefused, ValueError) as e:
                return f"no exit plan fits it: {e}"
            self.trades[symbol] = trade
            try:
                why = await self._exits.adopt_plan(trade, plan, price or trade.entry_price)
            except (DependencyError, DataError, VenueRejected, StorageUnavailable) as e:
                why = f"the stop could not be placed: {e}"
            if not why:
                await self._save()
                log.warning(
                    "%s: adopted the %s position of %s at %s, stop %s at the venue",
                    symbol,
                    position.side.value,
                    position.amount,
                    position.entry_price,
                    plan.stop.price if plan.stop is not None else None,
                )
                return ""
            await self._give_up(trade, why)
            return why

    def trade_note(self, position: Position) -> str:
        """Return what the engine's own trade in ``position``'s symbol is, to be said beside
        the position ("" when the engine has none there)."""
        held = self.trades.get(position.symbol)
        if held is None:
            return ""
        if held.side is position.side:
            return (
                f"the venue holds {position.amount} while the bot's {held.side.value} "
                f"trade in {position.symbol} is {held.amount}"
            )
        return f"the bot's trade in {position.symbol} is {held.side.value} {held.amount}"

    def not_adoptable(self, position: Position) -> str:
        """Return why ``position`` cannot be adopted whatever the venue says ("" when it may
        be tried): the engine trades its symbol already (the other side, or this side with
        less than the venue holds: adopting over it would lose the trade's own record), or
        the process does not trade the symbol (no candles of it: no trailing, no signal or
        holding-time exit, prices never updated; ``EngineConfig.symbols``)."""
        symbol = position.symbol
        held = self.trades.get(symbol)
        if held is not None and held.side is position.side:
            return self.trade_note(position)
        if held is not None:
            return f"the engine holds a {held.side.value} trade in {symbol} already"
        if symbol not in self.config.symbols:
            pair = symbol.partition(":")[0]
            alike = [s for s in self.config.symbols if s.partition(":")[0] == pair]
            # The exchange port names positions as the process names its symbols; a name
            # that differs is not the feed's (its candles come under the other name).
            named = f" (it trades {', '.join(alike)}, named otherwise)" if alike else ""
            return f"the process does not trade {symbol}{named}"
        return ""

    async def _cancel_orphans(self, symbol: str) -> str:
        """Cancel the orders of an earlier adoption of ``symbol`` still at the venue (its
        adoption failed and their cancel did not go through, or it crashed before its trade
        was stored): no trade of the engine's holds them, so nothing would ever take them
        off. Return "" when none is left, else why."""
        left = []
        for order in await self._exchange.fetch_open_orders(symbol):
            cid = order.client_order_id
            if not adoption_order(symbol, cid):
                continue
            log.warning("%s: canceling %s, left at the venue by an earlier adoption", symbol, cid)
            ended = await self._execution.cancel(cid, symbol, reason="left by an earlier adoption")
            if ended is not None and ended.is_open:
                left.append(cid)
        if left:
            return f"an earlier adoption's orders are still at the venue: {', '.join(left)}"
        return ""

    async def _give_up(self, trade: OpenTrade, why: str) -> None:
        """Forget an adoption that failed, canceling what it may have placed."""
        self._gave_up_ms[trade.symbol] = trade.decided_ms
        for cid in list(trade.working.values()):
            try:
                await self._execution.cancel(cid, trade.symbol, reason=f"adoption failed: {why}")
            except (DependencyError, DataError, VenueRejected) as e:
                log.error(
                    "%s: order %s of a failed adoption not canceled: %s", trade.symbol, cid, e
                )
        self.trades.pop(trade.symbol, None)
        await self._save_if_possible()

    async def _settle_entry(self, trade: OpenTrade) -> None:
        """Resolve an entry that is no longer working without having filled completely."""
        try:
            order = await self._exchange.fetch_order(trade.entry_cid, trade.symbol)
        except VenueRejected:
            # Its submission failed in doubt (a timeout) and the venue never got it.
            log.warning("%s: entry %s never reached the venue", trade.symbol, trade.entry_cid)
            if trade.amount == 0:
                self._forget(trade)
            return
        if not order.status.is_terminal:
            return
        if order.filled != trade.filled_by_cid.get(trade.entry_cid, ZERO):
            return  # fills we have not heard of yet: the venue sync reports them first
        if trade.amount == 0:
            log.info(
                "%s: entry %s ended %s unfilled",
                trade.symbol,
                order.client_order_id,
                order.status.value,
            )
            self._forget(trade)
        else:  # part filled, rest canceled: protect what we hold
            await self._plan_exits(trade)

    async def _enter(self, symbol: str, candle: Candle, signal: Signal, source: str) -> None:
        cfg = self.config
        policy = self._policy()
        opener = signal.provider or source
        if opener in policy.disabled_strategies:
            # The Strategy Brain disabled it (a lone provider has no other to choose): it
            # opens nothing until enabled again; what it holds is still managed.
            log.info("%s: entry skipped, %s is disabled by the policy", symbol, opener)
            return
        side = PositionSide.LONG if signal.entry > 0 else PositionSide.SHORT
        if side is PositionSide.SHORT and (
            cfg.market_type is MarketType.SPOT or not policy.allow_short
        ):
            return
        price = self.prices[symbol]
        # Size on the fill we expect (the price plus slippage) and the stop the Exit Brain
        # will plan from it, so the loss at the stop is the risk budget, costs included.
        expected = self.orders.expected_fill(side, price)
        # The ladder is the regime's at the entry and stays the trade's (exit_profiles).
        regime = self.regimes.get(symbol, Regime.UNKNOWN)
        profile = self.orders.profiles.name_for(regime)
        try:
            stop = self.orders.planned_stop(
                symbol, side, expected, signal.atr, signal.confidence, profile
            )
        except PlanRefused as refusal:
            # No exit plan fits this price at this symbol's tick: never open what cannot be
            # protected. Said in the audit trail, like any denial.
            log.warning("%s: entry skipped, no exit plan fits: %s", symbol, refusal)
            await self._bus.publish(
                OrderDenied(
                    ts_ms=self._clock.now_ms(),
                    client_order_id=client_order_id(symbol, candle.ts_ms, "e"),
                    symbol=symbol,
                    reason="no_exit_plan",
                    detail=str(refusal),
                )
            )
            return
        # One entry at a time decides to open (the open positions and the exposure it is
        # gated on hold every entry before it); the account reads wait for no one of this
        # symbol (``_unlocked``).
        async with self._one_entry(symbol):
            account = await self._unlocked(symbol, self.account)
            if symbol in self.trades:
                # Begun while the account was read (the venue's position in it adopted): that
                # trade is the symbol's, an entry beside it would be a second one.
                log.info(
                    "%s: entry skipped, a trade in it began while the account was read", symbol
                )
                return
            now_ms = self._clock.now_ms()
            closes = self.signals.closes_until(symbol, now_ms, VOL_WINDOW + 1)
            per_day = max(1, 86_400_000 // self._candle_ms)
            scale = volatility_scale(policy, closes, per_day)
            # The sizing method's multiplier scales the risk budget before every cap and the gate.
            note = await self.sizing.decide(
                symbol=symbol,
                decision_ms=now_ms,
                entry=entry_features(
                    confidence=signal.confidence,
                    regime_id=int(regime),
                    realised_vol_pct=daily_vol_pct(closes, per_day),
                ),
                policy=policy,
            )
            risk_scale = scale * Decimal(repr(note.multiplier)).normalize()
            sizing = self.orders.size(
                symbol, account, expected, stop, policy, risk_scale=risk_scale
            )
            if sizing.amount <= 0:
                log.info("%s: entry skipped, size 0 (%s; %s)", symbol, sizing.bound_by, note.text())
                return
            liquidation = self.orders.liquidation_price(
                side, sizing.amount, expected, account.free_quote
            )
            cid = client_order_id(symbol, candle.ts_ms, "e")
            request = OrderRequest(
                client_order_id=cid,
                symbol=symbol,
                side=Side.BUY if side is PositionSide.LONG else Side.SELL,
                type=OrderType.MARKET,
                amount=sizing.amount,
                market_type=cfg.market_type,
                leverage=cfg.leverage,
                tag="entry",
            )
            trade = OpenTrade(
                trade_id=cid,
                symbol=symbol,
                side=side,
                decided_ms=candle.ts_ms,
                entry_cid=cid,
                confidence=signal.confidence,
                atr=signal.atr,
                market_type=cfg.market_type,
                leverage=cfg.leverage,
                provider=signal.provider or source,
                regime=regime.label,
                exit_profile=profile,
                explanation=(
                    self._explain(symbol, candle, regime)
                    if self.signals.provider.name == source
                    else None  # its successor would explain a decision it did not make
                ),
                sizing=note,
            )
            trade.roles[cid] = "entry"
            # Write-ahead: the trade (and that this candle is decided) is stored before the order
            # goes out, so a crash or a failing database right after the send can never leave a
            # position the engine does not know (the start-up reconcile asks the venue about it).
            self.trades[symbol] = trade
            # its size in the same save: a crash during the send restarts knowing it
            self.sizing.opened(
                trade.trade_id,
                now_ms,
                note,
                account.equity,
                cap=sizing.cap_multiplier(note.multiplier),
            )
            try:
                await self._save()
            except StorageUnavailable:
                self._forget(trade)  # nothing was sent
                raise
            try:
                submitted = await self._execution.submit(
                    request,
                    reference_price=expected,  # valued as sizing valued it, at the expected fill
                    account=account,
                    stop_price=stop,
                    liquidation_price=liquidation,
                )
            except StorageUnavailable:
                self._forget(trade)  # our own database failed before anything was sent
                raise
            except DependencyError as e:
                # It may or may not have reached the venue: track it, the venue sync finds out.
                log.error("%s: entry %s in doubt (%s); asking the venue later", symbol, cid, e)
                return
            if not submitted.sent:
                self._forget(trade)  # denied or refused: nothing to manage
            elif trade.explanation is not None:
                await self._bus.publish(
                    EntryExplained(
                        ts_ms=self._clock.now_ms(),
                        trade_id=trade.trade_id,
                        symbol=symbol,
                        side=side.value,
                        explanation=trade.explanation,
                        sizing=note,
                    )
                )

    @asynccontextmanager
    async def _one_entry(self, symbol: str) -> AsyncIterator[None]:
        """Hold the decision to open for an entry of ``symbol``, whose lock the caller holds:
        let go of it while waiting (an entry holding the decision takes its symbol's lock
        again, so waiting for it with one held could wait for ever)."""
        lock = self._locks.of(symbol)
        lock.release()
        try:
            await self._opening.acquire()
        except BaseException:
            await acquire_even_if_cancelled(lock)
            raise
        try:
            await acquire_even_if_cancelled(lock)
            yield
        finally:
            self._opening.release()

    async def _unlocked(self, symbol: str, read: Callable[[], Awaitable[_T]]) -> _T:
        """Return ``read()``, awaited with ``symbol``'s lock released (the caller holds it).

        For an entry's account reads: against a venue that times out they retry with backoff
        for seconds (minutes at real timeouts). No trade of the symbol exists yet, so nothing
        of it waits for them: an adoption of the symbol may go on meanwhile (the entry looks
        again once it holds the lock). No other entry opens a position meanwhile (the caller
        holds the decision to open); only the reads' answers may be older than what the
        others do meanwhile (a stop placed, a position closed), which never counts exposure
        short.
        """
        lock = self._locks.of(symbol)
        lock.release()
        try:
            return await read()
        finally:
            await acquire_even_if_cancelled(lock)

    def _explain(self, symbol: str, candle: Candle, regime: Regime) -> EntryExplanation | None:
        """Return why the provider entered (None: it says nothing), with the process's regime
        (the one set of labels). An explanation that cannot be made is logged and the entry
        goes on: it is a record, not a condition to trade."""
        try:
            return self.signals.explain(symbol, candle.ts_ms, regime.label)
        except (QTError, ValueError) as e:
            log.warning("%s: entry without its explanation: %s", symbol, e)
            return None

    # --- fills ----------------------------------------------------------------------------------

    async def _on_filled(self, event: Event) -> None:
        if not isinstance(event, OrderFilled):
            return
        cid = event.client_order_id
        trade = self.trades.get(event.symbol)
        if trade is not None and trade.amount > 0 and cid not in trade.roles:
            if is_liquidation(cid):
                trade.roles[cid] = LIQUIDATION_NAME  # the venue closed our position itself
            elif is_closed_outside(cid):
                trade.roles[cid] = CLOSED_OUTSIDE_NAME
        if trade is None or cid not in trade.roles:
            closed = self._closed_orders.get(cid)
            if closed is not None:
                await self._late_fill(closed, event)
            return  # not ours (e.g. a manual order)
        trade.note_fill(cid, event.amount, event.price, event.fee, event.fill_ts_ms)
        if trade.finished and trade.roles[cid] != "entry":
            await self._late_fill(trade, event)
        elif trade.roles[cid] == "entry":
            await self._on_entry_fill(trade, event)
        else:
            await self._exits.on_exit_fill(trade, event)
            await self._exits.finish_if_flat(trade)
            self._forget_if_done(trade)
        await self._save()

    async def _on_canceled(self, event: Event) -> None:
        """React to an exit order the venue canceled (ours are no longer working already)."""
        if not isinstance(event, OrderCanceled):
            return
        trade = self.trades.get(event.symbol)
        if trade is None:
            return
        reference = self.prices.get(trade.symbol, trade.entry_price)
        if await self._exits.on_venue_cancel(trade, event.client_order_id, event.reason, reference):
            await self._save()

    async def _on_funding(self, event: Event) -> None:
        """Book funding on the open trade of the symbol (it counts in the trade's pnl)."""
        if not isinstance(event, FundingSettled):
            return
        trade = self.trades.get(event.symbol)
        if trade is not None and trade.amount > 0:
            trade.funding += event.cash
            await self._save()

    async def _on_entry_fill(self, trade: OpenTrade, event: OrderFilled) -> None:
        trade.amount += event.amount
        trade.entry_cost += event.amount * event.price
        trade.entry_fee += event.fee
        if trade.opened_ms is None:
            trade.opened_ms = event.fill_ts_ms
        if trade.plan is not None:
            return  # a flatten took it over (_take_over): it leaves at market already
        try:
            order = await self._exchange.fetch_order(trade.entry_cid, trade.symbol)
        except DependencyError as e:  # the fill is booked; the next venue sync plans its exits
            log.warning(
                "%s: entry %s filled, its order not read (%s): exits with the next sync",
                trade.symbol,
                trade.entry_cid,
                e,
            )
            return
        if order.is_open:
            return  # partially filled: plan exits once the whole entry is in (or it ends)
        missed = missed_fill(trade, order, self._clock.now_ms())
        if missed is not None:
            # The rest filled since this fill was reported: book it first; its own event
            # plans the exits for the whole entry.
            await self._bus.publish(missed)
            return
        await self._plan_exits(trade)

    async def _plan_exits(self, trade: OpenTrade) -> None:
        position = await self._execution.position(trade.symbol)
        trade.liquidation_price = position.liquidation_price if position is not None else None
        plan = plan_exits(
            self.orders.plan_request(
                trade.symbol,
                trade.side,
                trade.entry_price,
                trade.amount,
                trade.atr,
                trade.confidence,
                trade.exit_profile,
            )
        )
        await self._exits.place_plan(trade, plan, trade.entry_price)

    def _forget(self, trade: OpenTrade) -> None:
        self.trades.pop(trade.symbol, None)
        if not trade.finished:  # a finished one's TradeClosed books its outcome
            self.sizing.forgot(trade.trade_id)
            return
        # A fill of its orders may still be on its way (reported by their cancels): known.
        for cid in trade.roles:
            self._closed_orders[cid] = trade
        while len(self._closed_orders) > CLOSED_ORDERS_KEPT:
            del self._closed_orders[next(iter(self._closed_orders))]

    async def _late_fill(self, trade: OpenTrade, event: OrderFilled) -> None:
        """Book and say a fill of an exit order that came after its trade closed and was
        recorded (the venue filled it before our cancel came). On spot it is past the
        position (a spot limit sell is not reduce-only): the venue sold coins the trade no
        longer held, booked as a record of its own (``ExitExecutor.book_late_fill``) so the
        books hold what the venue sold, and the account holds that much less of the base
        coin than the bot's trades say: an operator must look. A perp's exits are
        reduce-only, so the venue filled no more than the position held: its amount is in
        the trade's record already (a close found at the venue, booked at the last price),
        the position flat as the books say; the alert names the fill's own price."""
        if await self._heard_twice(trade, event):
            return
        role = trade.roles.get(event.client_order_id, "?")
        head = (
            f"{trade.symbol}: {role} {event.client_order_id} filled {event.amount} at "
            f"{event.price} after its trade {trade.trade_id} closed"
        )
        if trade.market_type is MarketType.SPOT:
            record = await self._exits.book_late_fill(trade, event)
            detail = (
                f"{head}: the venue {'sold' if event.side == 'sell' else 'bought'} "
                f"{event.amount} more than the trade held, booked as {record.trade_id} "
                f"(exit {record.exit_reason}); the account holds {event.amount} "
                f"{'less' if event.side == 'sell' else 'more'} of the base coin than the "
                "trades say: look at the account"
            )
        else:
            detail = (
                f"{head}: reduce-only, so no more than the position held; its amount is in "
                "the trade's record already, at another price: look at the record"
            )
        log.critical("%s", detail)
        await self._bus.publish(
            AlertRaised(
                ts_ms=self._clock.now_ms(), severity="critical", title="late fill", detail=detail
            )
        )

    async def _heard_twice(self, trade: OpenTrade, event: OrderFilled) -> bool:
        """Return True when ``event`` repeats a fill of its closed trade's order that was
        counted already: with it, the order would have filled more than the venue says (the
        paper venue reports a stop's fill twice when a take-profit filled at the candle's
        open). A venue that cannot be asked now counts as not repeated."""
        cid = event.client_order_id
        if self.trades.get(trade.symbol) is not trade:  # forgotten: not counted yet
            trade.note_fill(cid, event.amount, event.price, event.fee, event.fill_ts_ms)
        counted = trade.filled_by_cid.get(cid, ZERO)
        try:
            order = await self._exchange.fetch_order(cid, trade.symbol)
        except (DependencyError, VenueRejected) as e:
            log.warning("%s: late fill of %s not checked with the venue: %s", trade.symbol, cid, e)
            return False
        if counted <= order.filled:
            return False
        log.warning(
            "%s: %s reported filled %s again after its trade %s closed (the venue filled %s "
            "of it, %s counted): not booked twice",
            trade.symbol,
            cid,
            event.amount,
            trade.trade_id,
            order.filled,
            counted,
        )
        return True

    def _forget_if_done(self, trade: OpenTrade) -> None:
        """Forget a recorded round trip once the venue confirmed every cancel: until then the
        symbol takes no new entry, so no order of ours outlives its trade."""
        if trade.finished and not trade.canceling:
            self._forget(trade)


def _entry_atr(atr: float) -> Decimal | None:
    """Return the signal's ATR at the entry as a price distance (None: the signal had none)."""
    return Decimal(repr(atr)) if math.isfinite(atr) and atr > 0 else None


def _venue_ended(symbol: str, client_order_id: str, why: str, now_ms: int) -> OrderCanceled:
    """Return the event for a working order the venue ended (or no longer knows) on its own:
    one id per order (it ends once), so a restart whose state lost this end (not its event,
    kept while the database failed) finds it again and the audit trail holds it once."""
    return OrderCanceled(
        event_id=f"venue-ended:{client_order_id}",
        ts_ms=now_ms,
        client_order_id=client_order_id,
        symbol=symbol,
        reason=f"venue: {why}",
    )


def _leaving(trade: OpenTrade) -> bool:
    """Return whether ``trade`` is on its way out already: its plan closed, or in market mode
    with a market exit working at the venue."""
    plan = trade.plan
    if plan is None:
        return False
    if plan.is_closed:
        return True
    market = plan.stop is not None and plan.stop.mode is StopMode.MARKET
    return market and trade.market_exit_working
