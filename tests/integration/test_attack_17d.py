"""Adversarial review of the two start-up reconciliation gaps of issue 17: a venue position on
the side of the engine's trade but larger than it (``Engine.excess``), and, with
``QT__TRADING__UNKNOWN_POSITIONS=adopt``, a position in a symbol the process does not trade
(``Engine.not_adoptable``, ``EngineConfig.symbols``). Each is tried against every rule,
restarts, the tolerance's edges, an entry still filling, and the venue's own symbol names."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.modes import build_run
from bot.trading import build_engine
from core.clock import SimClock
from core.config import load_settings
from core.domain.enums import MarketType, OrderType, PositionSide, Side, TradingState
from core.domain.events import AlertRaised, Event
from core.domain.market_rules import MarketRules
from core.domain.orders import OrderRequest
from core.domain.portfolio import Position
from core.exchange.ccxt import CcxtExchange, CcxtMarketData
from core.market.rules_book import RulesBook
from core.ports import StateKey
from core.services.bus import EventBus
from core.services.engine import EXCESS_STEPS, EXCESS_TOLERANCE
from core.services.reconciliation import UnknownPositions, reconcile_positions
from core.services.trading_state import TradingStateService
from storage import open_storage
from storage.memory import MemoryStorage
from tests.fakes_ccxt import FakeCcxt, market
from tests.integration.test_adoption_run import candles_of
from tests.integration.test_attack_17b import paper_settings
from tests.integration.test_run_mode import market_data  # noqa: F401  (the fixture)
from tests.integration.test_run_universe import tickers
from tests.unit.services.engine_harness import T0_MS, Harness, ScriptedProvider, clean_settings
from tests.unit.services.test_adoption import restart
from tests.unit.services.test_portfolio import BinanceUsdmCcxt
from tests.unit.services.test_risk_limits import BTC_LONG

BTC = "BTC/USDT"
SOL = "SOL/USDT"


async def reconcile(h: Harness, rule: UnknownPositions) -> str:
    """Reconcile as ``TradingProcess.start`` does (its adopt and note wired the same way)."""
    return await reconcile_positions(
        await h.engine.unknown_positions(),
        rule=rule,
        trading_state=h.trading_state,
        bus=h.bus,
        clock=h.clock,
        adopt=h.engine.adopt,
        note=h.engine.trade_note,
    )


def alerts(h: Harness) -> list[AlertRaised]:
    return [e for e in h.of(AlertRaised) if isinstance(e, AlertRaised)]


async def engine_long(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, book: RulesBook | None = None
) -> Harness:
    """The engine's own filled BTC long of 50 on paper, its trades stored."""
    provider = ScriptedProvider(entries={T0_MS: 1})
    settings = clean_settings(monkeypatch, tmp_path)
    h = await Harness(settings, provider, persist=True, book=book).start()
    await h.candle(0, 100, 100.5, 99.5, 100)
    await h.candle(1, 100, 100.5, 99.5, 100)  # the entry fills
    assert h.engine.trades[BTC].amount == 50 and h.engine.trades[BTC].plan is not None
    return h


async def added_by_hand(h: Harness, amount: D, at: int = 2) -> Position:
    """Someone buys ``amount`` more BTC by hand on the account; return the venue's position."""
    await h.paper.create_order(
        OrderRequest(
            client_order_id=f"manual-{at}",
            symbol=BTC,
            side=Side.BUY,
            type=OrderType.MARKET,
            amount=amount,
        )
    )
    await h.candle(at, 100, 100.5, 99.5, 100)  # the hand order fills
    [held] = await h.paper.fetch_positions()
    return held


def venue_holds(h: Harness, monkeypatch: pytest.MonkeyPatch, *positions: Position) -> None:
    async def venue() -> list[Position]:
        return list(positions)

    monkeypatch.setattr(h.paper, "fetch_positions", venue)


# --- a venue position larger than the engine's trade ----------------------------------------


