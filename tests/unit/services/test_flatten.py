"""``/halt flatten`` leaves the account flat: positions with a plan, an entry that filled before
its plan was placed, and a position the engine has no trade for all leave at market; what the
venue refuses (dust below its minimum amount) is said, not crashed on."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.config import load_settings
from core.domain.enums import OrderType, Side, TradingState
from core.domain.events import (
    ExposureReduced,
    OrderDenied,
    OrderRejected,
    OrderSubmitted,
    TradeClosed,
)
from core.domain.market import Candle
from core.domain.market_rules import MarketRules
from core.domain.orders import Fill, OrderRequest
from core.exchange.paper import PaperExchange
from core.market.rules_book import RulesBook
from core.services.commands import CommandCore, CommandServices
from core.services.flatten import ADOPTED_PROVIDER
from tests.unit.services.engine_harness import (
    SYMBOL,
    Harness,
    ScriptedProvider,
    at,
    clean_settings,
)

UNHEARD = "ETH/USDT"  # its entry fills, but the fill is not reported before the flatten
ORPHAN = "SOL/USDT"  # bought by hand: the engine has no trade for it


class UnheardFills(PaperExchange):
    """A paper venue whose fills of some symbols are not reported (live, the venue sync
    reports a fill seconds after it happened: a flatten can come in between)."""

    unheard: frozenset[str] = frozenset({UNHEARD})

    async def on_candle(self, symbol: str, candle: Candle) -> list[Fill]:
        fills = await super().on_candle(symbol, candle)
        return [] if symbol in self.unheard else fills


async def _harness(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, book: RulesBook | None = None
) -> Harness:
    clean_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("QT__RISK__MAX_TOTAL_EXPOSURE_PCT", "3")
    monkeypatch.setenv("QT__RISK__MAX_CORRELATION", "1")  # symbols of one hand-made tape
    monkeypatch.setenv("QT__TRADING__SYMBOLS", f'["{SYMBOL}", "{UNHEARD}", "{ORPHAN}"]')
    monkeypatch.setenv("QT__RISK__MAX_OPEN_POSITIONS", "3")
    monkeypatch.setenv("QT__PAPER__STARTING_BALANCE", "20000")
    h = Harness(
        load_settings(),
        ScriptedProvider(entries={at(0): 1}),
        paper_class=UnheardFills,
        book=book,
    )
    return await h.start()


def _commands(h: Harness) -> CommandCore:
    """The command core over the harness's engine and trading state (what /halt uses)."""
    return CommandCore(
        CommandServices(
            clock=h.clock,
            bus=h.bus,
            storage=h.storage,  # type: ignore[arg-type]
            engine=h.engine,
            exchange=h.paper,
            trading_state=h.trading_state,
            policy=SimpleNamespace(current=lambda: None),  # type: ignore[arg-type]
            portfolio=None,  # type: ignore[arg-type]
            quote="USDT",
            mode_label="demo",
        )
    )


async def _buy_by_hand(h: Harness, cid: str, amount: D, side: Side = Side.BUY) -> None:
    await h.paper.create_order(
        OrderRequest(
            client_order_id=cid, symbol=ORPHAN, side=side, type=OrderType.MARKET, amount=amount
        )
    )


async def _three_positions(h: Harness) -> None:
    """BTC with its plan, ETH filled but unheard (no plan), SOL bought by hand (no trade)."""
    for i in (0, 1):  # both enter on candle 0 and fill on candle 1
        for symbol in (SYMBOL, UNHEARD):
            await h.candle(i, 100, 100.5, 99.5, 100, symbol=symbol)
    await h.candle(1, 20, 20.5, 19.5, 20, symbol=ORPHAN)  # after the entry signal: no entry
    await _buy_by_hand(h, "manual-sol-1", D(10))
    await h.candle(2, 20, 20.5, 19.5, 20, symbol=ORPHAN)  # the manual order fills
    held = {p.symbol for p in await h.paper.fetch_positions()}
    assert held == {SYMBOL, UNHEARD, ORPHAN}
    assert h.engine.trades[SYMBOL].plan is not None
    assert h.engine.trades[UNHEARD].plan is None and h.engine.trades[UNHEARD].amount == 0
    assert ORPHAN not in h.engine.trades


