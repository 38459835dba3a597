"""One position's bookkeeping from entry order to flat, and the records made from it.

``OpenTrade`` is what the engine keeps (and stores, ``trade_codec``) per symbol: the exit plan,
the working orders by role, the fills counted per order, and what the venue has not confirmed
yet. The functions turn fills into exit legs and a finished trade into a ``ClosedTrade``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from core.brains.exits import MARKET_EXIT_NAME, STOP_NAME, BotSideStop, ExitPlan
from core.domain.enums import MarketType, PositionSide
from core.domain.events import OrderFilled, fill_event_id
from core.domain.explanations import EntryExplanation, SizingNote
from core.domain.orders import Order
from core.domain.trades import ClosedTrade, ExitLeg

ZERO = Decimal(0)
TRAILED_STOP_REASON = "TSL"  # exit reason of a stop the ladder had moved; the first is "SL"
# Exit reason of a spot exit's fill past its closed trade's position (``late_fill_record``).
LATE_FILL_REASON = "LATE"


@dataclass(slots=True)
class OpenTrade:
    """Bookkeeping of one position from entry order to flat."""

    trade_id: str
    symbol: str
    side: PositionSide
    decided_ms: int  # open time of the candle the entry was decided on (base of client ids)
    entry_cid: str
    confidence: float
    atr: float
    market_type: MarketType
    leverage: int
    opened_ms: int | None = None
    amount: Decimal = ZERO
    entry_cost: Decimal = ZERO  # sum of fill amount * price
    entry_fee: Decimal = ZERO
    plan: ExitPlan | None = None
    working: dict[str, str] = field(default_factory=dict)  # leg name -> client id
    roles: dict[str, str] = field(default_factory=dict)  # client id -> leg name / "entry"
    exit_reasons: dict[str, str] = field(default_factory=dict)  # market exit cid -> reason
    legs: list[ExitLeg] = field(default_factory=list)
    bot_stop: BotSideStop | None = None
    seq: int = 0  # numbers stop replacements and market exits
    first_stop: Decimal | None = None  # the plan's initial stop price (a stop elsewhere: TSL)
    funding: Decimal = ZERO  # settled while open: received > 0, paid < 0
    liquidation_price: Decimal | None = None  # the venue's, once the entry filled (perps)
    filled_by_cid: dict[str, Decimal] = field(default_factory=dict)  # fills seen, per order
    cost_by_cid: dict[str, Decimal] = field(default_factory=dict)  # their sum of amount * price
    fee_by_cid: dict[str, Decimal] = field(default_factory=dict)  # and of fees
    stop_prices: dict[str, Decimal] = field(default_factory=dict)  # stop order cid -> its price
    last_fill_ms: int | None = None  # market time of the newest fill (entry or exit)
    # Orders we asked the venue to cancel and it has not confirmed ended (a cancel that timed
    # out): asked again every cycle, and the trade is kept (its symbol takes no new entry)
    # until none is left, so no order of ours outlives its trade.
    canceling: dict[str, str] = field(default_factory=dict)  # cid -> cancel reason
    finished: bool = False  # the round trip is recorded (TradeClosed published)
    flat_since_ms: int | None = None  # since when the venue shows no position (plan: some)
    bot_stop_since_ms: int | None = None  # when the bot began watching its own stop
    # Which part of that candle the watched stop saw: all of it when set on the entry fill
    # (at the open); after a fill inside the candle, only the move to its close.
    bot_stop_whole_candle: bool = True
    bot_stop_before: Decimal | None = None  # the price watched until a move inside a candle
    provider: str = ""  # the signal provider whose entry this is (the meta-strategy's pick)
    regime: str = ""  # the symbol's regime at the entry decision ("unknown" in warm-up)
    exit_profile: str = "default"  # the ladder chosen by that regime, kept while open
    explanation: EntryExplanation | None = None  # why the provider entered (the ensemble)
    sizing: SizingNote | None = None  # how it was sized (the method and its multiplier)
    # Stop price -> the exit reason of a stop a candle move placed there (TRAILING_STOP, ...):
    # an old stop order that fills after the next move still reports its own reason.
    stop_labels: dict[Decimal, str] = field(default_factory=dict)
    # Taken over from the venue by a flatten (``core.services.flatten``), not opened here: its
    # orders' tags are a-prefixed, so they never share an id with a trade decided on a candle
    # that opened in the same second.
    adopted: bool = False
    # Being adopted (``Engine.adopt``) and the venue has not accepted its stop yet: a restart
    # that restores it so gives it up (the adoption's fate unknown), the position unknown again.
    adopting: bool = False

    def note_fill(
        self, cid: str, amount: Decimal, price: Decimal, fee: Decimal, ts_ms: int | None = None
    ) -> None:
        """Count a fill of order ``cid`` (what the venue reports beyond this is news)."""
        self.filled_by_cid[cid] = self.filled_by_cid.get(cid, ZERO) + amount
        self.cost_by_cid[cid] = self.cost_by_cid.get(cid, ZERO) + amount * price
        self.fee_by_cid[cid] = self.fee_by_cid.get(cid, ZERO) + fee
        if ts_ms is not None:
            self.last_fill_ms = max(ts_ms, self.last_fill_ms or ts_ms)

    def stop_reason(self, stop_price: Decimal) -> str:
        """Return the reason of a stop a candle move placed at ``stop_price``, else SL for a
        stop at the plan's first stop price, TSL for one the ladder moved."""
        label = self.stop_labels.get(stop_price)
        if label:
            return label
        return STOP_NAME if stop_price == self.first_stop else TRAILED_STOP_REASON

    @property
    def entry_price(self) -> Decimal:
        """Return the average entry price."""
        return self.entry_cost / self.amount if self.amount else ZERO

    @property
    def market_exit_working(self) -> bool:
        """Return whether a market exit of this trade is working at the venue."""
        return any(name.startswith(MARKET_EXIT_NAME) for name in self.working)

    def next_tag(self, prefix: str) -> str:
        """Return a fresh tag such as ``s1`` or ``x2``."""
        self.seq += 1
        return f"{'a' if self.adopted else ''}{prefix}{self.seq}"


