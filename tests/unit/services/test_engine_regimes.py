"""The engine knows each symbol's regime: publishes its changes, and picks the exit ladder by
the regime at the entry (kept while the trade is open).

Regimes are scripted (a ``SignalBook`` whose ``regime_at`` reads a table) so every candle's
regime is known; the detector itself is tested in tests/unit/brains/test_regime.py. The
entry is decided on candle 0 at close 100 and fills at candle 1's open plus 2 bps: 100.02.
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from bot.trading import build_engine
from core.brains.regime import Regime
from core.config import Settings, load_settings
from core.domain.events import ExitPlanned, RegimeChanged, StrategySelected, TradeClosed
from core.domain.market import CandleSeries
from core.services.market import MarketService
from core.services.signal_book import SignalBook
from core.services.trading_state import TradingStateService
from core.signals.base import SignalFrame, SignalProvider
from tests.unit.services.engine_harness import (
    SYMBOL,
    Harness,
    ScriptedProvider,
    _NoFeed,
    at,
    clean_settings,
)

ETH = "ETH/USDT"
PROFILES = {
    "trend": {"tp_pcts": [3, 6, 9], "stop_pct": 3},
    "range_low_vol": {"tp_pcts": [1, 1.5, 2], "stop_pct": 1},
}


class ScriptedRegimes(SignalBook):
    """A signal book whose regimes are scripted: ``{symbol: {from candle i: regime}}``."""

    def __init__(self, provider: SignalProvider, script: dict[str, dict[int, Regime]]) -> None:
        super().__init__(provider)
        self.script = script

    def regime_at(self, symbol: str, ts_ms: int) -> Regime:
        """Return the regime scripted for the newest candle at or before ``ts_ms``."""
        held = [r for i, r in sorted(self.script.get(symbol, {}).items()) if at(i) <= ts_ms]
        return held[-1] if held else Regime.UNKNOWN


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    clean_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("QT__EXITS__PROFILES", json.dumps(PROFILES))
    return load_settings()


async def harness(
    settings: Settings, provider: ScriptedProvider, script: dict[str, dict[int, Regime]]
) -> Harness:
    h = await Harness(settings, provider).start()
    h.engine.signals = ScriptedRegimes(provider, script)
    return h


def flat(i: int) -> tuple[int, float, float, float, float]:
    """A quiet candle at 100: touches no exit of any ladder here."""
    return (i, 100.0, 100.3, 99.7, 100.0)


async def test_a_regime_change_is_published_once_the_first_from_unknown(
    settings: Settings,
) -> None:
    script = {SYMBOL: {2: Regime.TREND_LOW_VOL, 4: Regime.RANGE_LOW_VOL}}
    h = await harness(settings, ScriptedProvider(), script)
    await h.candles([flat(i) for i in range(7)])
    changes = [(e.candle_open_ms, e.previous, e.current) for e in h.of(RegimeChanged)]  # type: ignore[attr-defined]
    assert changes == [
        (at(2), "unknown", "trend_low_vol"),
        (at(4), "trend_low_vol", "range_low_vol"),
    ]
    assert h.engine.regimes[SYMBOL] is Regime.RANGE_LOW_VOL
    stored = await h.storage.events.list_events(topic_prefix="regime.")
    assert [e.payload["current"] for e in stored] == ["trend_low_vol", "range_low_vol"]


async def test_many_symbols_on_one_candle_each_get_their_own_regime(settings: Settings) -> None:
    script = {SYMBOL: {0: Regime.TREND_HIGH_VOL}, ETH: {0: Regime.RANGE_LOW_VOL}}
    h = await harness(settings, ScriptedProvider(), script)
    for symbol in (SYMBOL, ETH):
        await h.candle(*flat(0), symbol=symbol)
    got = {e.symbol: e.current for e in h.of(RegimeChanged)}  # type: ignore[attr-defined]
    assert got == {SYMBOL: "trend_high_vol", ETH: "range_low_vol"}
    assert h.engine.regimes == {SYMBOL: Regime.TREND_HIGH_VOL, ETH: Regime.RANGE_LOW_VOL}


def ladder(h: Harness) -> tuple[tuple[D, ...], D | None]:
    [plan] = h.of(ExitPlanned)
    assert isinstance(plan, ExitPlanned)
    return tuple(price for _, price, _ in plan.take_profits), plan.stop_price


async def test_a_trade_entered_in_a_trend_gets_the_trend_ladder_and_keeps_it(
    settings: Settings,
) -> None:
    # Trend at the entry; the regime flips to a range while the trade is open.
    script = {SYMBOL: {0: Regime.TREND_LOW_VOL, 2: Regime.RANGE_LOW_VOL}}
    provider = ScriptedProvider(entries={at(0): 1}, exit_long={at(4)})
    h = await harness(settings, provider, script)
    await h.candles([flat(i) for i in range(6)])
    # 100.02 * 1.03 / 1.06 / 1.09 (rounded toward the entry), stop 100.02 * 0.97 -> 97.02
    assert ladder(h) == ((D("103.02"), D("106.02"), D("109.02")), D("97.02"))
    [closed] = h.engine.closed_trades
    assert (closed.regime, closed.exit_profile, closed.provider) == (
        "trend_low_vol",
        "trend",
        "scripted",
    )
    [event] = h.of(TradeClosed)
    assert event.exit_profile == "trend"  # type: ignore[attr-defined]


async def test_a_trade_entered_in_a_range_gets_the_range_ladder(settings: Settings) -> None:
    script = {SYMBOL: {0: Regime.RANGE_LOW_VOL}}
    h = await harness(settings, ScriptedProvider(entries={at(0): 1}), script)
    await h.candles([flat(0), flat(1)])
    # 100.02 * 1.01 / 1.015 / 1.02, stop 100.02 * 0.99 = 99.0198 -> 99.02
    assert ladder(h) == ((D("101.02"), D("101.52"), D("102.02")), D("99.02"))
    assert h.engine.trades[SYMBOL].exit_profile == "range_low_vol"


async def test_a_regime_without_a_profile_trades_the_seed_ladder(settings: Settings) -> None:
    script = {SYMBOL: {0: Regime.RANGE_HIGH_VOL}}  # no range_high_vol nor range profile
    h = await harness(settings, ScriptedProvider(entries={at(0): 1}), script)
    await h.candles([flat(0), flat(1)])
    assert ladder(h) == ((D("101.97"), D("103.27"), D("105.22")), D("98.02"))
    assert h.engine.trades[SYMBOL].exit_profile == "default"


class Picks(ScriptedProvider):
    """Scripted signals, each row said to be a meta-strategy's pick of ``picked``."""

    picked: str = "ema_rsi"

    def compute(self, series: CandleSeries) -> SignalFrame:
        frame = super().compute(series)
        n = len(frame)
        return replace(
            frame,
            sources=(self.picked,),
            chosen=np.zeros(n, dtype=np.int8),
            score=np.full(n, np.nan),
            record=np.zeros(n, dtype=np.int64),
        )