@pytest.mark.parametrize("rule", ["reduce", "warn", "adopt"])
async def test_a_position_added_by_hand_beside_the_engines_trade_is_reported_under_every_rule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rule: UnknownPositions
) -> None:
    h = await engine_long(monkeypatch, tmp_path)
    held = await added_by_hand(h, D(5))
    assert held.amount == 55 and held.side is PositionSide.LONG
    own = h.engine.trades[BTC]
    orders_before = {o.client_order_id for o in await h.open_orders()}
    restart(h)
    await h.engine.start()
    said = await reconcile(h, rule)
    assert "the venue holds 55 while the bot's long trade in BTC/USDT is 50" in said, said
    [alert] = alerts(h)
    if rule == "warn":
        assert alert.severity == "warning"
        assert await h.trading_state.current() is TradingState.ACTIVE
    else:
        assert alert.severity == "critical"
        assert await h.trading_state.current() is TradingState.REDUCING
    if rule == "adopt":
        assert "not adopted: BTC/USDT long: the venue holds 55" in said
        assert "positions adopted" not in {a.title for a in alerts(h)}
    kept = h.engine.trades[BTC]  # the engine's own trade, as it was: not adopted over
    assert (kept.trade_id, kept.amount, kept.provider) == (own.trade_id, 50, own.provider)
    assert {o.client_order_id for o in await h.open_orders()} == orders_before


async def test_the_larger_position_is_reported_again_after_a_resume_and_a_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await engine_long(monkeypatch, tmp_path)
    await added_by_hand(h, D(5))
    for start in range(2):
        restart(h)
        await h.engine.start()
        assert "the venue holds 55" in await reconcile(h, "adopt"), start
        assert await h.trading_state.current() is TradingState.REDUCING
        await h.trading_state.set(TradingState.ACTIVE, reason="/resume by op", actor="telegram:1")
    assert h.engine.trades[BTC].amount == 50


@pytest.mark.parametrize("extra", [D("0.5"), D("0.49")])
async def test_a_venue_within_one_percent_of_the_trade_is_the_trades(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: D
) -> None:
    """The default rules' step (0.00001) is far finer: 1 % of 50 is the tolerance."""
    h = await engine_long(monkeypatch, tmp_path)
    [held] = await h.paper.fetch_positions()
    assert EXCESS_TOLERANCE == D("0.01") and h.engine.rules(BTC).amount_step * 2 < D("0.5")
    venue_holds(h, monkeypatch, dataclasses.replace(held, amount=D(50) + extra))
    assert await h.engine.unknown_positions() == []


async def test_a_venue_just_past_one_percent_of_the_trade_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await engine_long(monkeypatch, tmp_path)
    [held] = await h.paper.fetch_positions()
    bigger = dataclasses.replace(held, amount=D("50.50001"))
    venue_holds(h, monkeypatch, bigger)
    assert await h.engine.unknown_positions() == [bigger]