def exit_leg(trade: OpenTrade, event: OrderFilled, reason: str) -> ExitLeg:
    sign = Decimal(1) if trade.side is PositionSide.LONG else Decimal(-1)
    entry_fee_share = trade.entry_fee * event.amount / trade.amount if trade.amount else ZERO
    gross = sign * (event.price - trade.entry_price) * event.amount
    return ExitLeg(
        reason=reason,
        ts_ms=event.fill_ts_ms,
        price=event.price,
        amount=event.amount,
        fee=event.fee,
        pnl=gross - event.fee - entry_fee_share,
    )


def closed_trade(trade: OpenTrade) -> ClosedTrade:
    amount = sum((leg.amount for leg in trade.legs), ZERO)
    exit_value = sum((leg.amount * leg.price for leg in trade.legs), ZERO)
    pnl = sum((leg.pnl for leg in trade.legs), trade.funding)
    fees = trade.entry_fee + sum((leg.fee for leg in trade.legs), ZERO)
    notional = trade.entry_price * trade.amount
    last = trade.legs[-1]
    return ClosedTrade(
        trade_id=trade.trade_id,
        symbol=trade.symbol,
        side=trade.side,
        market_type=trade.market_type,
        leverage=trade.leverage,
        opened_ms=trade.opened_ms if trade.opened_ms is not None else trade.decided_ms,
        closed_ms=last.ts_ms,
        amount=amount,
        entry_price=trade.entry_price,
        exit_price=exit_value / amount if amount else ZERO,
        fees=fees,
        pnl=pnl,
        pnl_pct=float(pnl / notional) if notional else 0.0,
        exit_reason=last.reason,
        legs=tuple(trade.legs),
        funding=trade.funding,
        liquidation_price=trade.liquidation_price,
        provider=trade.provider,
        regime=trade.regime,
        exit_profile=trade.exit_profile,
        explanation=trade.explanation,
    )


def late_fill_record(trade: OpenTrade, event: OrderFilled) -> ClosedTrade:
    """Return the record of a spot exit order's fill that came after ``trade`` closed, past
    its position (a spot limit sell is not reduce-only: the venue sold coins the trade no
    longer held). Its own record, since the trade's is stored already: the fill's amount,
    price and fee, exit ``LATE``, its id the order's, the fill's time and amount (the same
    fill heard again after a restart is the same record). Its P&L is its fee only: the coins
    it sold were not bought by the trade, so it realised nothing against the trade's entry;
    what they were worth is the account's, which now holds that much less of the base coin."""
    fee = event.fee
    notional = event.amount * event.price
    leg = ExitLeg(
        reason=LATE_FILL_REASON,
        ts_ms=event.fill_ts_ms,
        price=event.price,
        amount=event.amount,
        fee=fee,
        pnl=-fee,
    )
    return ClosedTrade(
        # the amount too: two parts of one order filled at one millisecond are two records
        # (the trades table keeps one row per id), the same part heard again is one
        trade_id=f"{event.client_order_id}-late-{event.fill_ts_ms}-{event.amount.normalize():f}",
        symbol=trade.symbol,
        side=trade.side,
        market_type=trade.market_type,
        leverage=trade.leverage,
        opened_ms=event.fill_ts_ms,
        closed_ms=event.fill_ts_ms,
        amount=event.amount,
        entry_price=event.price,
        exit_price=event.price,
        fees=fee,
        pnl=-fee,
        pnl_pct=float(-fee / notional) if notional else 0.0,
        exit_reason=LATE_FILL_REASON,
        legs=(leg,),
        provider=trade.provider,
        regime=trade.regime,
        exit_profile=trade.exit_profile,
    )


def round_trips(trades: Iterable[ClosedTrade]) -> list[ClosedTrade]:
    """Return ``trades`` without the late fills' records (``late_fill_record``): those are no
    round trip of a decision (no entry of theirs, P&L the fee only), so what judges decisions
    (a provider's record, the mode's profit factor, a champion's live wins and losses) must
    not count them as losing trades; the books and reports keep them."""
    return [t for t in trades if t.exit_reason != LATE_FILL_REASON]


def missed_fill(trade: OpenTrade, order: Order, now_ms: int) -> OrderFilled | None:
    """Return the fill the venue's order state implies beyond what ``trade`` has counted:
    its amount, and its price and fee from the order's totals minus those counted."""
    cid = order.client_order_id
    amount = order.filled - trade.filled_by_cid.get(cid, ZERO)
    if amount <= 0 or order.average_price is None:
        return None
    cost = order.average_price * order.filled - trade.cost_by_cid.get(cid, ZERO)
    return OrderFilled(
        # Named by how much of the order has filled with it: a restart that lost the state
        # of this fill (not its event, kept while the database failed) finds it again under
        # the same id, and the audit trail holds it once.
        event_id=fill_event_id(cid, order.filled),
        ts_ms=now_ms,
        fill_ts_ms=order.updated_ms,
        client_order_id=cid,
        symbol=order.symbol,
        side=order.request.side.value,
        amount=amount,
        price=cost / amount,
        fee=max(ZERO, order.fee_paid - trade.fee_by_cid.get(cid, ZERO)),
        liquidity="unknown",
    )
