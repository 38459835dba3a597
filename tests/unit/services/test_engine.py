"""The engine end to end on the paper exchange, with candles built so every number is known.

Defaults throughout (but for the harness's round position, see ``clean_settings``): 10_000
USDT, taker and maker fee 0.1 %, slippage 2 bps, amount step 0.00001, tick 0.01, ladder TP1
+1.95 % (30 %), TP2 +3.25 % (30 %), TP3 +5.20 % (40 %), stop -2 %, break-even buffer 0.2 %.

The entry is decided on candle 0 (close 100) and sized at the expected fill 100.02: the
5_001 USDT position cap gives 50 units (2 % risk would allow 200 / 2.2176 = 90). It fills at
candle 1's open 100 plus 2 bps: 100.02, fee 50 * 100.02 * 0.1 % = 5.001. The exit plan, from
100.02:

* TP1 100.02 * 1.0195 = 101.97039 -> 101.97 (take-profits round toward the entry), 15 units
* TP2 100.02 * 1.0325 = 103.27065 -> 103.27, 15 units
* TP3 100.02 * 1.0520 = 105.22104 -> 105.22, 20 units
* SL 100.02 * 0.98 = 98.0196 -> 98.02 (stops round toward profit), 50 units
* break-even after TP1: 100.02 * 1.002 = 100.22004 -> 100.23
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from core.brains.exits import StopMode
from core.config import Settings, load_settings
from core.domain.enums import Liquidity, OrderStatus, OrderType, PositionSide, Side, TradingState
from core.domain.events import (
    ExitPlanned,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    TradeClosed,
)
from core.domain.orders import Order, OrderRequest
from core.errors import OrderRejected as VenueRejected
from core.exchange.paper import PaperExchange
from core.services.bus import EventBus
from core.services.trading_state import TradingStateService
from tests.unit.services.engine_harness import SYMBOL, Harness, ScriptedProvider, at, clean_settings

ENTRY_PRICE = D("100.02")
ENTRY_FEE = D("5.001")
AMOUNT = D(50)

# (i, open, high, low, close)
DECIDE = (0, 100.0, 100.5, 99.5, 100.0)  # the entry signal's candle
FILL = (1, 100.0, 100.6, 99.6, 100.3)  # the market entry fills at its open; touches no exit


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    return clean_settings(monkeypatch, tmp_path)


async def entered(settings: Settings, **script: object) -> Harness:
    """Return a harness after the entry decided on candle 0 has filled on candle 1."""
    provider = ScriptedProvider(entries={at(0): 1}, **script)  # type: ignore[arg-type]
    h = await Harness(settings, provider).start()
    await h.candles([DECIDE, FILL])
    return h


def by_type(orders: list[Order]) -> dict[str, list[tuple[D | None, D]]]:
    out: dict[str, list[tuple[D | None, D]]] = {}
    for o in orders:
        req = o.request
        price = req.price if req.type is OrderType.LIMIT else req.stop_price
        out.setdefault(req.type.value, []).append((price, o.remaining))
    return out


async def test_entry_fills_at_next_open_and_places_the_default_ladder(settings: Settings) -> None:
    h = await entered(settings)
    [submitted, *_] = h.of(OrderSubmitted)
    assert isinstance(submitted, OrderSubmitted)
    assert (submitted.side, submitted.type, submitted.amount) == ("buy", "market", AMOUNT)
    assert submitted.ts_ms == at(1)  # decided when candle 0 closed
    [fill] = h.of(OrderFilled)
    assert isinstance(fill, OrderFilled)
    assert fill.price == ENTRY_PRICE  # 100 * (1 + 0.0002)
    assert fill.fee == ENTRY_FEE  # 50 * 100.02 * 0.001
    assert fill.liquidity == Liquidity.TAKER
    assert fill.fill_ts_ms == at(1)

    orders = await h.open_orders()
    assert all(o.request.reduce_only and o.request.side is Side.SELL for o in orders)
    assert by_type(orders) == {
        "limit": [(D("101.97"), D(15)), (D("103.27"), D(15)), (D("105.22"), D(20))],
        "stop_market": [(D("98.02"), D(50))],
    }
    [planned] = h.of(ExitPlanned)
    assert isinstance(planned, ExitPlanned)
    assert planned.entry_price == ENTRY_PRICE
    assert planned.stop_price == D("98.02")
    trade = h.engine.trades[SYMBOL]
    assert trade.side is PositionSide.LONG
    assert (trade.amount, trade.entry_price, trade.entry_fee) == (AMOUNT, ENTRY_PRICE, ENTRY_FEE)
    # 10_000 - 50 * 100.02 - 5.001
    assert await h.quote_total() == D("4993.999")


async def test_ladder_moves_the_stop_and_tp3_closes_with_no_orphans(settings: Settings) -> None:
    h = await entered(settings)

    await h.candle(2, 100.3, 102.0, 100.1, 101.5)  # reaches TP1 only
    assert by_type(await h.open_orders()) == {
        "limit": [(D("103.27"), D(15)), (D("105.22"), D(20))],
        "stop_market": [(D("100.23"), D(35))],  # break-even: 100.02 * 1.002, rounded up
    }

    await h.candle(3, 101.5, 103.3, 101.2, 103.0)  # reaches TP2 only
    assert by_type(await h.open_orders()) == {
        "limit": [(D("105.22"), D(20))],
        "stop_market": [(D("101.97"), D(20))],  # TP1's price
    }

    await h.candle(4, 103.0, 105.3, 102.5, 105.0)  # reaches TP3
    assert await h.open_orders() == []
    assert h.engine.trades == {}
    positions = await h.paper.fetch_positions()
    assert positions == []

    [trade] = h.engine.closed_trades
    assert [leg.reason for leg in trade.legs] == ["TP1", "TP2", "TP3"]
    assert [leg.price for leg in trade.legs] == [D("101.97"), D("103.27"), D("105.22")]
    assert [leg.amount for leg in trade.legs] == [D(15), D(15), D(20)]
    # maker fee 0.1 %: 15 * 101.97, 15 * 103.27, 20 * 105.22 times 0.001
    assert [leg.fee for leg in trade.legs] == [D("1.52955"), D("1.54905"), D("2.10440")]
    # leg pnl = (price - 100.02) * amount - fee - entry fee * amount / 50
    assert [leg.pnl for leg in trade.legs] == [D("26.22015"), D("45.70065"), D("99.89520")]
    assert [leg.ts_ms for leg in trade.legs] == [at(2), at(3), at(4)]
    assert trade.exit_reason == "TP3"
    assert trade.amount == AMOUNT
    assert trade.entry_price == ENTRY_PRICE
    assert trade.exit_price == D("103.66")  # (1529.55 + 1549.05 + 2104.40) / 50
    assert trade.fees == D("10.18400")
    assert trade.pnl == D("171.81600")
    assert trade.pnl_pct == pytest.approx(171.816 / 5001.0, rel=1e-12)
    assert (trade.opened_ms, trade.closed_ms) == (at(1), at(4))
    # the cash agrees with the trade: 10_000 + 171.816
    assert await h.quote_total() == D("10171.816")
    [closed] = h.of(TradeClosed)
    assert isinstance(closed, TradeClosed)
    assert (closed.pnl, closed.exit_reason) == (D("171.81600"), "TP3")


async def test_candle_touching_stop_and_tp1_fills_the_stop_first(settings: Settings) -> None:
    h = await entered(settings)
    tp_ids = [o.client_order_id for o in await h.open_orders() if o.request.price is not None]

    await h.candle(2, 100.3, 102.5, 97.5, 99.0)  # through TP1 (101.97) and the stop (98.02)

    fills = [e for e in h.of(OrderFilled) if isinstance(e, OrderFilled)]
    assert [f.side for f in fills] == ["buy", "sell"]  # the entry, then only the stop
    stop_fill = fills[1]
    assert stop_fill.price == D("98.000396")  # 98.02 * (1 - 0.0002)
    assert stop_fill.fee == D("4.9000198")  # 50 * 98.000396 * 0.001
    assert await h.open_orders() == []
    for cid in tp_ids:
        order = await h.paper.fetch_order(cid, SYMBOL)
        assert order.status is OrderStatus.CANCELED
        assert order.filled == 0
    [trade] = h.engine.closed_trades
    assert [(leg.reason, leg.amount) for leg in trade.legs] == [("SL", AMOUNT)]
    assert trade.exit_reason == "SL"
    # (98.000396 - 100.02) * 50 - 4.9000198 - 5.001
    assert trade.pnl == D("-110.8812198")
    assert await h.quote_total() == D(10_000) + trade.pnl


async def test_exit_signal_closes_at_market_and_cancels_the_rest(settings: Settings) -> None:
    h = await entered(settings, exit_long={at(2)})

    await h.candle(2, 100.3, 100.8, 99.9, 100.5)  # quiet, but the signal says out
    open_now = by_type(await h.open_orders())
    assert open_now["market"] == [(None, AMOUNT)]
    assert "limit" not in open_now  # the take-profits went at once
    canceled = [e for e in h.of(OrderCanceled) if isinstance(e, OrderCanceled)]
    assert len(canceled) == 3
    assert {e.reason for e in canceled} == {"leg canceled"}

    await h.candle(3, 100.4, 100.9, 100.0, 100.6)
    assert await h.open_orders() == []  # the stop went with the fill
    [trade] = h.engine.closed_trades
    assert trade.exit_reason == "SIGNAL"
    [leg] = trade.legs
    assert leg.price == D("100.37992")  # 100.4 * (1 - 0.0002)
    assert leg.fee == D("5.018996")
    # (100.37992 - 100.02) * 50 - 5.018996 - 5.001
    assert trade.pnl == D("7.976004")
    assert leg.ts_ms == at(3)


@pytest.mark.parametrize(
    ("state", "reason"),
    [(TradingState.HALTED, "halted"), (TradingState.REDUCING, "reducing_only")],
)
async def test_no_entry_reaches_the_exchange_unless_active(
    settings: Settings, state: TradingState, reason: str
) -> None:
    h = await Harness(settings, ScriptedProvider(entries={at(0): 1, at(1): 1})).start()
    await h.trading_state.set(state, reason="test", actor="test")
    await h.candles([DECIDE, FILL])
    denied = [e for e in h.of(OrderDenied) if isinstance(e, OrderDenied)]
    assert [e.reason for e in denied] == [reason, reason]  # both candles' entries
    assert await h.storage.orders.list_all() == []  # nothing was ever sent
    assert h.of(OrderSubmitted) == []
    assert h.engine.trades == {}
    assert await h.quote_total() == D(10_000)


async def test_reducing_still_lets_the_exits_work(settings: Settings) -> None:
    h = await entered(settings)
    await h.trading_state.set(TradingState.REDUCING, reason="test", actor="test")
    await h.candle(2, 100.3, 102.0, 100.1, 101.5)  # TP1 fills, the stop moves to break-even
    assert h.of(OrderDenied) == []
    assert by_type(await h.open_orders())["stop_market"] == [(D("100.23"), D(35))]


async def test_a_halt_still_moves_the_stop_and_lets_it_close_the_position(
    settings: Settings,
) -> None:
    """Halted by another process on the same database (``qt state halt``): new exposure and
    take-profits are denied, but protection is not. TP1 fills, the ladder moves the stop to
    break-even (a stop is let through), and that stop closes the rest."""
    h = await entered(settings)
    elsewhere = TradingStateService(h.storage.state, EventBus(), h.clock)
    await elsewhere.set(TradingState.HALTED, reason="operator", actor="cli")
    await h.candle(2, 100.3, 102.0, 100.1, 101.5)  # TP1 fills
    assert h.of(OrderDenied) == []
    assert by_type(await h.open_orders()) == {
        "limit": [(D("103.27"), D(15)), (D("105.22"), D(20))],  # already resting: they stay
        "stop_market": [(D("100.23"), D(35))],  # break-even
    }
    await h.candle(3, 101.5, 101.6, 97.0, 97.5)  # through the break-even stop
    [trade] = h.engine.closed_trades
    assert [(leg.reason, leg.amount) for leg in trade.legs] == [("TP1", D(15)), ("TSL", D(35))]
    assert await h.open_orders() == []  # the take-profits are canceled (cancels always work)


class NoStopPaper(PaperExchange):
    """A paper venue that refuses stop orders (as some venues do for some symbols)."""

    async def create_order(self, request: OrderRequest) -> Order:
        if request.type is OrderType.STOP_MARKET:
            raise VenueRejected(f"{self.name}: stop orders are not supported on {request.symbol}")
        return await super().create_order(request)


async def test_rejected_stop_falls_back_to_a_bot_side_stop(settings: Settings) -> None:
    assert settings.exits.stop_fallback == "bot_side"
    h = Harness(settings, ScriptedProvider(entries={at(0): 1}), paper_class=NoStopPaper)
    await h.start()
    await h.candles([DECIDE, FILL])

    [rejected] = h.of(OrderRejected)
    assert isinstance(rejected, OrderRejected)
    assert "stop orders are not supported" in rejected.reason
    assert sorted(by_type(await h.open_orders())) == ["limit"]  # the take-profits only
    trade = h.engine.trades[SYMBOL]
    assert trade.plan is not None and trade.plan.stop is not None
    assert trade.plan.stop.mode is StopMode.BOT_SIDE
    assert trade.plan.stop.price == D("98.02")
    down, up, every = h.engine.watch_band(SYMBOL)
    assert down == pytest.approx(98.02) and up == float("inf") and not every

    await h.candle(2, 100.3, 100.6, 98.5, 99.5)  # low 98.5 stays above 98.02: nothing
    assert h.engine.trades[SYMBOL].plan is not None
    assert len(by_type(await h.open_orders())["limit"]) == 3

    await h.candle(3, 99.5, 99.8, 97.9, 98.2)  # low 97.9 touches the watched stop
    open_now = by_type(await h.open_orders())
    assert open_now == {"market": [(None, AMOUNT)]}  # TPs canceled, market exit sent

    await h.candle(4, 98.1, 98.5, 97.8, 98.0)
    assert await h.open_orders() == []
    [trade_closed] = h.engine.closed_trades
    assert trade_closed.exit_reason == "SL"
    [leg] = trade_closed.legs
    assert leg.price == D("98.08038")  # 98.1 * (1 - 0.0002)
    assert leg.fee == D("4.904019")
    # (98.08038 - 100.02) * 50 - 4.904019 - 5.001
    assert trade_closed.pnl == D("-106.886019")


async def test_a_bot_side_stop_moved_inside_a_candle_ignores_that_candles_earlier_low(
    settings: Settings,
) -> None:
    """TP1 fills inside candle 2 and the bot begins watching break-even (100.23); the candle's
    low (100.1) may have come before the fill, so only its close (101.5) counts. The next
    candle's low reaches it: an exit of the moved stop, TSL."""
    h = Harness(settings, ScriptedProvider(entries={at(0): 1}), paper_class=NoStopPaper)
    await h.start()
    await h.candles([DECIDE, FILL])
    await h.candle(2, 100.3, 102.0, 100.1, 101.5)  # TP1; the watched stop moves to 100.23
    trade = h.engine.trades[SYMBOL]
    assert trade.plan is not None and trade.plan.stop is not None
    assert (trade.plan.stop.mode, trade.plan.stop.price) == (StopMode.BOT_SIDE, D("100.23"))
    assert "market" not in by_type(await h.open_orders())

    await h.candle(3, 101.5, 101.6, 100.0, 100.5)  # through 100.23: exit at market
    await h.candle(4, 100.4, 100.6, 100.2, 100.5)
    [closed] = h.engine.closed_trades
    assert [leg.reason for leg in closed.legs] == ["TP1", "TSL"]


