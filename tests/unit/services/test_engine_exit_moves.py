"""The engine trades the Exit Brain's candle-close moves on the paper venue: the maximum holding
time, the ATR trailing stop after the last-but-one take-profit, the profit lock, the policy's
stop tightening (applied once), each reported under its own exit reason, and a restart that
keeps the trailing state.

Numbers as in ``test_engine``: 50 units filled at 100.02 on candle 1's open; TP1 101.97 (15),
TP2 103.27 (15), TP3 105.22 (20); stop 98.02, so 1 R = 2.00; the signal's ATR is 1.0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from bot.trading import build_engine, policy_from
from core.analytics.breakdowns import per_exit_reason
from core.brains.exits import StopMode
from core.config import Settings, load_settings
from core.domain.enums import OrderType
from core.domain.events import ExitPlanned, OrderSubmitted
from core.domain.market import Candle, CandleSeries
from core.domain.orders import Order, OrderRequest
from core.errors import OrderRejected as VenueRejected
from core.exchange.paper import PaperExchange
from core.services.bus import EventBus
from core.services.trade_codec import decode_trades, encode_trades
from core.services.trading_state import TradingStateService
from core.signals.base import SignalFrame
from tests.unit.services.engine_harness import SYMBOL, Harness, ScriptedProvider, at, clean_settings

DECIDE = (0, 100.0, 100.5, 99.5, 100.0)
FILL = (1, 100.0, 100.6, 99.6, 100.3)
TP1_CANDLE = (2, 100.3, 102.0, 100.2, 101.9)  # TP1 101.97 fills; the stop goes to 100.23
TP2_CANDLE = (3, 101.9, 103.5, 101.8, 103.3)  # TP2 103.27 fills; the stop goes to 101.97
# best 104.8: 2.39 R -> factor 1 - 0.239 = 0.761 -> 104.8 - 2 * 0.761 = 103.278 -> 103.28
NEW_HIGH = (4, 103.3, 104.8, 103.2, 104.6)


@dataclass
class WithAtr(ScriptedProvider):
    """The scripted signals with an ATR of 1.0 on every candle."""

    def compute(self, series: CandleSeries) -> SignalFrame:
        frame = super().compute(series)
        return replace(frame, atr=np.full(len(series), 1.0))


def with_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """Return the harness's settings plus ``env`` (QT__EXITS__ names)."""
    clean_settings(monkeypatch, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


async def entered(settings: Settings, **kw: object) -> Harness:
    h = await Harness(settings, WithAtr(entries={at(0): 1}), **kw).start()
    await h.candles([DECIDE, FILL])
    return h


def stop_prices(h: Harness) -> list[D | None]:
    return [
        e.stop_price
        for e in h.of(OrderSubmitted)
        if isinstance(e, OrderSubmitted) and e.type == OrderType.STOP_MARKET.value
    ]


def reasons(h: Harness) -> list[str]:
    [trade] = h.engine.closed_trades
    return [leg.reason for leg in trade.legs]


async def test_max_hold_exits_at_market_when_the_time_is_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await entered(with_env(monkeypatch, tmp_path, QT__EXITS__MAX_HOLD_HOURS="3"))
    await h.candles([(2, 100.3, 100.6, 99.9, 100.2)])
    assert h.engine.closed_trades == []  # 2 h held at this close
    await h.candles([(3, 100.2, 100.5, 99.9, 100.1)])  # 3 h: out at the next open
    await h.candles([(4, 100.1, 100.4, 99.8, 100.0)])
    assert reasons(h) == ["MAX_HOLD"]
    [trade] = h.engine.closed_trades
    assert trade.closed_ms == at(4) and trade.exit_reason == "MAX_HOLD"
    assert await h.open_orders() == []  # no orphan take-profit or stop


async def test_the_runner_trails_after_tp2_and_its_stop_reports_trailing_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await entered(with_env(monkeypatch, tmp_path, QT__EXITS__TRAIL_ATR="2"))
    await h.candles([TP1_CANDLE, TP2_CANDLE])
    # best 103.5 trails at 101.85: not tighter than the ladder's 101.97, nothing replaced
    assert stop_prices(h) == [D("98.02"), D("100.23"), D("101.97")]
    await h.candles([NEW_HIGH])
    assert stop_prices(h)[-1] == D("103.28")
    [moved] = [e for e in h.of(ExitPlanned) if e.reason == "stop moved: TRAILING_STOP"]
    assert moved.stop_price == D("103.28")
    await h.candles([(5, 104.6, 104.7, 103.0, 103.1)])  # a lower high, through the trail
    assert reasons(h) == ["TP1", "TP2", "TRAILING_STOP"]
    [trade] = h.engine.closed_trades
    assert trade.legs[-1].amount == D(20) and trade.legs[-1].price <= D("103.28")
    rows = {r.reason: r.trades_closed for r in per_exit_reason(h.engine.closed_trades)}
    assert rows == {"TP1": 0, "TP2": 0, "TRAILING_STOP": 1}  # the report's breakdown


class NoStopPaper(PaperExchange):
    """A paper venue that refuses stop orders: the bot watches its stop itself."""

    async def create_order(self, request: OrderRequest) -> Order:
        if request.type is OrderType.STOP_MARKET:
            raise VenueRejected(f"{self.name}: stop orders are not supported")
        return await super().create_order(request)


async def test_a_watched_trail_moved_at_the_close_watches_the_next_candle_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = with_env(monkeypatch, tmp_path, QT__EXITS__TRAIL_ATR="2")
    h = await entered(settings, paper_class=NoStopPaper)
    await h.candles([TP1_CANDLE, TP2_CANDLE, NEW_HIGH])  # NEW_HIGH's low 103.2 is below 103.28
    trade = h.engine.trades[SYMBOL]
    assert trade.plan is not None and trade.plan.stop is not None
    assert (trade.plan.stop.mode, trade.plan.stop.price) == (StopMode.BOT_SIDE, D("103.28"))
    # The low of the candle that set the trail may have come before its high: not a hit.
    await h.candles([(5, 104.6, 104.7, 103.5, 104.0)])
    assert h.engine.closed_trades == []
    await h.candles([(6, 104.0, 104.1, 103.0, 103.1), (7, 103.1, 103.2, 102.9, 103.0)])
    assert reasons(h) == ["TP1", "TP2", "TRAILING_STOP"]


async def test_profit_lock_moves_the_stop_and_reports_profit_lock(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = with_env(
        monkeypatch,
        tmp_path,
        QT__EXITS__PROFIT_LOCK_TRIGGER_PCT="1.5",
        QT__EXITS__PROFIT_LOCK_PCT="0.3",
    )
    h = await entered(settings)
    # high 101.6 >= 100.02 * 1.015 = 101.52: lock 100.02 * 1.003 = 100.32006 -> 100.33
    await h.candles([(2, 100.3, 101.6, 100.2, 101.4)])
    assert stop_prices(h)[-1] == D("100.33")
    await h.candles([(3, 101.4, 101.5, 100.1, 100.2)])
    assert reasons(h) == ["PROFIT_LOCK"]
    assert h.engine.closed_trades[0].pnl > 0  # locked in profit, fees included


async def test_the_policy_factor_tightens_once_and_its_stop_reports_tightened_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = with_env(monkeypatch, tmp_path)
    policy = [policy_from(settings)]
    h = await entered(settings, policy=lambda: policy[0])
    policy[0] = replace(policy[0], stop_tighten=D("0.5"))  # the Risk Brain's action
    assert h.engine.watch_band(SYMBOL)[2] is True  # a fast replay processes the next candle
    # close 100.0: distance 1.98 -> 0.99 -> 99.01
    await h.candles([(2, 100.3, 100.5, 99.9, 100.0)])
    assert stop_prices(h) == [D("98.02"), D("99.01")]
    assert h.engine.watch_band(SYMBOL)[2] is False  # applied: quiet candles may be skipped
    await h.candles([(3, 100.0, 100.6, 99.5, 100.5)])  # the same factor: no second move
    assert stop_prices(h) == [D("98.02"), D("99.01")]
    assert h.engine.trades[SYMBOL].plan.stop_factor == D("0.5")
    await h.candles([(4, 100.5, 100.6, 98.9, 99.0)])
    assert reasons(h) == ["TIGHTENED_STOP"]
    assert [r.reason for r in per_exit_reason(h.engine.closed_trades)] == ["TIGHTENED_STOP"]


async def test_a_restart_keeps_the_trail_and_does_not_tighten_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = with_env(monkeypatch, tmp_path, QT__EXITS__TRAIL_ATR="2")
    tight = replace(policy_from(settings), stop_tighten=D("0.9"))
    h = await entered(settings, persist=True, policy=lambda: tight)
    await h.candles([TP1_CANDLE, TP2_CANDLE, NEW_HIGH])
    before = h.engine.trades[SYMBOL]
    assert before.plan is not None and before.plan.best_price == D("104.8")
    sent = len(stop_prices(h))

    bus = EventBus()
    again = build_engine(
        settings,
        clock=h.clock,
        bus=bus,
        exchange=h.paper,
        trading_state=TradingStateService(h.storage.state, bus, h.clock),
        provider=WithAtr(entries={at(0): 1}),
        state=h.storage.state,
        policy=lambda: tight,
    )
    await again.start()
    restored = again.trades[SYMBOL]
    assert restored.plan == before.plan  # best price, factor applied, the stop's reason
    assert restored.stop_labels == before.stop_labels
    assert restored.plan is not None and restored.plan.stop is not None
    assert (restored.plan.stop.price, restored.plan.stop.reason) == (D("103.28"), "TRAILING_STOP")
    assert restored.plan.stop_factor == D("0.9")  # applied on the fill candle, before the restart
    assert restored.stop_reason(D("103.28")) == "TRAILING_STOP"
    orders = await h.open_orders()
    # The restored trade's next candle: a lower high moves nothing, the factor applied
    # before the restart tightens nothing again.
    assert again.watch_band(SYMBOL)[2] is False  # no tightening due
    h.clock.advance_to(at(6))
    lower = Candle(ts_ms=at(5), open=104.6, high=104.7, low=104.0, close=104.3, volume=1.0)
    await again.on_candle(SYMBOL, lower)
    assert again.trades[SYMBOL].plan == before.plan
    assert await h.open_orders() == orders and len(stop_prices(h)) == sent
    # A new high trails on from the restored best: 2.74 R -> 105.5 - 2 * 0.726 = 104.05.
    h.clock.advance_to(at(7))
    higher = Candle(ts_ms=at(6), open=104.3, high=105.5, low=104.2, close=105.3, volume=1.0)
    await again.on_candle(SYMBOL, higher)
    stops = [o.request.stop_price for o in await h.open_orders() if o.request.stop_price]
    assert stops == [D("104.05")]


async def test_a_trade_saved_before_the_moves_decodes_with_them_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await entered(with_env(monkeypatch, tmp_path))
    saved = json.loads(encode_trades(h.engine.trades))
    for trade in saved["trades"]:  # as a version before the candle-close moves wrote it
        trade.pop("stop_labels")
        for key in ("initial_stop", "best_price", "stop_factor"):
            trade["plan"].pop(key)
        trade["plan"]["stop"].pop("reason")
    restored = decode_trades(json.dumps(saved)).trades[SYMBOL]
    assert restored.plan is not None
    assert (restored.plan.initial_stop, restored.plan.best_price) == (None, None)
    assert restored.plan.stop_factor == D(1) and restored.stop_labels == {}
    assert restored.plan.stop is not None and restored.plan.stop.reason == ""
