"""Adversarial review of start-up adoption (``QT__TRADING__UNKNOWN_POSITIONS=adopt``,
``Engine.adopt``, ``ExitExecutor.adopt_plan``, ``core.services.adoption``): restarts at each
step of an adoption, stops a failed adoption leaves behind, several positions, shorts, dust,
cheap coins, prices the venue does not give, halts and limits in force, and the round trip's
booking (issue 17)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from core.clock import SimClock
from core.config import load_settings
from core.domain.enums import MarketType, OrderType, PositionSide, Side, TradingState
from core.domain.events import AlertRaised, TradeClosed, TradingStateChanged
from core.domain.market_rules import MarketRules
from core.domain.orders import Order, OrderRequest
from core.errors import OrderRejected, TemporaryError
from core.exchange.ccxt import CcxtExchange
from core.market.rules_book import RulesBook
from core.services.adoption import ADOPT_PROVIDER
from core.services.risk_limits import LIMITS_ACTOR
from tests.unit.services.engine_harness import (
    T0_MS,
    Harness,
    ScriptedProvider,
    clean_settings,
)
from tests.unit.services.test_adoption import reconcile
from tests.unit.services.test_adoption import restart as restart_process

SOL = "SOL/USDT"
ETH = "ETH/USDT"


class Crash(BaseException):
    """The process dies here (SIGKILL): nothing after it runs, no handler catches it."""


async def venue_with(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *held: tuple[str, Side, D, float],
    env: dict[str, str] | None = None,
    book: RulesBook | None = None,
    traded: bool = False,
) -> Harness:
    """A paper venue holding positions opened by hand (symbol, side, amount, price), and an
    engine that persists its trades but holds none of them. ``traded``: the process trades
    their symbols too (its candles of them fed: they may be adopted), else only the default
    list's."""
    settings = clean_settings(monkeypatch, tmp_path)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    if env:
        settings = load_settings()
    if traded:
        symbols = [*settings.trading.symbols, *(s for s, *_ in held)]
        settings = settings.with_market(list(dict.fromkeys(symbols)), settings.trading.timeframe)
    h = await Harness(settings, ScriptedProvider(), persist=True, book=book).start()
    market = settings.exchange.market_type
    for n, (symbol, side, amount, price) in enumerate(held):
        p = float(price)
        await h.candle(2 * n, p, p * 1.01, p * 0.99, p, symbol=symbol)
        await h.paper.create_order(
            OrderRequest(
                client_order_id=f"manual-{n}",
                symbol=symbol,
                side=side,
                type=OrderType.MARKET,
                amount=amount,
                market_type=market,
            )
        )
        await h.candle(2 * n + 1, p, p * 1.01, p * 0.99, p, symbol=symbol)  # the hand fill
    return h


def restart(h: Harness, book: RulesBook | None = None) -> None:
    """A new process on the same venue and database (the old one heard nothing more)."""
    restart_process(h, book, trades=h.storage.trades)  # closed trades recorded


async def orders_of(h: Harness, symbol: str) -> list[Order]:
    return await h.paper.fetch_open_orders(symbol)


def stops(orders: list[Order]) -> list[Order]:
    return [o for o in orders if o.request.type is OrderType.STOP_MARKET]


def limits(orders: list[Order]) -> list[Order]:
    return [o for o in orders if o.request.type is OrderType.LIMIT]


def crash_on(h: Harness, monkeypatch: pytest.MonkeyPatch, order_type: OrderType) -> None:
    """The process dies once the venue accepted the first order of ``order_type``."""
    create = h.paper.create_order

    async def create_then_die(request: OrderRequest, *args: Any, **kwargs: Any) -> Order:
        order = await create(request, *args, **kwargs)
        if request.type is order_type:
            monkeypatch.setattr(h.paper, "create_order", create)
            raise Crash
        return order

    monkeypatch.setattr(h.paper, "create_order", create_then_die)


LONG_SOL = (SOL, Side.BUY, D(10), 20.0)
PERP = {"QT__EXCHANGE__MARKET_TYPE": "perp"}


# --- restarts at every step of one adoption ---------------------------------------------------