async def test_a_restart_publishes_no_change_that_did_not_happen(settings: Settings) -> None:
    # Trend, and the pick ema_rsi, before and after the restart; a range from candle 3.
    script = {SYMBOL: {0: Regime.TREND_LOW_VOL, 3: Regime.RANGE_LOW_VOL}}
    provider = Picks(entries={at(0): 1})
    h = await Harness(settings, provider, persist=True).start()
    h.engine.signals = ScriptedRegimes(provider, script)
    await h.candles([flat(0), flat(1)])
    assert len(h.of(RegimeChanged)) == len(h.of(StrategySelected)) == 1

    h.engine = build_engine(  # the process restarts on the same database
        settings,
        clock=h.clock,
        bus=h.bus,
        exchange=h.paper,
        trading_state=TradingStateService(h.storage.state, h.bus, h.clock),
        provider=provider,
        state=h.storage.state,
    )
    h.engine.signals = ScriptedRegimes(provider, script)
    await h.engine.start()
    h.market = MarketService(
        feed=_NoFeed(),
        clock=h.clock,
        candles=None,
        bus=h.bus,
        source="test",
        timeframe="1h",
        venue=h.paper,
    )
    h.market.on_candle(h.engine.on_candle, before_fills=h.engine.before_fills)
    await h.candles([flat(2), flat(3)])
    changes = [(e.previous, e.current) for e in h.of(RegimeChanged)]  # type: ignore[attr-defined]
    assert changes == [("unknown", "trend_low_vol"), ("trend_low_vol", "range_low_vol")]
    assert len(h.of(StrategySelected)) == 1
    assert h.engine.trades[SYMBOL].exit_profile == "trend"  # the ladder of its entry, kept