async def test_a_bot_side_stop_set_on_the_entry_fill_sees_the_whole_entry_candle(
    settings: Settings,
) -> None:
    h = Harness(settings, ScriptedProvider(entries={at(0): 1}), paper_class=NoStopPaper)
    await h.start()
    await h.candle(*DECIDE)
    await h.candle(1, 100.0, 100.5, 97.0, 99.9)  # entry at the open, then down through 98.02
    assert by_type(await h.open_orders())["market"] == [(None, AMOUNT)]
    await h.candle(2, 99.9, 100.0, 99.5, 99.8)
    [closed] = h.engine.closed_trades
    assert closed.exit_reason == "SL"


async def test_the_bot_side_stop_a_take_profit_replaced_still_answers_for_the_candle(
    settings: Settings,
) -> None:
    """The candle reaches TP1 and, on the worst path before it, the watched 98.02: the venue
    filled TP1; the rest leaves at the next open, as SL."""
    h = Harness(settings, ScriptedProvider(entries={at(0): 1}), paper_class=NoStopPaper)
    await h.start()
    await h.candles([DECIDE, FILL])
    await h.candle(2, 100.3, 102.5, 97.5, 101.5)
    assert by_type(await h.open_orders())["market"] == [(None, D(35))]
    await h.candle(3, 101.4, 101.6, 101.0, 101.2)
    [closed] = h.engine.closed_trades
    assert [leg.reason for leg in closed.legs] == ["TP1", "SL"]