@pytest.mark.parametrize("later_ms", [30_000, 0])
async def test_a_crash_as_the_venue_accepts_the_stop_gives_up_and_adopts_again_at_the_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, later_ms: int
) -> None:
    """The venue took the stop, the process died before hearing so: the stored trade is
    still being adopted. The restart gives it up (its stop canceled) and adopts the position
    again, saying so: one stop at the venue, the new adoption's. ``later_ms`` 0: restarted
    within the same second (the paper venue answers a canceled order's id with that order:
    the new adoption's ids must differ from the given-up one's)."""
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL, traded=True)
    await h.engine.start()
    crash_on(h, monkeypatch, OrderType.STOP_MARKET)
    with pytest.raises(Crash):
        await reconcile(h)
    [first] = stops(await orders_of(h, SOL))
    h.clock.advance_to(h.clock.now_ms() + later_ms)
    restart(h)
    await h.engine.start()
    assert await orders_of(h, SOL) == []  # given up: its stop canceled
    assert [p.symbol for p in await h.engine.unknown_positions()] == [SOL]
    assert "adopted as its own trades" in await reconcile(h)
    trade = h.engine.trades[SOL]
    [stop] = stops(await orders_of(h, SOL))
    assert trade.working["SL"] == stop.client_order_id and not trade.adopting
    assert stop.client_order_id != first.client_order_id  # a fresh id, even the same second
    await h.candle(5, 20, 20.1, 19.9, 20, symbol=SOL)
    assert stops(await orders_of(h, SOL)) == [stop]
    assert trade.plan is not None and len(limits(await orders_of(h, SOL))) == len(trade.plan.legs)


async def test_a_crash_after_the_first_take_profit_places_only_the_rest_after_the_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL, traded=True)
    await h.engine.start()
    crash_on(h, monkeypatch, OrderType.LIMIT)
    with pytest.raises(Crash):
        await reconcile(h)
    before = await orders_of(h, SOL)
    assert len(stops(before)) == 1 and len(limits(before)) == 1
    restart(h)
    await h.engine.start()
    assert await reconcile(h) == ""
    await h.candle(5, 20, 20.1, 19.9, 20, symbol=SOL)
    after = await orders_of(h, SOL)
    ids = [o.client_order_id for o in after]
    assert len(ids) == len(set(ids)) and len(stops(after)) == 1
    plan = h.engine.trades[SOL].plan
    assert plan is not None and len(limits(after)) == len(plan.legs)


async def test_a_crash_before_the_stop_reached_the_venue_adopts_again_after_the_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Stored as working (write-ahead), then the process died before the send."""
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL, traded=True)
    await h.engine.start()
    create = h.paper.create_order

    async def die(request: OrderRequest, *args: Any, **kwargs: Any) -> Order:
        raise Crash

    monkeypatch.setattr(h.paper, "create_order", die)
    with pytest.raises(Crash):
        await reconcile(h)
    monkeypatch.setattr(h.paper, "create_order", create)  # a venue that takes orders again
    assert await orders_of(h, SOL) == []
    restart(h)
    await h.engine.start()  # given up: the venue never had its stop
    assert "adopted as its own trades" in await reconcile(h)
    assert len(stops(await orders_of(h, SOL))) == 1


async def test_a_stop_in_doubt_whose_cancel_fails_leaves_no_orphan_for_the_next_adoption(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The stop's answer was lost (it is at the venue) and its cancel timed out too: the
    adoption fails, trading reduces. The next start adopts the position again: the stop the
    failed adoption left at the venue must not stay beside the new one (two reduce-only
    stops, the orphan's fill unknown to the engine)."""
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL, traded=True)
    await h.engine.start()
    create, cancel = h.paper.create_order, h.paper.cancel_order

    async def lost_answer(request: OrderRequest, *args: Any, **kwargs: Any) -> Order:
        order = await create(request, *args, **kwargs)
        if request.type is OrderType.STOP_MARKET:
            raise TemporaryError("timed out")
        return order

    async def no_cancel(cid: str, symbol: str) -> Order:
        raise TemporaryError("timed out")

    monkeypatch.setattr(h.paper, "create_order", lost_answer)
    monkeypatch.setattr(h.paper, "cancel_order", no_cancel)
    said = await reconcile(h)
    assert "not adopted" in said
    assert await h.trading_state.current() is TradingState.REDUCING
    monkeypatch.setattr(h.paper, "create_order", create)
    monkeypatch.setattr(h.paper, "cancel_order", cancel)
    h.clock.advance_to(h.clock.now_ms() + 300_000)  # restarted five minutes later
    restart(h)
    await h.engine.start()
    assert await reconcile(h) != ""
    assert h.engine.trades[SOL].provider == ADOPT_PROVIDER
    [stop] = stops(await orders_of(h, SOL))  # one stop, the trade's own
    assert stop.client_order_id == h.engine.trades[SOL].working["SL"]