async def test_halt_flatten_closes_every_position_planned_or_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path)
    await _three_positions(h)

    reply = await _commands(h).halt("test", flatten=True)

    assert await h.trading_state.current() is TradingState.HALTED
    assert reply.title == "HALTED", reply
    [closing] = [line for line in reply.lines if line.startswith("closing at market")]
    assert all(s in closing for s in (SYMBOL, UNHEARD, ORPHAN)), closing
    [cut] = h.of(ExposureReduced)
    assert isinstance(cut, ExposureReduced)
    assert set(cut.symbols) == {SYMBOL, UNHEARD, ORPHAN} and cut.not_closed == ()
    assert not h.of(OrderDenied)  # the gate let every reduce-only market exit through
    exits = [e for e in h.of(OrderSubmitted) if isinstance(e, OrderSubmitted) and e.reduce_only]
    market = {e.symbol for e in exits if e.type == OrderType.MARKET.value}
    assert market == {SYMBOL, UNHEARD, ORPHAN}
    # The entry filled before its plan: its fill is counted, no stop or take-profit placed.
    assert h.engine.trades[UNHEARD].amount == D(50)
    assert not any(e.symbol == UNHEARD and e.type != OrderType.MARKET.value for e in exits)

    h.paper.unheard = frozenset()  # the fills of the exits are reported
    for symbol, price in ((SYMBOL, 100), (UNHEARD, 100), (ORPHAN, 20)):
        await h.candle(3, price, price + 0.5, price - 0.5, price, symbol=symbol)
    assert await h.paper.fetch_positions() == []
    assert h.engine.trades == {}
    closed = {e.symbol: e for e in h.of(TradeClosed) if isinstance(e, TradeClosed)}
    assert set(closed) == {SYMBOL, UNHEARD, ORPHAN}
    assert closed[ORPHAN].provider == ADOPTED_PROVIDER and closed[ORPHAN].amount == D(10)
    assert closed[UNHEARD].amount == D(50)
    assert all(c.exit_reason == "RISK_REDUCE" for c in closed.values())


async def test_a_second_flatten_sends_nothing_more_while_the_exits_are_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path)
    await _three_positions(h)
    first = await h.engine.reduce_exposure(0.0, "flatten")
    sent = len(h.of(OrderSubmitted))
    again = await h.engine.reduce_exposure(0.0, "flatten again")
    assert len(first.closed) == 3 and again.closed == () and again.not_closed == ()
    assert len(h.of(OrderSubmitted)) == sent


async def test_a_partial_cut_leaves_positions_without_a_plan_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path)
    await _three_positions(h)
    cut = await h.engine.reduce_exposure(0.1, "the Risk Brain trims")
    assert cut.closed == (SYMBOL,) and cut.not_closed == ()  # the only planned trade
    assert ORPHAN not in h.engine.trades and h.engine.trades[UNHEARD].plan is None


async def test_dust_below_the_venues_minimum_is_said_not_crashed_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)
    book = RulesBook(settings.market.default_rules())
    book.use_venue(
        {
            ORPHAN: MarketRules(
                symbol=ORPHAN,
                amount_step=D("0.0001"),
                price_tick=D("0.01"),
                min_amount=D("0.001"),
            )
        }
    )
    h = await _harness(monkeypatch, tmp_path, book)
    await _three_positions(h)
    await _buy_by_hand(h, "manual-sol-2", D("9.9995"), Side.SELL)  # leaves 0.0005 SOL
    await h.candle(3, 20, 20.5, 19.5, 20, symbol=ORPHAN)
    [dust] = [p for p in await h.paper.fetch_positions() if p.symbol == ORPHAN]
    assert dust.amount == D("0.0005")

    reply = await _commands(h).halt("test", flatten=True)

    assert "NOT flat: 1 position(s) left" in reply.title, reply
    [refused] = [line for line in reply.lines if line.startswith("NOT closed")]
    assert ORPHAN in refused and "below the minimum amount 0.001" in refused, refused
    [closing] = [line for line in reply.lines if line.startswith("closing at market")]
    assert SYMBOL in closing and UNHEARD in closing and ORPHAN not in closing
    [cut] = h.of(ExposureReduced)
    assert isinstance(cut, ExposureReduced) and cut.not_closed == (refused[len("NOT closed ") :],)
    assert ORPHAN not in h.engine.trades  # not retried on every candle: said once
    [rejected] = [e for e in h.of(OrderRejected) if isinstance(e, OrderRejected)]
    assert rejected.symbol == ORPHAN
    await h.candle(4, 20, 20.5, 19.5, 20, symbol=ORPHAN)  # a later cycle sends nothing for it
    assert len(h.of(OrderRejected)) == 1