async def test_rejected_stop_with_market_fallback_exits_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("QT__EXITS__STOP_FALLBACK", "market_exit")
    settings = load_settings()
    assert settings.exits.stop_fallback == "market_exit"
    h = Harness(settings, ScriptedProvider(entries={at(0): 1}), paper_class=NoStopPaper)
    await h.start()
    await h.candles([DECIDE, FILL])
    # The market exit is sent at the moment of the entry fill, so it fills there: at the
    # entry candle's open, 100 * (1 - 0.0002).
    assert await h.open_orders() == []
    [trade] = h.engine.closed_trades
    assert trade.exit_reason == "SL"
    assert trade.legs[0].price == D("99.98")
    assert trade.legs[0].ts_ms == at(1)


async def test_venue_cancels_are_published_with_the_venue_reason(settings: Settings) -> None:
    """The stop closes everything on a candle that also reaches TP1: the paper venue cancels
    TP1 itself (reduce-only, nothing left), we cancel the untouched TP2 and TP3. Each cancel is
    in the audit trail once, with the reason of whoever canceled it."""
    h = await entered(settings)
    await h.candle(2, 100.3, 102.0, 97.0, 97.5)  # touches TP1 (101.97) and the stop (98.02)
    canceled = [e for e in h.of(OrderCanceled) if isinstance(e, OrderCanceled)]
    assert sorted((e.client_order_id[-2:], e.reason) for e in canceled) == [
        ("t1", "venue: reduce-only: no position left to reduce"),
        ("t2", "position closed"),
        ("t3", "position closed"),
    ]
    assert await h.open_orders() == []
    assert SYMBOL not in h.engine.trades