# --- several positions, shorts, small and cheap ones ------------------------------------------


async def test_two_positions_one_refused_adopts_the_other_and_reduces_for_the_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await venue_with(
        monkeypatch, tmp_path, LONG_SOL, (ETH, Side.BUY, D(1), 2_000.0), traded=True
    )
    await h.engine.start()
    create = h.paper.create_order

    async def no_eth_stop(request: OrderRequest, *args: Any, **kwargs: Any) -> Order:
        if request.symbol == ETH and request.type is OrderType.STOP_MARKET:
            raise OrderRejected("stops are not supported for this symbol")
        return await create(request, *args, **kwargs)

    monkeypatch.setattr(h.paper, "create_order", no_eth_stop)
    said = await reconcile(h)
    assert "SOL/USDT long 10" in said.split(";")[0]  # adopted
    assert "not adopted: ETH/USDT long" in said
    assert await h.trading_state.current() is TradingState.REDUCING
    assert list(h.engine.trades) == [SOL] and await orders_of(h, ETH) == []
    severities = sorted(e.severity for e in h.of(AlertRaised))  # type: ignore[attr-defined]
    assert severities == ["critical", "warning"]


async def test_a_short_perp_position_is_adopted_with_a_stop_above_and_targets_below(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await venue_with(
        monkeypatch,
        tmp_path,
        (SOL, Side.SELL, D(10), 20.0),
        env={"QT__EXCHANGE__MARKET_TYPE": "perp"},
        traded=True,
    )
    await h.engine.start()
    [short] = await h.engine.unknown_positions()
    assert short.side is PositionSide.SHORT
    assert await reconcile(h) != ""
    trade = h.engine.trades[SOL]
    assert trade.side is PositionSide.SHORT and trade.market_type is MarketType.PERP
    orders = await orders_of(h, SOL)
    [stop] = stops(orders)
    assert stop.request.side is Side.BUY and stop.request.reduce_only
    assert stop.request.stop_price is not None and stop.request.stop_price > trade.entry_price
    assert all(
        o.request.price is not None and o.request.price < trade.entry_price for o in limits(orders)
    )
    assert limits(orders) and all(o.request.side is Side.BUY for o in limits(orders))


async def test_a_position_too_small_for_the_take_profits_is_adopted_with_its_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)
    book = RulesBook(settings.market.default_rules())
    book.use_venue(
        {
            SOL: MarketRules(
                symbol=SOL, amount_step=D("0.1"), price_tick=D("0.01"), min_amount=D("0.1")
            )
        }
    )
    h = await venue_with(
        monkeypatch, tmp_path, (SOL, Side.BUY, D("0.1"), 20.0), book=book, traded=True
    )
    restart(h, book)
    await h.engine.start()
    said = await reconcile(h)
    assert "adopted" in said, said
    orders = await orders_of(h, SOL)
    [stop] = stops(orders)
    assert stop.request.amount == D("0.1")
    for o in limits(orders):  # any take-profit the venue holds is on its grid
        assert o.request.amount >= D("0.1") and o.request.amount % D("0.1") == 0


async def test_a_cheap_coin_gets_a_stop_on_its_own_tick_not_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)
    book = RulesBook(settings.market.default_rules())
    pepe = "PEPE/USDT"
    book.use_venue({pepe: MarketRules(symbol=pepe, amount_step=D(1), price_tick=D("0.0000001"))})
    h = await venue_with(
        monkeypatch, tmp_path, (pepe, Side.BUY, D(1_000_000), 0.0001), book=book, traded=True
    )
    restart(h, book)
    await h.engine.start()
    said = await reconcile(h)
    assert "adopted" in said, said
    [stop] = stops(await orders_of(h, pepe))
    assert stop.request.stop_price is not None
    assert D("0.00005") < stop.request.stop_price < D("0.0001")


