"""Adversarial tests of ``/halt flatten`` (issue 13's review): the real engine, paper venue and
command core on hand-made tapes, attacked where a flatten meets a venue that refuses or does
not answer, a second flatten, a restart and a resume. The tests that reproduced a defect found
in review stay (each was fixed); the others are attacks that held up."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.config import load_settings
from core.domain.enums import MarketType, OrderType, PositionSide, Side, TradingState
from core.domain.events import OrderSubmitted, TradeClosed
from core.domain.market_rules import MarketRules
from core.domain.orders import Order, OrderRequest
from core.errors import OrderRejected, TemporaryError
from core.market.rules_book import RulesBook
from core.services.flatten import ADOPTED_PROVIDER
from tests.unit.services import engine_harness
from tests.unit.services.engine_harness import SYMBOL, Harness, ScriptedProvider, at, clean_settings
from tests.unit.services.test_flatten import (
    ORPHAN,
    UNHEARD,
    UnheardFills,
    _buy_by_hand,
    _commands,
    _three_positions,
)


class RefusingExits(UnheardFills):
    """A paper venue that refuses the reduce-only market exits of ``refuse`` (a venue's
    "insufficient margin", "market closed" or "reduce-only rejected" of a moment)."""

    refuse: frozenset[str] = frozenset()

    async def create_order(self, request: OrderRequest) -> Order:
        if (
            request.reduce_only
            and request.type is OrderType.MARKET
            and request.symbol in self.refuse
        ):
            raise OrderRejected(f"{request.symbol}: the venue refused the market exit")
        return await super().create_order(request)


class TimeoutOnCancel(UnheardFills):
    """A paper venue whose cancels of ``hang`` time out (the adapter's retries exhausted)."""

    hang: frozenset[str] = frozenset()

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        if symbol in self.hang:
            raise TemporaryError(f"cancel of {client_order_id}: request timed out")
        return await super().cancel_order(client_order_id, symbol)


async def _harness(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    book: RulesBook | None = None,
    paper_class: type[UnheardFills] = UnheardFills,
    *,
    entries: tuple[int, ...] = (0,),
    env: dict[str, str] | None = None,
) -> Harness:
    """``test_flatten``'s three-symbol process, on a venue of the attack's own."""
    clean_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("QT__RISK__MAX_TOTAL_EXPOSURE_PCT", "3")
    monkeypatch.setenv("QT__RISK__MAX_CORRELATION", "1")
    monkeypatch.setenv("QT__TRADING__SYMBOLS", f'["{SYMBOL}", "{UNHEARD}", "{ORPHAN}"]')
    monkeypatch.setenv("QT__RISK__MAX_OPEN_POSITIONS", "3")
    monkeypatch.setenv("QT__PAPER__STARTING_BALANCE", "20000")
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    provider = ScriptedProvider(entries={at(i): 1 for i in entries})
    h = Harness(load_settings(), provider, paper_class=paper_class, book=book)
    return await h.start()


def _exits_of(h: Harness, symbol: str) -> list[OrderSubmitted]:
    return [
        e
        for e in h.of(OrderSubmitted)
        if isinstance(e, OrderSubmitted)
        and e.symbol == symbol
        and e.reduce_only
        and e.type == OrderType.MARKET.value
    ]


async def test_a_second_flatten_after_a_refused_exit_does_not_claim_the_account_flat(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path, paper_class=RefusingExits)
    await _three_positions(h)
    h.paper.refuse = frozenset({SYMBOL, UNHEARD})  # type: ignore[attr-defined]
    first = await _commands(h).halt("test", flatten=True)
    assert "NOT flat: 2 position(s) left" in first.title, first  # said, as it should be

    h.paper.refuse = frozenset()  # type: ignore[attr-defined]  # the venue takes orders again
    again = await _commands(h).halt("test", flatten=True)

    held = {p.symbol for p in await h.paper.fetch_positions()}
    assert {SYMBOL, UNHEARD} <= held  # nothing of theirs is working to close them
    said = " ".join((again.title, *again.lines))
    sent_again = {s for s in (SYMBOL, UNHEARD) if len(_exits_of(h, s)) > 0}
    # Either the second flatten sends their exits, or it says they are not closed.
    assert sent_again == {SYMBOL, UNHEARD} or "NOT flat" in again.title, said


async def test_a_cancel_timing_out_for_a_waiting_entry_does_not_stop_the_flatten(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path, paper_class=TimeoutOnCancel)
    await h.candle(0, 100, 100.5, 99.5, 100)
    await h.candle(0, 100, 100.5, 99.5, 100, symbol=UNHEARD)  # ETH's entry waits for candle 1
    await h.candle(1, 100, 100.5, 99.5, 100)  # BTC filled, its plan placed
    assert h.engine.trades[SYMBOL].plan is not None
    assert h.engine.trades[UNHEARD].plan is None
    h.paper.hang = frozenset({UNHEARD})  # type: ignore[attr-defined]

    reply = await _commands(h).halt("test", flatten=True)  # must answer, not raise

    assert await h.trading_state.current() is TradingState.HALTED
    assert _exits_of(h, SYMBOL), reply  # the position that can be closed is closed
    [closing] = [line for line in reply.lines if line.startswith("closing at market")]
    assert SYMBOL in closing


async def test_a_halt_flatten_and_the_ceos_emergency_at_once_send_one_exit_each(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path)
    await _three_positions(h)
    reply, cut = await asyncio.gather(
        _commands(h).halt("test", flatten=True),
        h.engine.reduce_exposure(0.0, "CEO EMERGENCY"),
    )
    closed_first = reply.lines + cut.closed
    assert all(any(s in x for x in closed_first) for s in (SYMBOL, UNHEARD, ORPHAN))
    for symbol in (SYMBOL, UNHEARD, ORPHAN):
        assert len(_exits_of(h, symbol)) == 1, symbol  # serialised: the second sends nothing
    h.paper.unheard = frozenset()  # type: ignore[attr-defined]
    for symbol, price in ((SYMBOL, 100), (UNHEARD, 100), (ORPHAN, 20)):
        await h.candle(3, price, price + 0.5, price - 0.5, price, symbol=symbol)
    assert await h.paper.fetch_positions() == []
    closed = [e.symbol for e in h.of(TradeClosed) if isinstance(e, TradeClosed)]
    assert sorted(closed) == sorted([SYMBOL, UNHEARD, ORPHAN])  # one round trip each


async def test_an_adopted_trade_survives_a_restart_and_closes_once_with_its_own_pnl(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path)
    h.engine._state = h.storage.state  # type: ignore[attr-defined]  # the engine keeps its trades
    await _three_positions(h)
    await _commands(h).halt("test", flatten=True)
    [orphan_exit] = _exits_of(h, ORPHAN)
    [sol] = [p for p in await h.paper.fetch_positions() if p.symbol == ORPHAN]

    # The restart: a new process on the same storage (venue book, trades, state).
    monkeypatch.setattr(engine_harness, "MemoryStorage", lambda: h.storage)
    again = Harness(h.settings, ScriptedProvider(), paper_class=UnheardFills, persist=True)
    again.clock.advance_to(h.clock.now_ms())
    await again.start()
    await again.engine.start()
    adopted = again.engine.trades[ORPHAN]
    assert adopted.adopted and adopted.provider == ADOPTED_PROVIDER
    assert orphan_exit.client_order_id in adopted.working.values()  # the same order, not anew
    for symbol, price in ((SYMBOL, 100), (UNHEARD, 100), (ORPHAN, 21)):
        await again.candle(3, price, price + 0.5, price - 0.5, price, symbol=symbol)
    assert not _exits_of(again, ORPHAN)  # nothing sent a second time after the restart
    [closed] = [
        e for e in again.of(TradeClosed) if isinstance(e, TradeClosed) and e.symbol == ORPHAN
    ]
    assert closed.provider == ADOPTED_PROVIDER and closed.amount == sol.amount
    assert closed.entry_price == sol.entry_price  # the venue's price, the hand buy's
    gross = (closed.exit_price - closed.entry_price) * closed.amount
    assert closed.exit_price > sol.entry_price and closed.fees > 0
    assert closed.pnl == gross - closed.fees  # the exit's fee only: the entry was not ours


async def test_after_a_flatten_and_resume_the_bot_enters_again_on_a_new_signal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The flatten's three losing closes would trip the loss-streak cooldown (a denial, as
    # designed): off here, to see what the resume itself does.
    off = {"QT__RISK__LOSS_STREAK_LIMIT": "0"}
    h = await _harness(monkeypatch, tmp_path, entries=(0, 5), env=off)
    await _three_positions(h)
    core = _commands(h)
    await core.halt("test", flatten=True)
    h.paper.unheard = frozenset()  # type: ignore[attr-defined]
    for symbol, price in ((SYMBOL, 100), (UNHEARD, 100), (ORPHAN, 20)):
        await h.candle(3, price, price + 0.5, price - 0.5, price, symbol=symbol)
    assert h.engine.trades == {}
    await h.candle(4, 100, 100.5, 99.5, 100)  # halted: no entry though flat
    assert SYMBOL not in h.engine.trades
    await h.trading_state.set(TradingState.ACTIVE, reason="/resume by test", actor="test")
    await h.candle(5, 100, 100.5, 99.5, 100)
    assert h.engine.trades[SYMBOL].provider != ADOPTED_PROVIDER  # a trade of its own again
    assert not h.engine.trades[SYMBOL].adopted


async def test_a_short_perp_position_bought_by_hand_is_bought_back_with_a_short_pnl(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await _harness(monkeypatch, tmp_path, env={"QT__EXCHANGE__MARKET_TYPE": "perp"})
    await h.candle(1, 20, 20.5, 19.5, 20, symbol=ORPHAN)  # after the entry signal: no entry
    await h.paper.create_order(
        OrderRequest(
            client_order_id="manual-short-1",
            symbol=ORPHAN,
            side=Side.SELL,
            type=OrderType.MARKET,
            amount=D(10),
            market_type=MarketType.PERP,
        )
    )
    await h.candle(2, 20, 20.5, 19.5, 20, symbol=ORPHAN)
    [short] = await h.paper.fetch_positions()
    assert short.side is PositionSide.SHORT

    cut = await h.engine.reduce_exposure(0.0, "flatten")
    assert cut.closed == (ORPHAN,)
    [exit_order] = _exits_of(h, ORPHAN)
    assert exit_order.side == Side.BUY.value
    await h.candle(3, 18, 18.5, 17.5, 18, symbol=ORPHAN)  # fell: the short made money
    assert await h.paper.fetch_positions() == []
    [closed] = [e for e in h.of(TradeClosed) if isinstance(e, TradeClosed)]
    assert closed.side == PositionSide.SHORT.value and closed.amount == D(10)
    assert closed.pnl == (closed.entry_price - closed.exit_price) * 10 - closed.fees
    assert closed.pnl > 0


async def test_dust_refused_then_grown_by_hand_is_closed_by_the_next_flatten(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)
    book = RulesBook(settings.market.default_rules())
    rules = MarketRules(
        symbol=ORPHAN, amount_step=D("0.0001"), price_tick=D("0.01"), min_amount=D("0.001")
    )
    book.use_venue({ORPHAN: rules})
    h = await _harness(monkeypatch, tmp_path, book)
    await h.candle(1, 20, 20.5, 19.5, 20, symbol=ORPHAN)  # after the entry signal: no entry
    await _buy_by_hand(h, "manual-dust-1", D(10))
    await h.candle(2, 20, 20.5, 19.5, 20, symbol=ORPHAN)
    await _buy_by_hand(h, "manual-dust-2", D("9.9995"), Side.SELL)  # leaves 0.0005
    await h.candle(3, 20, 20.5, 19.5, 20, symbol=ORPHAN)
    [dust] = await h.paper.fetch_positions()
    assert dust.amount == D("0.0005")
    first = await h.engine.reduce_exposure(0.0, "flatten")
    assert first.not_closed and ORPHAN not in h.engine.trades
    await _buy_by_hand(h, "manual-grow-1", D(5))
    await h.candle(4, 20, 20.5, 19.5, 20, symbol=ORPHAN)
    second = await h.engine.reduce_exposure(0.0, "flatten")
    assert second.closed == (ORPHAN,)
    ids = [e.client_order_id for e in h.of(OrderSubmitted) if isinstance(e, OrderSubmitted)]
    assert len(ids) == len(set(ids))  # every client id of ours is fresh