async def test_a_stop_moved_by_the_ladder_exits_as_tsl(settings: Settings) -> None:
    """TP1 fills, the stop moves to break-even (100.23), the price falls back through it: the
    rest leaves at the moved stop, reported as TSL (the untouched first stop would be SL)."""
    h = await entered(settings)
    await h.candle(2, 100.3, 102.0, 100.3, 101.5)  # TP1 (101.97) only
    await h.candle(3, 101.5, 101.6, 99.0, 99.5)  # through the break-even stop
    [closed] = [e for e in h.of(TradeClosed) if isinstance(e, TradeClosed)]
    assert closed.exit_reason == "TSL"
    [trade] = h.engine.closed_trades
    assert [(leg.reason, leg.amount) for leg in trade.legs] == [("TP1", D(15)), ("TSL", D(35))]
    # a stop-market sell at 100.23 with 2 bps slippage against us
    assert trade.legs[1].price == D("100.23") * (1 - D("0.0002"))


async def _venue_cancels(h: Harness, tag: str) -> str:
    """Cancel the working order with client-id tag ``tag`` at the venue, as a user clicking in
    the exchange's UI would, and report it the way the venue's cancels reach the bus."""
    [order] = [o for o in await h.open_orders() if o.client_order_id.endswith(f"-{tag}")]
    await h.paper.cancel_order(order.client_order_id, SYMBOL)
    await h.bus.publish(
        OrderCanceled(
            ts_ms=h.clock.now_ms(),
            client_order_id=order.client_order_id,
            symbol=SYMBOL,
            reason="venue: canceled in the exchange UI",
        )
    )
    return order.client_order_id