async def test_a_cheap_coin_on_the_default_rules_is_refused_not_given_a_stop_at_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No venue rules for it (a default tick of 0.01): a stop cannot sit below 0.0001."""
    pepe = "PEPE/USDT"
    h = await venue_with(monkeypatch, tmp_path, (pepe, Side.BUY, D(1_000_000), 0.0001), traded=True)
    await h.engine.start()
    said = await reconcile(h)
    assert "not adopted" in said and "too coarse" in said
    assert pepe not in h.engine.trades and await orders_of(h, pepe) == []


@pytest.mark.parametrize("entry", [D(0), D(-1), D("NaN")])
async def test_a_position_without_an_entry_price_is_not_adopted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, entry: D
) -> None:
    """A venue that reports no entry price (0, or a value its adapter could not read)."""
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL, traded=True)
    await h.engine.start()
    [held] = await h.engine.unknown_positions()
    why = await h.engine.adopt(dataclasses.replace(held, entry_price=entry))
    assert why != ""
    assert SOL not in h.engine.trades and await orders_of(h, SOL) == []


# --- what is in force at start: a halt, the limits -------------------------------------------


@pytest.mark.parametrize("actor", ["telegram:1", LIMITS_ACTOR])
async def test_a_halt_in_force_adopts_with_the_stop_only_and_stays_halted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, actor: str
) -> None:
    """A halt (an operator's /halt, or the daily loss limit's) lets protective orders
    through: the stop goes out, the take-profits wait for the resume; the halt, its reason
    and its owner stay (every position adopted: reconciliation asks for no state)."""
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL, traded=True)
    await h.trading_state.set(TradingState.HALTED, reason="/halt by op", actor=actor)
    restart(h)
    await h.engine.start()
    said = await reconcile(h)
    assert "adopted" in said
    assert await h.trading_state.current() is TradingState.HALTED
    assert await h.trading_state.reason() == "/halt by op"
    changes = [e for e in h.of(TradingStateChanged) if isinstance(e, TradingStateChanged)]
    assert [e.actor for e in changes] == [actor]  # the halt's own: untouched by the adoption
    orders = await orders_of(h, SOL)
    assert len(stops(orders)) == 1 and limits(orders) == []
    await h.trading_state.set(TradingState.ACTIVE, reason="/resume by op", actor="telegram:1")
    await h.candle(5, 20, 20.1, 19.9, 20, symbol=SOL)
    plan = h.engine.trades[SOL].plan
    assert plan is not None and len(limits(await orders_of(h, SOL))) == len(plan.legs) > 0


async def test_the_max_open_positions_reached_still_adopts_both_with_their_stops(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The positions are there whatever the limit says: protecting them is reduce-only."""
    h = await venue_with(
        monkeypatch,
        tmp_path,
        LONG_SOL,
        (ETH, Side.BUY, D(1), 2_000.0),
        env={"QT__RISK__MAX_OPEN_POSITIONS": "1"},
        traded=True,
    )
    await h.engine.start()
    said = await reconcile(h)
    assert "2 position(s)" in said and "not adopted" not in said
    assert sorted(h.engine.trades) == [ETH, SOL]
    for symbol in (ETH, SOL):
        assert len(stops(await orders_of(h, symbol))) == 1
    assert await h.trading_state.current() is TradingState.ACTIVE


# --- the round trip's booking -------------------------------------------------------------------