async def test_a_coarse_amount_step_widens_the_tolerance_to_two_steps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A step of 1 (1 % of 50 is half a step): two steps over is rounding, three is not."""
    settings = clean_settings(monkeypatch, tmp_path)
    book = RulesBook(settings.market.default_rules())
    book.use_venue({BTC: MarketRules(symbol=BTC, amount_step=D(1), price_tick=D("0.01"))})
    h = await engine_long(monkeypatch, tmp_path, book)
    assert EXCESS_STEPS == 2
    [held] = await h.paper.fetch_positions()
    venue_holds(h, monkeypatch, dataclasses.replace(held, amount=D(52)))
    assert await h.engine.unknown_positions() == []
    three = dataclasses.replace(held, amount=D(53))
    venue_holds(h, monkeypatch, three)
    assert await h.engine.unknown_positions() == [three]


@pytest.mark.parametrize("amount", [D(49), D(25), D("49.99")])
async def test_a_venue_position_smaller_than_the_trade_is_the_trades_and_said_nothing_of(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, amount: D
) -> None:
    """Partly exited (a take-profit filled), spot fees taken in the base, a venue whose
    positions lag behind our fills: the trade explains it; its exits stay reduce-only."""
    h = await engine_long(monkeypatch, tmp_path)
    [held] = await h.paper.fetch_positions()
    venue_holds(h, monkeypatch, dataclasses.replace(held, amount=amount))
    assert await h.engine.unknown_positions() == []
    assert await reconcile(h, "reduce") == ""
    assert alerts(h) == [] and await h.trading_state.current() is TradingState.ACTIVE
    assert all(o.request.reduce_only for o in await h.open_orders())


async def test_a_position_sold_down_by_hand_is_the_trades_and_its_stop_closes_only_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Half the engine's 50 sold by hand: not reported at a restart (the trade explains 25);
    the trade's stop of 50 is reduce-only, so it closes the 25 left and never opens a short."""
    h = await engine_long(monkeypatch, tmp_path)
    await h.paper.create_order(
        OrderRequest(
            client_order_id="manual-sell",
            symbol=BTC,
            side=Side.SELL,
            type=OrderType.MARKET,
            amount=D(25),
        )
    )
    await h.candle(2, 100, 100.5, 99.5, 100)
    [held] = await h.paper.fetch_positions()
    assert held.amount == 25
    restart(h)
    await h.engine.start()
    assert await reconcile(h, "adopt") == ""
    assert alerts(h) == [] and h.engine.trades[BTC].amount == 50
    await h.candle(3, 100, 100.5, 80, 81)  # through the stop
    assert await h.paper.fetch_positions() == []  # flat: nothing the other way