async def test_a_stop_the_venue_cancels_is_placed_again_at_once(settings: Settings) -> None:
    h = await entered(settings)
    await _venue_cancels(h, "s0")
    # protected again before the next candle: the same stop for the whole position
    assert by_type(await h.open_orders())["stop_market"] == [(D("98.02"), AMOUNT)]
    await h.candle(2, 100.3, 100.4, 97.0, 97.5)  # through the stop
    [trade] = h.engine.closed_trades
    # the replacement (s1) sits where the first stop was: an SL exit, not a trailed one
    assert (trade.exit_reason, trade.amount) == ("SL", AMOUNT)
    assert trade.legs[0].price == D("98.02") * (1 - D("0.0002"))
    assert await h.open_orders() == []


async def test_a_take_profit_the_venue_cancels_leaves_the_plan(settings: Settings) -> None:
    h = await entered(settings)
    await _venue_cancels(h, "t2")
    [*_, planned] = h.of(ExitPlanned)
    assert isinstance(planned, ExitPlanned)
    assert planned.reason == "TP2 canceled by the venue"
    assert [name for name, _, _ in planned.take_profits] == ["TP1", "TP3"]
    # the stop still covers all 50; nothing is sent again
    assert by_type(await h.open_orders()) == {
        "limit": [(D("101.97"), D(15)), (D("105.22"), D(20))],
        "stop_market": [(D("98.02"), AMOUNT)],
    }
    await h.candle(2, 100.3, 106.0, 100.3, 105.5)  # TP1 and TP3; 15 stay under the stop
    trade = h.engine.trades[SYMBOL]
    assert trade.plan is not None and trade.plan.remaining == D(15)
    assert by_type(await h.open_orders()) == {"stop_market": [(D("100.23"), D(15))]}