async def test_the_adopted_round_trip_is_booked_from_the_venues_entry_with_the_exit_fee_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The entry's fee was not the bot's to pay (or know): the P&L is the move from the
    venue's entry price less the exit's fee; the sizing service books nothing of it (no
    multiplier was applied to it)."""
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL, traded=True)
    restart(h)  # a process that records its closed trades
    await h.engine.start()
    await reconcile(h)
    trade = h.engine.trades[SOL]
    assert trade.plan is not None and trade.plan.stop is not None
    entry, stop = trade.entry_price, trade.plan.stop.price
    sized_before = h.engine.sizing.dump()
    low = float(stop) - 0.5
    await h.candle(5, 20, 20.1, low, low + 0.1, symbol=SOL)  # through the stop
    [closed] = h.of(TradeClosed)
    assert isinstance(closed, TradeClosed) and closed.provider == ADOPT_PROVIDER
    assert closed.entry_price == entry == D("20.004")
    assert closed.amount == 10 and closed.exit_price <= stop
    assert closed.fees > 0  # the exit's taker fee, and nothing for the entry
    assert closed.fees == closed.exit_price * 10 * h.settings.paper.taker_fee
    assert closed.pnl == (closed.exit_price - entry) * 10 - closed.fees
    assert closed.pnl_pct == float(closed.pnl / (entry * 10))
    assert h.engine.sizing.dump() == sized_before  # not sized here: not booked here
    [stored] = await h.storage.trades.list_closed()
    assert stored.trade_id == closed.trade_id and stored.pnl == closed.pnl


async def test_a_crash_between_a_refused_stop_and_the_give_up_does_not_adopt_after_the_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The venue refused the adoption's stop; the process died before forgetting the trade
    (its write-ahead record holds the stop as working). The restart finds the venue never
    had the stop: the trade must not come back as adopted with a bot-side fallback (an
    adoption never falls back) and no alert: the position is unknown again."""
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL, traded=True)
    restart(h)
    await h.engine.start()
    create, write = h.paper.create_order, h.storage.state.set
    refused: list[str] = []

    async def refuse_stop(request: OrderRequest, *args: Any, **kwargs: Any) -> Order:
        if request.type is OrderType.STOP_MARKET:
            refused.append(request.client_order_id)
            raise OrderRejected("stop orders are not supported for this symbol")
        return await create(request, *args, **kwargs)

    async def die_after_the_refusal(key: Any, value: str) -> None:
        if refused:
            raise Crash
        await write(key, value)

    monkeypatch.setattr(h.paper, "create_order", refuse_stop)
    monkeypatch.setattr(h.storage.state, "set", die_after_the_refusal)
    with pytest.raises(Crash):
        await reconcile(h)
    monkeypatch.setattr(h.storage.state, "set", write)
    restart(h)
    await h.engine.start()
    trade = h.engine.trades.get(SOL)
    assert trade is None or (trade.plan is not None and trade.bot_stop is None)
    if trade is None:
        assert [p.symbol for p in await h.engine.unknown_positions()] == [SOL]


async def test_an_earlier_adoptions_order_that_cannot_be_canceled_is_a_reason_not_to_adopt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL, traded=True)
    await h.engine.start()
    assert await reconcile(h) != ""
    left = [o.client_order_id for o in await orders_of(h, SOL)]  # its stop and take-profits
    h.clock.advance_to(h.clock.now_ms() + 300_000)
    restart(h)  # not started: the trade lost, its orders at the venue are orphans of ours
    hand = await h.paper.create_order(  # an order of the operator's own: not ours to cancel
        OrderRequest(
            client_order_id="manual-tp",
            symbol=SOL,
            side=Side.SELL,
            type=OrderType.LIMIT,
            amount=D(1),
            price=D(30),
        )
    )

    async def no_cancel(cid: str, symbol: str) -> Order:
        raise OrderRejected("cancel refused")

    cancel = h.paper.cancel_order
    monkeypatch.setattr(h.paper, "cancel_order", no_cancel)
    [held] = await h.engine.unknown_positions()
    why = await h.engine.adopt(held)
    assert why == f"an earlier adoption's orders are still at the venue: {', '.join(left)}"
    assert SOL not in h.engine.trades
    monkeypatch.setattr(h.paper, "cancel_order", cancel)
    assert await h.engine.adopt(held) == ""
    orders = {o.client_order_id for o in await orders_of(h, SOL)}
    assert not orders & set(left) and hand.client_order_id in orders
    assert h.engine.trades[SOL].working["SL"] in orders


# --- what the process trades: spot, the symbols ----------------------------------------------


