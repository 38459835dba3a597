"""The Exit Brain's executor: places exit plans as real orders and keeps them consistent.

For each open trade it holds the plan and the client ids of the working orders. It turns the
brain's actions into exchange calls (reduce-only take-profit limits, a reduce-only stop-market,
cancels, market exits), feeds fills back into the brain, and when the position is flat it
cancels whatever is left (no orphan orders) and records the round trip as a ``ClosedTrade``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from core.brains.exits import (
    MARKET_EXIT_NAME,
    STOP_NAME,
    Action,
    BotSideStop,
    CancelLeg,
    CloseAll,
    ExitDecision,
    ExitPlan,
    LegFill,
    MarketExit,
    ReplaceStop,
    StopFallback,
    StopMode,
    on_fill,
    on_stop_rejected,
    on_venue_cancel,
)
from core.brains.risk_gate import OrderIntent
from core.clock import Clock
from core.domain.enums import OrderType, PositionSide, Side
from core.domain.events import ExitPlanned, OrderFilled, TradeClosed
from core.domain.market_rules import MarketRules
from core.domain.orders import OrderRequest
from core.domain.trades import ClosedTrade
from core.errors import DependencyError, StorageUnavailable
from core.ports import TradeRepo
from core.services.bus import EventBus
from core.services.execution import ExecutionService, Submission, client_order_id
from core.services.open_trade import (
    OpenTrade,
    closed_trade,
    exit_leg,
    late_fill_record,
    missed_fill,
)

log = logging.getLogger(__name__)
ZERO = Decimal(0)
INITIAL_STOP_TAG = "s0"  # client-id tag of a plan's first stop; later ones are s1, s2, ...
LIQUIDATION_NAME = "LIQ"  # role and exit reason of the venue's liquidation of the position
CLOSED_OUTSIDE_NAME = "VENUE"  # role and exit reason of a close found at the venue, not ordered


class ExitExecutor:
    """Apply exit decisions to the exchange and close trades."""

    def __init__(
        self,
        *,
        execution: ExecutionService,
        bus: EventBus,
        clock: Clock,
        fallback: StopFallback,
        rules: Callable[[str], MarketRules] | None = None,
        trades: TradeRepo | None = None,
    ) -> None:
        self._execution = execution
        self._bus = bus
        self._clock = clock
        self._fallback = fallback
        # Each symbol's rules as they are now (the engine's book): a plan made before the venue
        # changed its tick or step goes out on the new grid.
        self._rules = rules
        self.closed: list[ClosedTrade] = []
        # Where closed trades are recorded across restarts (None: a backtest keeps them in
        # ``closed`` only); those a failed write left out go with the next one.
        self._trades = trades
        self._unrecorded: list[ClosedTrade] = []
        self._persist: Callable[[], Awaitable[None]] = _nothing  # the engine's save

    def persist_with(self, save: Callable[[], Awaitable[None]]) -> None:
        """Save the trades with ``save`` before every order or cancel goes out (write-ahead)."""
        self._persist = save

    async def place_plan(self, trade: OpenTrade, plan: ExitPlan, reference: Decimal) -> None:
        """Place a fresh plan's stop, then its take-profit legs."""
        trade.plan = plan
        trade.first_stop = plan.stop.price if plan.stop is not None else None
        # The stop first: the position is never left waiting for its protection.
        if plan.stop is not None:
            await self._stop(trade, plan.stop.price, plan.stop.amount, INITIAL_STOP_TAG, reference)
        await self._place_missing_legs(trade, reference)
        await self._publish_plan(trade, "entry filled")

    async def adopt_plan(self, trade: OpenTrade, plan: ExitPlan, reference: Decimal) -> str:
        """Place the plan of a position taken over from the venue (``core.services.adoption``):
        its stop, and only once the venue accepted it the take-profits. Return "" then, else
        why the stop is not working (no fallback: the caller gives the position up; a stop in
        doubt stays in ``trade.working`` for it to cancel)."""
        stop = plan.stop
        if stop is None:
            return "the exit plan has no stop"
        trade.plan = plan
        trade.first_stop = stop.price
        placed = await self._stop(
            trade, stop.price, stop.amount, _tag(trade, INITIAL_STOP_TAG), reference, fallback=False
        )
        if placed is None or not placed.sent:
            if placed is None:
                why = "the venue shows no position to protect"
            elif placed.in_doubt:
                why = "the stop order's answer was lost (in doubt)"
            else:
                why = f"the stop order was {'denied' if placed.denied else 'refused'}"
                why += f": {placed.reason}" if placed.reason else ""
            trade.plan = None
            return why
        trade.adopting = False  # the venue holds its stop: a restart resumes it from here
        await self._place_missing_legs(trade, reference)
        await self._publish_plan(trade, "adopted from the venue")
        return ""

    async def on_exit_fill(self, trade: OpenTrade, event: OrderFilled) -> None:
        """Feed a fill of an exit order into the brain, act on its decision, close if flat."""
        role = trade.roles[event.client_order_id]
        plan = trade.plan
        if plan is None:
            raise ValueError(f"exit fill {event.client_order_id} for a trade without a plan")
        reason = trade.exit_reasons.get(event.client_order_id, role)
        if role == STOP_NAME:
            # The price of the stop order that filled (an old one may fill after the ladder
            # moved the plan's stop): SL at the first stop price, TSL once the ladder moved it.
            current = plan.stop.price if plan.stop is not None else trade.first_stop
            filled_at = trade.stop_prices.get(event.client_order_id, current)
            reason = trade.stop_reason(filled_at) if filled_at is not None else STOP_NAME
        trade.legs.append(exit_leg(trade, event, reason))
        # Market exits and a liquidation count against the stop leg in the brain: they close
        # the position just as the stop does (see MarketExit).
        leg_name = STOP_NAME if _closes_like_the_stop(role) else role
        decision = on_fill(plan, LegFill(leg_name=leg_name, amount=event.amount))
        if (
            not _still_working(decision.plan, role)
            and trade.working.get(role) == event.client_order_id
        ):
            trade.working.pop(role)
        await self.apply(trade, decision, event.price)

    async def on_venue_cancel(
        self, trade: OpenTrade, client_order_id: str, reason: str, reference: Decimal
    ) -> bool:
        """Handle an exit order the venue ended on its own; return False if it is not one of
        this trade's working orders (our own cancels are no longer working when reported).

        The brain decides (``on_venue_cancel``): a take-profit is dropped from the plan, the
        stop is placed again, a market exit is sent again, so the position stays protected.
        """
        role = trade.roles.get(client_order_id)
        if role is None or role == "entry" or trade.working.get(role) != client_order_id:
            return False
        del trade.working[role]
        if trade.plan is None:
            return True
        log.warning(
            "%s: %s order %s canceled by the venue: %s", trade.symbol, role, client_order_id, reason
        )
        market_exit = role.startswith(MARKET_EXIT_NAME)
        decision = on_venue_cancel(trade.plan, MARKET_EXIT_NAME if market_exit else role)
        exit_reason = trade.exit_reasons.get(client_order_id, STOP_NAME)
        await self.apply(trade, decision, reference, exit_reason=exit_reason)
        if not market_exit and role != STOP_NAME:
            await self._publish_plan(trade, f"{role} canceled by the venue")
        return True

    def incomplete(self, trade: OpenTrade) -> bool:
        """Return True when an order the plan needs is not working at the venue (held back by
        a halt, or lost): ``ensure_plan`` would place it."""
        plan = trade.plan
        if plan is None or plan.stop is None or plan.is_closed:
            return False
        if plan.stop.mode is StopMode.EXCHANGE and STOP_NAME not in trade.working:
            return True
        if plan.stop.mode is StopMode.MARKET:
            return not trade.market_exit_working
        return any(leg.name not in trade.working for leg in plan.open_legs)

    async def ensure_plan(self, trade: OpenTrade, reference: Decimal) -> None:
        """Make the venue hold what the plan says: the stop (or the market exit the plan is
        waiting on), then every open take-profit. Orders our gate held back (a halt) or the
        venue lost are placed now; nothing happens when everything is working."""
        if trade.plan is not None and trade.plan.is_closed:
            await self.finish_if_flat(trade)  # a close an outage cut short: recorded now, once
            return
        if not self.incomplete(trade):
            return
        plan = trade.plan
        assert plan is not None and plan.stop is not None  # noqa: S101 - incomplete() checked
        if plan.stop.mode is StopMode.MARKET:
            if not trade.market_exit_working:
                log.warning("%s: the market exit is not working: sending it", trade.symbol)
                reason = next(reversed(trade.exit_reasons.values()), STOP_NAME)
                await self.market_exit(trade, plan.remaining, reason=reason, reference=reference)
            return
        await self.ensure_stop(trade, reference)
        if await self._may_take_profit(trade):  # no fresh denial for every cycle of a halt
            await self._place_missing_legs(trade, reference)

    async def ensure_stop(self, trade: OpenTrade, reference: Decimal) -> None:
        """Place the plan's exchange stop if none is working (one was deferred while the venue
        still showed a smaller position, or the venue lost it): never leave a position bare."""
        plan = trade.plan
        if plan is None or plan.stop is None or plan.is_closed or STOP_NAME in trade.working:
            return
        if plan.stop.mode is not StopMode.EXCHANGE:
            return
        held = await self._execution.position_amount(trade.symbol)
        if held <= 0:
            log.warning("%s: no stop order working, and the venue shows no position", trade.symbol)
            return
        if held < plan.stop.amount:
            # Loud, every time: the venue lags, or the position differs from the plan
            # (reduced by hand?) and needs a human; meanwhile a stop guards what is held.
            log.warning(
                "%s: the venue shows %s of the plan's %s: the stop guards what it holds",
                trade.symbol,
                held,
                plan.stop.amount,
            )
        log.warning("%s: no stop order working: placing it", trade.symbol)
        await self.apply(trade, on_venue_cancel(plan, STOP_NAME), reference)

    async def _place_missing_legs(self, trade: OpenTrade, reference: Decimal) -> None:
        """Place every open take-profit leg that has no working order (client ids are the
        leg's own, so a leg the venue already has is not placed twice)."""
        plan = trade.plan
        if plan is None or plan.stop is None or plan.stop.mode is StopMode.MARKET:
            return  # exiting at market: the take-profits were canceled
        for i, leg in enumerate(plan.legs, start=1):
            if not leg.is_open or leg.name in trade.working:
                continue
            cid = client_order_id(trade.symbol, trade.decided_ms, _tag(trade, f"t{i}"))
            placed = await self._submit(
                trade, leg.name, cid, OrderType.LIMIT, leg.open_amount, reference, price=leg.price
            )
            if not placed.working and not placed.denied and trade.plan is not None:
                # The venue refused it: sending it again would be refused again. The stop
                # covers the whole position anyway.
                log.warning(
                    "%s: %s refused by the venue: dropped from the plan", trade.symbol, leg.name
                )
                trade.plan = on_venue_cancel(trade.plan, leg.name).plan
                await self._publish_plan(trade, f"{leg.name} refused by the venue")

    async def apply(
        self,
        trade: OpenTrade,
        decision: ExitDecision,
        reference: Decimal,
        *,
        exit_reason: str = STOP_NAME,
        at_close: bool = False,
    ) -> Submission | None:
        """Carry out ``decision``'s actions in order and adopt its plan; return what became
        of the market exit among them (None: it sent none).

        ``exit_reason`` names a market exit among the actions in reports (SL, SIGNAL, ...)
        unless the action names its own. ``at_close``: the decision was made at a candle's
        close (``core.brains.exit_moves``), not on a fill inside it.
        """
        trade.plan = decision.plan
        sent: Submission | None = None
        # A stop replacement cancels the old stop before placing the new one: safe, because the
        # risk gate lets protective orders through in every trading state.
        for action in decision.actions:
            sent = await self._act(trade, action, reference, exit_reason, at_close) or sent
        return sent

    async def _act(
        self,
        trade: OpenTrade,
        action: Action,
        reference: Decimal,
        exit_reason: str,
        at_close: bool = False,
    ) -> Submission | None:
        """Carry out one action; return the submission of the market exit it sent, if any."""
        match action:
            case ReplaceStop(price=price, amount=amount, reason=reason):
                await self._cancel(trade, STOP_NAME, "stop replaced")
                await self._stop(trade, price, amount, trade.next_tag("s"), reference, reason)
                await self._publish_plan(trade, f"stop moved: {reason}" if reason else "stop moved")
            case BotSideStop():
                await self._cancel(trade, STOP_NAME, "stop watched by the bot")
                previous, trade.bot_stop = trade.bot_stop, action
                if action.reason:
                    trade.stop_labels[action.price] = action.reason
                if at_close:
                    # Moved after the candle closed: the next candle is watched whole, at the
                    # new price only.
                    trade.bot_stop_before = None
                    trade.bot_stop_since_ms = None
                    trade.bot_stop_whole_candle = True
                    return None
                if previous is not None and previous.price != action.price:
                    # Watched until this fill: the engine still checks it against the part
                    # of the candle before the move (the worst case: the low came first).
                    trade.bot_stop_before = previous.price
                trade.bot_stop_since_ms = trade.last_fill_ms
                trade.bot_stop_whole_candle = not trade.legs  # set on the entry fill
            case CancelLeg(name=name):
                await self._cancel(trade, name, "leg canceled")
            case MarketExit(amount=amount, reason=reason):
                # What is left now: a cancel just before may have found a fill it raced.
                left = trade.plan.remaining if trade.plan is not None else amount
                if left > 0:
                    why = reason or exit_reason
                    return await self.market_exit(trade, left, reason=why, reference=reference)
            case CloseAll(cancel_legs=legs, cancel_stop=cancel_stop):
                for name in legs:
                    await self._cancel(trade, name, "position closed")
                if cancel_stop:
                    await self._cancel(trade, STOP_NAME, "position closed")
        return None

    async def market_exit(
        self, trade: OpenTrade, amount: Decimal, *, reason: str, reference: Decimal
    ) -> Submission:
        """Close ``amount`` at market; the fill is reported under ``reason`` (SL, SIGNAL...).
        Return what became of the order (denied, refused, sent or in doubt)."""
        tag = trade.next_tag("x")
        cid = client_order_id(trade.symbol, trade.decided_ms, tag)
        trade.exit_reasons[cid] = reason
        return await self._submit(trade, f"EXIT{tag}", cid, OrderType.MARKET, amount, reference)

    async def finish_if_flat(self, trade: OpenTrade) -> ClosedTrade | None:
        """When the position is flat: cancel leftovers and record the round trip (once)."""
        if trade.plan is None or not trade.plan.is_closed or trade.finished:
            return None
        trade.finished = True
        for name in list(trade.working):
            await self._cancel(trade, name, "position closed")
        return await self._book(trade)

    async def recover_finished(self, trade: OpenTrade) -> None:
        """Record the round trip of ``trade``, restored finished. Its process marked it
        finished, wrote that ahead with each leftover's cancel, and could be killed before
        the record: restored, the trade would be forgotten once the cancels are confirmed,
        its round trip never recorded. A row stored already stays the one row."""
        if self._trades is not None and trade.finished and trade.plan is not None:
            await self._book(trade)

    async def _book(self, trade: OpenTrade) -> ClosedTrade:
        """Record ``trade``'s round trip and announce it (``TradeClosed``). A replay after a
        restart finds its row stored already and announces it again: the state its process
        saved (the sizing account with it) is from before the close."""
        closed = closed_trade(trade)
        self.closed.append(closed)
        if self._trades is not None:  # stored before it is announced: /trades shows it
            await self._record(self._trades, closed)
        await self._bus.publish(
            TradeClosed(
                # One id per round trip: announced again after a restart (or by the next
                # process, with the events one killed in an outage kept), the trail holds it once.
                event_id=f"trade-closed:{closed.trade_id}",
                ts_ms=self._clock.now_ms(),
                trade_id=closed.trade_id,
                symbol=closed.symbol,
                side=closed.side.value,
                opened_ms=closed.opened_ms,
                closed_ms=closed.closed_ms,
                amount=closed.amount,
                entry_price=closed.entry_price,
                exit_price=closed.exit_price,
                fees=closed.fees,
                pnl=closed.pnl,
                pnl_pct=closed.pnl_pct,
                exit_reason=closed.exit_reason,
                provider=closed.provider,
                exit_profile=closed.exit_profile,
                explanation=closed.explanation,
            )
        )
        return closed

    async def book_late_fill(self, trade: OpenTrade, event: OrderFilled) -> ClosedTrade:
        """Record a spot exit's fill past its closed trade's position (``late_fill_record``)
        beside the trade's own record, so the books hold every coin the venue sold for it:
        in ``closed`` and the trades table (a database that refuses it keeps it waiting, as a
        close's record). No ``TradeClosed``: it is no round trip of a decision (no outcome
        for sizing or the loss limits); the engine's alert says it."""
        record = late_fill_record(trade, event)
        if record in self.closed:
            return record  # heard twice in this process: booked once
        self.closed.append(record)
        if self._trades is not None:
            await self._record(self._trades, record)
        return record

    async def record_waiting(self) -> None:
        """Store the closed trades a failed write left out (at stop: a stop before the next
        close must not lose them); a database still refusing is logged."""
        if self._trades is not None and self._unrecorded:
            await self._flush(self._trades)

    async def _record(self, repo: TradeRepo, closed: ClosedTrade) -> None:
        """Store ``closed`` and any earlier trade a failed write left out; a database that
        refuses is logged, not raised: trading goes on and ``closed`` still holds them."""
        self._unrecorded.append(closed)
        await self._flush(repo)

    async def _flush(self, repo: TradeRepo) -> None:
        while self._unrecorded:
            trade = self._unrecorded[0]
            try:
                await repo.add(trade)  # False: stored already (a replay), just as good
            except StorageUnavailable as e:
                log.warning(
                    "closed trade %s not stored (%d waiting, kept in memory): %s",
                    trade.trade_id,
                    len(self._unrecorded),
                    e,
                )
                return
            # Another flush (a save or sync of another task) may have stored and dropped it
            # meanwhile: drop this one, not whichever is first now (a row never stored).
            if trade in self._unrecorded:
                self._unrecorded.remove(trade)

    # --- orders ---------------------------------------------------------------------------------

    async def _stop(
        self,
        trade: OpenTrade,
        price: Decimal,
        amount: Decimal,
        tag: str,
        reference: Decimal,
        reason: str = "",
        *,
        fallback: bool = True,
    ) -> Submission | None:
        """Place the stop; return what became of it (None: not sent, the venue holds nothing).
        A refusal applies the fallback unless ``fallback`` is False."""
        held = await self._execution.position_amount(trade.symbol)
        if held <= 0:
            # The venue shows no position yet (or any more): a reduce-only stop would be
            # refused. The fills on their way bring the next stop (or close the plan).
            log.debug("%s: stop %s deferred, the venue holds nothing", trade.symbol, tag)
            return None
        # The venue may already hold less than the plan (fills of this moment still on their
        # way to us): a stop for what it holds protects that now; the next fill resizes it.
        amount = min(amount, held)
        price = self._on_tick(trade, price, OrderType.STOP_MARKET)
        if reason:  # a candle move's stop reports its own reason when it fills
            trade.stop_labels[price] = reason
        cid = client_order_id(trade.symbol, trade.decided_ms, tag)
        placed = await self._submit(
            trade, STOP_NAME, cid, OrderType.STOP_MARKET, amount, reference, stop_price=price
        )
        if placed.working:
            trade.stop_prices[cid] = price
        elif placed.denied:
            # Our gate held it back (it lets stops through in every state, so a limit of a
            # later brain): ensure_plan places it as soon as it may.
            log.warning("%s: stop order denied; placed again when allowed", trade.symbol)
        elif trade.plan is not None and fallback:
            log.warning("%s: stop order refused, fallback %s", trade.symbol, self._fallback.value)
            await self.apply(trade, on_stop_rejected(trade.plan, self._fallback), reference)
        return placed

    async def _submit(
        self,
        trade: OpenTrade,
        name: str,
        cid: str,
        order_type: OrderType,
        amount: Decimal,
        reference: Decimal,
        *,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> Submission:
        """Send an exit order; only one the venue accepted is recorded as working."""
        side = Side.SELL if trade.side is PositionSide.LONG else Side.BUY
        amount = self._on_step(trade, amount)
        if price is not None:
            price = self._on_tick(trade, price, order_type)
        request = OrderRequest(
            client_order_id=cid,
            symbol=trade.symbol,
            side=side,
            type=order_type,
            amount=amount,
            price=price,
            stop_price=stop_price,
            reduce_only=True,
            market_type=trade.market_type,
            leverage=trade.leverage,
            tag=name,
        )
        # Write-ahead: the order is stored as working before it goes out, so a crash right
        # after the send never leaves an order of ours the engine does not know (a restart
        # asks the venue about it: its fills, or "unknown order", which places it anew).
        trade.working[name] = cid
        trade.roles[cid] = name
        try:
            await self._persist()
            submission = await self._execution.submit(request, reference_price=reference)
        except StorageUnavailable:
            _unrecord(trade, name, cid)  # our own database failed: nothing was sent
            raise
        except DependencyError as e:
            # It may have reached the venue: it stays working, and the venue sync finds out.
            log.error("%s: %s %s in doubt (%s): asking the venue", trade.symbol, name, cid, e)
            return Submission(order=None, in_doubt=True)
        if not submission.working:
            _unrecord(trade, name, cid)  # denied or refused: it is not at the venue
        return submission

    def _on_tick(self, trade: OpenTrade, price: Decimal, order_type: OrderType) -> Decimal:
        """Return ``price`` on the symbol's tick now, moved away from the entry if it is off
        (a target a little further, a stop a tick wider: never one the venue would refuse)."""
        if self._rules is None:
            return price
        long = trade.side is PositionSide.LONG
        outward = (order_type is OrderType.LIMIT) is long  # a long's target up, its stop down
        return self._rules(trade.symbol).round_price(
            price, ROUND_CEILING if outward else ROUND_FLOOR
        )

    def _on_step(self, trade: OpenTrade, amount: Decimal) -> Decimal:
        """Return ``amount`` on the symbol's step now. A close of the whole remainder goes as
        it is (the venue closes a whole position whatever its step: one sized before a step
        change must still be closable); a part of it is cut down to the step."""
        if self._rules is None or (trade.plan is not None and amount >= trade.plan.remaining):
            return amount
        floored = self._rules(trade.symbol).floor_amount(amount)
        return floored if floored > ZERO else amount

    async def _may_take_profit(self, trade: OpenTrade) -> bool:
        """Return True when the risk gate lets a take-profit (reduce-only limit) through."""
        intent = OrderIntent(
            symbol=trade.symbol,
            notional=trade.amount * trade.entry_price,
            reduces_exposure=True,
            leverage=trade.leverage,
        )
        return (await self._execution.check(intent)).allowed

    async def _cancel(self, trade: OpenTrade, name: str, reason: str) -> None:
        cid = trade.working.pop(name, None)
        if cid is None:
            return
        trade.canceling[cid] = reason
        try:
            await self._persist()  # write-ahead: a restart asks again until the venue confirms
        except StorageUnavailable as e:
            # Not sent: it waits in trade.canceling for the next venue sync (retry_cancels).
            # Raised, it would cut short what follows: the other cancels, and a round trip
            # marked finished but never recorded (the chaos harness's full disk found it).
            log.warning("%s: cancel of %s waits for the database: %s", trade.symbol, cid, e)
            return
        await self._cancel_order(trade, cid, reason)

    async def retry_cancels(self, trade: OpenTrade) -> None:
        """Ask the venue again to cancel the orders whose cancel it has not confirmed (one
        found canceled is reported as such: the lost answer may have been our cancel's)."""
        for cid, reason in list(trade.canceling.items()):
            await self._cancel_order(trade, cid, reason, asked_before=True)

    async def _cancel_order(
        self, trade: OpenTrade, cid: str, reason: str, *, asked_before: bool = False
    ) -> None:
        """Cancel ``cid``; it stays in ``trade.canceling`` until the venue confirms the order
        ended, and whatever it filled before it ended is reported as a fill (a cancel that
        raced a fill must not lose the fill)."""
        trade.canceling[cid] = reason
        try:
            order = await self._execution.cancel(
                cid, trade.symbol, reason=reason, asked_before=asked_before
            )
        except DependencyError as e:
            log.warning("%s: cancel of %s unconfirmed (%s): asked again", trade.symbol, cid, e)
            return
        if order is not None and order.is_open:
            log.warning("%s: cancel of %s refused, it is open: asked again", trade.symbol, cid)
            return
        trade.canceling.pop(cid, None)
        if order is None:
            return  # the venue does not know it: nothing to cancel, nothing filled
        missed = missed_fill(trade, order, self._clock.now_ms())
        if missed is not None:
            log.info("%s: %s filled %s before it ended", trade.symbol, cid, missed.amount)
            await self._bus.publish(missed)

    async def _publish_plan(self, trade: OpenTrade, reason: str) -> None:
        plan = trade.plan
        if plan is None or not self._bus.wants(ExitPlanned.topic):
            return  # no plan, or nobody to tell (a backtest: no audit trail, no subscriber)
        await self._bus.publish(
            ExitPlanned(
                ts_ms=self._clock.now_ms(),
                symbol=trade.symbol,
                side=trade.side.value,
                entry_price=plan.entry_price,
                amount=plan.amount,
                take_profits=tuple((leg.name, leg.price, leg.amount) for leg in plan.open_legs),
                stop_price=plan.stop.price if plan.stop is not None else None,
                reason=reason,
                notes=plan.notes,
            )
        )


async def _nothing() -> None:
    """Persist nothing (backtests keep their trades in memory only)."""


def _unrecord(trade: OpenTrade, name: str, cid: str) -> None:
    """Undo the write-ahead record of an order that did not go out."""
    if trade.working.get(name) == cid:
        del trade.working[name]
    trade.roles.pop(cid, None)


def _closes_like_the_stop(role: str) -> bool:
    closes = (STOP_NAME, LIQUIDATION_NAME, CLOSED_OUTSIDE_NAME)
    return role in closes or role.startswith(MARKET_EXIT_NAME)


def _still_working(plan: ExitPlan, role: str) -> bool:
    """Return whether the order behind ``role`` can still fill after this fill."""
    if role == STOP_NAME:
        return plan.stop is not None and not plan.is_closed
    if role.startswith(MARKET_EXIT_NAME) or role in (LIQUIDATION_NAME, CLOSED_OUTSIDE_NAME):
        return False  # market exits, liquidations and closes found at the venue fill whole
    return any(leg.name == role for leg in plan.open_legs)


def _tag(trade: OpenTrade, tag: str) -> str:
    """Return a fixed client-id tag of ``trade``, a-prefixed for an adopted one (its base
    time is when it was adopted, which may be a candle's open: a later trade's ids)."""
    return f"a{tag}" if trade.adopted else tag