async def test_an_entry_still_filling_at_start_explains_up_to_its_whole_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The venue filled the entry and the engine has not heard yet (the start's venue sync
    missed it): the order's 50 are the trade's; more than that is not."""
    settings = clean_settings(monkeypatch, tmp_path)
    h = await Harness(settings, ScriptedProvider(entries={T0_MS: 1}), persist=True).start()
    await h.candle(0, 100, 100.5, 99.5, 100)  # the entry goes out, fills at the next open
    trade = h.engine.trades[BTC]
    assert trade.plan is None and trade.amount == 0
    filling = dataclasses.replace(BTC_LONG, amount=D(50), entry_price=D(100))
    venue_holds(h, monkeypatch, filling)
    assert await h.engine.unknown_positions() == []
    more = dataclasses.replace(filling, amount=D(60))
    venue_holds(h, monkeypatch, more)
    assert await h.engine.unknown_positions() == [more]
    assert "the venue holds 60 while the bot's long trade in BTC/USDT is 0" in await reconcile(
        h, "reduce"
    )


async def test_the_other_side_is_noted_under_reduce_and_still_refused_under_adopt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await engine_long(monkeypatch, tmp_path)
    [held] = await h.paper.fetch_positions()
    short = dataclasses.replace(held, side=PositionSide.SHORT, amount=D(3))
    venue_holds(h, monkeypatch, short)
    said = await reconcile(h, "reduce")
    assert "BTC/USDT short 3 at" in said and "(the bot's trade in BTC/USDT is long 50)" in said
    said = await reconcile(h, "adopt")
    assert "not adopted: BTC/USDT short: the engine holds a long trade in BTC/USDT" in said


# --- a position in a symbol the process does not trade --------------------------------------


async def sol_by_hand(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, symbols: list[str] | None = None
) -> Harness:
    """10 SOL bought by hand on paper; ``symbols``: what the process trades (None: the
    default list, BTC and ETH)."""
    settings = clean_settings(monkeypatch, tmp_path)
    if symbols is not None:
        settings = settings.with_market(symbols, settings.trading.timeframe)
    h = await Harness(settings, ScriptedProvider(), persist=True).start()
    await h.candle(0, 20, 20.2, 19.8, 20, symbol=SOL)
    await h.paper.create_order(
        OrderRequest(
            client_order_id="manual-sol",
            symbol=SOL,
            side=Side.BUY,
            type=OrderType.MARKET,
            amount=D(10),
        )
    )
    await h.candle(1, 20, 20.2, 19.8, 20, symbol=SOL)
    return h


async def test_a_symbol_not_traded_is_reduced_with_the_reason_and_again_after_a_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await sol_by_hand(monkeypatch, tmp_path)
    assert SOL not in h.engine.config.symbols
    for start in range(2):
        restart(h)
        await h.engine.start()
        said = await reconcile(h, "adopt")
        assert "not adopted: SOL/USDT long: the process does not trade SOL/USDT" in said, start
        assert await h.trading_state.current() is TradingState.REDUCING
        assert SOL not in h.engine.trades
        assert await h.paper.fetch_open_orders(SOL) == []  # nothing placed for it
        await h.trading_state.set(TradingState.ACTIVE, reason="/resume by op", actor="telegram:1")
    # The operator adds it to QT__TRADING__SYMBOLS and restarts: now it is adopted.
    h.settings = h.settings.with_market([*h.settings.trading.symbols, SOL], "1h")
    restart(h)
    await h.engine.start()
    assert "adopted as its own trades" in await reconcile(h, "adopt")
    assert h.engine.trades[SOL].amount == 10
    assert await h.trading_state.current() is TradingState.ACTIVE


async def test_of_two_positions_the_traded_one_is_adopted_and_the_other_reduces(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await sol_by_hand(monkeypatch, tmp_path, symbols=[SOL])
    await h.candle(2, 100, 100.5, 99.5, 100, symbol=BTC)
    await h.paper.create_order(
        OrderRequest(
            client_order_id="manual-btc",
            symbol=BTC,
            side=Side.BUY,
            type=OrderType.MARKET,
            amount=D(1),
        )
    )
    await h.candle(3, 100, 100.5, 99.5, 100, symbol=BTC)
    restart(h)
    await h.engine.start()
    said = await reconcile(h, "adopt")
    assert sorted(h.engine.trades) == [SOL]
    assert "not adopted: BTC/USDT long: the process does not trade BTC/USDT" in said
    assert "SOL/USDT long 10" in said and "adopted as its own trades" in said
    assert await h.trading_state.current() is TradingState.REDUCING


@pytest.mark.parametrize("rule", ["reduce", "warn"])
async def test_a_symbol_not_traded_under_reduce_or_warn_is_reported_as_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rule: UnknownPositions
) -> None:
    h = await sol_by_hand(monkeypatch, tmp_path)
    said = await reconcile(h, rule)
    assert "SOL/USDT long 10" in said and "not adopted" not in said
    assert "(the" not in said  # no trade of the engine's in SOL to note
    expected = TradingState.ACTIVE if rule == "warn" else TradingState.REDUCING
    assert await h.trading_state.current() is expected
    assert SOL not in h.engine.trades


# --- symbols as the venue spells them ---------------------------------------------------------


@pytest.mark.parametrize("configured", ["BTC/USDT", "BTC/USDT:USDT"])
async def test_a_perp_position_comes_back_under_the_configured_name_and_is_traded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, configured: str
) -> None:
    """ccxt names Binance's USD-M position ``BTC/USDT:USDT``; the adapter reports it under
    the name the process trades it by, whichever of the two that is, so the engine finds it
    among its symbols (and its trade, keyed the same way, among its trades)."""
    clean_settings(monkeypatch, tmp_path)
    settings = load_settings(trading={"symbols": [configured]}, exchange={"market_type": "perp"})
    clock, bus, storage = SimClock(T0_MS), EventBus(), MemoryStorage()
    venue = CcxtExchange(
        BinanceUsdmCcxt(),
        clock=clock,
        market_type=MarketType.PERP,
        symbols=settings.trading.symbols,
    )
    await venue.start()
    engine = build_engine(
        settings,
        clock=clock,
        bus=bus,
        exchange=venue,
        trading_state=TradingStateService(storage.state, bus, clock),
    )
    [position] = await engine.unknown_positions()
    assert position.symbol == configured
    assert engine.not_adoptable(position) == ""
    assert engine.config.symbols == (configured,)


async def test_a_position_named_otherwise_than_the_traded_symbol_is_not_adopted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A port that did not rename it (the paper book keys positions by the order's name):
    its candles come under the other name, so it is not the feed's; the alert says so."""
    h = await sol_by_hand(monkeypatch, tmp_path, symbols=[SOL])
    [held] = await h.paper.fetch_positions()
    venue_spelled = dataclasses.replace(held, symbol="SOL/USDT:USDT")
    venue_holds(h, monkeypatch, venue_spelled)
    said = await reconcile(h, "adopt")
    assert "the process does not trade SOL/USDT:USDT (it trades SOL/USDT, named otherwise)" in said
    assert h.engine.trades == {}