async def test_live_spot_reports_no_positions_so_nothing_is_ever_adopted() -> None:
    """Spot holdings are balances (``CcxtExchange.fetch_positions``): nothing is unknown,
    nothing adopted, and no reduce-only stop-market (which spot venues lack) is sent. The
    paper book's spot positions are adopted (it holds positions and takes such stops)."""
    from tests.unit.services.test_portfolio import BinanceUsdmCcxt

    spot = CcxtExchange(BinanceUsdmCcxt(), clock=SimClock(T0_MS), market_type=MarketType.SPOT)
    assert await spot.fetch_positions() == []


async def test_a_position_in_a_symbol_the_process_does_not_trade_is_not_adopted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL)
    assert SOL not in h.settings.trading.symbols
    await h.engine.start()
    said = await reconcile(h)
    assert "not adopted" in said and SOL not in h.engine.trades


# --- prices far from the entry ------------------------------------------------------------------


async def test_a_short_whose_price_rose_past_its_stop_gets_the_stop_as_far_above_the_price(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await venue_with(
        monkeypatch,
        tmp_path,
        (SOL, Side.SELL, D(10), 20.0),
        env={"QT__EXCHANGE__MARKET_TYPE": "perp"},
        traded=True,
    )
    await h.engine.start()
    [short] = await h.engine.unknown_positions()
    h.engine.prices[SOL] = D("23")
    assert await h.engine.adopt(short) == ""
    plan = h.engine.trades[SOL].plan
    assert plan is not None and plan.stop is not None and plan.initial_stop is not None
    distance = plan.initial_stop - short.entry_price
    assert distance > 0  # the plan's own distance, above the entry
    assert plan.stop.price == (D("23") + distance).quantize(D("0.01"), "ROUND_CEILING")
    [stop] = stops(await orders_of(h, SOL))
    assert stop.request.stop_price == plan.stop.price and stop.request.side is Side.BUY


async def test_a_long_far_in_profit_is_not_closed_by_its_adoption(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await venue_with(monkeypatch, tmp_path, LONG_SOL, traded=True)
    await h.engine.start()
    await h.candle(4, 20, 26.2, 20, 26, symbol=SOL)  # it rose to 26 before the restart
    assert "adopted" in await reconcile(h)
    plan = h.engine.trades[SOL].plan
    # planned as if entered at 26: every target ahead of the price, the stop below it
    assert plan is not None and plan.legs and all(leg.price > 26 for leg in plan.legs)
    assert plan.stop is not None and 24 < plan.stop.price < 26
    await h.candle(5, 26, 26.2, 25.8, 26, symbol=SOL)
    assert h.of(TradeClosed) == []
    [held] = await h.paper.fetch_positions()
    assert held.amount == 10


async def test_an_unexpected_error_adopting_one_fails_the_start_and_the_restart_gives_it_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bug (not a venue error) placing the second position's stop fails the start (fail
    closed: no trading on a book half handled); the next start keeps an adoption done before
    it, gives the half-done one up and sees its position unknown again."""
    h = await venue_with(
        monkeypatch, tmp_path, LONG_SOL, (ETH, Side.BUY, D(1), 2_000.0), traded=True
    )
    await h.engine.start()
    create = h.paper.create_order

    async def eth_bug(request: OrderRequest, *args: Any, **kwargs: Any) -> Order:
        if request.symbol == ETH:
            raise ZeroDivisionError("a bug in the adapter")
        return await create(request, *args, **kwargs)

    monkeypatch.setattr(h.paper, "create_order", eth_bug)
    with pytest.raises(ZeroDivisionError):
        await reconcile(h)
    monkeypatch.setattr(h.paper, "create_order", create)
    h.clock.advance_to(h.clock.now_ms() + 30_000)
    restart(h)
    await h.engine.start()
    assert ETH not in h.engine.trades  # given up
    assert not any(t.adopting for t in h.engine.trades.values())
    unknown = [p.symbol for p in await h.engine.unknown_positions()]
    assert ETH in unknown and sorted([*h.engine.trades, *unknown]) == [ETH, SOL]
    assert await orders_of(h, ETH) == []
    assert "adopted" in await reconcile(h)
    assert sorted(h.engine.trades) == [ETH, SOL]
    for symbol in (ETH, SOL):
        assert len(stops(await orders_of(h, symbol))) == 1