async def test_a_perp_entry_whose_stop_lies_beyond_liquidation_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """At 50x a long is liquidated about 1.6 % down (50 * 100.02 / 50 = 100.02 of margin on
    5001): the -2 % stop would never get its turn."""
    clean_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("QT__EXCHANGE__MARKET_TYPE", "perp")
    monkeypatch.setenv("QT__TRADING__MAX_LEVERAGE", "50")
    h = await Harness(load_settings(), ScriptedProvider(entries={at(0): 1})).start()
    await h.candle(*DECIDE)
    [denied] = h.of(OrderDenied)
    assert isinstance(denied, OrderDenied)
    assert denied.reason == "stop_beyond_liquidation"
    assert "stop 98.02 is beyond the liquidation price 98.4" in denied.detail
    assert await h.storage.orders.list_all() == []


async def test_a_perp_trade_knows_where_it_would_be_liquidated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("QT__EXCHANGE__MARKET_TYPE", "perp")
    monkeypatch.setenv("QT__TRADING__MAX_LEVERAGE", "5")
    h = await Harness(load_settings(), ScriptedProvider(entries={at(0): 1})).start()
    await h.candles([DECIDE, FILL])
    trade = h.engine.trades[SYMBOL]
    # margin 5001 / 5 = 1000.2: (5001 - 1000.2) / (50 * 0.996)
    assert trade.liquidation_price == D("4000.8") / D("49.8")
    await h.candle(2, 100.3, 100.4, 97.0, 97.5)  # the stop closes it long before
    [closed] = h.engine.closed_trades
    assert closed.exit_reason == "SL"
    assert closed.liquidation_price == trade.liquidation_price