# --- the processes: what they tell the engine it trades ---------------------------------------


async def test_qt_run_refuses_to_adopt_a_position_outside_its_symbols_at_start(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    market_data: tuple[object, object, int],  # noqa: F811
) -> None:
    paper = paper_settings(tmp_path, monkeypatch)
    trading = paper.trading.model_copy(update={"unknown_positions": "adopt"})
    settings = paper.model_copy(update={"trading": trading})
    _md, fake, last_open = market_data
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        await storage.state.set(StateKey.PAPER_INITIALISED, "1")
        await storage.positions.upsert(
            dataclasses.replace(
                BTC_LONG,
                symbol=SOL,
                amount=D(10),
                entry_price=D(20),
                opened_ms=last_open,
                updated_ms=last_open,
            )
        )
    finally:
        await storage.stop()
    process = await build_run(settings, market_data=candles_of(fake))  # type: ignore[arg-type]
    assert process.engine.config.symbols == (BTC,)
    heard: list[Event] = []

    async def record(event: Event) -> None:
        heard.append(event)

    process.bus.subscribe("alert.raised", record)
    await process.start()
    try:
        assert await process.trading_state.current() is TradingState.REDUCING
        assert SOL not in process.engine.trades
        assert await process.exchange.fetch_open_orders(SOL) == []
    finally:
        await process.stop("test")
    [alert] = [e for e in heard if isinstance(e, AlertRaised)]
    assert alert.severity == "critical"
    assert "not adopted: SOL/USDT long: the process does not trade SOL/USDT" in alert.detail


async def test_a_dynamic_universe_trades_its_first_selection_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With QT__UNIVERSE__MODE=volume "traded" at start is the first selection (what the feed
    polls then): a position in a symbol the venue lists but the selection left out is not
    adopted, though a later refresh may take the symbol in (its position stays reported)."""
    paper_settings(tmp_path, monkeypatch)  # no QT__ variable but these, in tmp_path
    for name, value in {
        "QT__UNIVERSE__MODE": "volume",
        "QT__UNIVERSE__TOP_N": "2",
        "QT__UNIVERSE__MIN_LISTING_DAYS": "0",
        "QT__TRADING__UNKNOWN_POSITIONS": "adopt",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(app={"data_dir": str(tmp_path / "ud")})
    assert settings.universe.dynamic and settings.trading.unknown_positions == "adopt"
    venue = FakeCcxt(markets={s: market(s) for s in ("BTC/USDT", "ETH/USDT", SOL)})
    venue.tickers = tickers(BTC_USDT=9e9, ETH_USDT=5e9, SOL_USDT=1e9)
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        await storage.state.set(StateKey.PAPER_INITIALISED, "1")
        await storage.positions.upsert(
            dataclasses.replace(BTC_LONG, symbol=SOL, amount=D(10), entry_price=D("1.5"))
        )
    finally:
        await storage.stop()
    process = await build_run(settings, market_data=CcxtMarketData(venue))
    assert process.engine.config.symbols == ("BTC/USDT", "ETH/USDT")
    await process.start()
    try:
        assert await process.trading_state.current() is TradingState.REDUCING
        assert SOL not in process.engine.trades
        assert "the process does not trade SOL/USDT" in await process.trading_state.reason()
    finally:
        await process.stop("test")
