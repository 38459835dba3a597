"""An entry its provider explains carries the explanation: at entry (an event), across a
restart (the stored trade) and on the closed trade (its event, the backtest's CSV)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.domain.events import EntryExplained, TradeClosed, event_payload
from core.domain.explanations import EntryExplanation, FeaturePush, MemberVote
from core.domain.market import CandleSeries
from core.services.trade_codec import decode_trades, encode_trades
from core.signals.base import SignalFrame
from core.signals.handover import HandOverProvider
from tests.unit.services.engine_harness import Harness, ScriptedProvider, at, clean_settings

WHY = EntryExplanation(
    provider="ensemble",
    p_up=0.64,
    members=(
        MemberVote(member="lgbm", p_up=0.6, weight=0.45),
        MemberVote(member="xgb", p_up=0.67, weight=0.55),
    ),
    regime="trend_low_vol",
    top_features=(FeaturePush(member="xgb", feature="ret_48", value=0.41),),
)


@dataclass
class Explaining(ScriptedProvider):
    """Scripted entries, each explained; records which candles it was asked about."""

    asked: list[int] = field(default_factory=list)
    regimes: list[str | None] = field(default_factory=list)

    def explain(
        self, symbol: str, ts_ms: int, regime: str | None = None
    ) -> EntryExplanation | None:
        self.asked.append(ts_ms)
        self.regimes.append(regime)
        return WHY


async def test_an_explained_entry_keeps_its_explanation_to_the_closed_trade(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = Explaining(entries={at(0): 1})
    h = await Harness(clean_settings(monkeypatch, tmp_path), provider).start()
    await h.candles([(0, 100.0, 100.5, 99.5, 100.0), (1, 100.0, 100.6, 99.6, 100.3)])
    assert provider.asked == [at(0)]  # only the candle it entered on: cheap
    # the process's regime of that candle (two candles: still the warm-up's)
    assert provider.regimes == [h.engine.trades["BTC/USDT"].regime] == ["unknown"]
    [explained] = h.of(EntryExplained)
    assert isinstance(explained, EntryExplained) and explained.explanation == WHY
    trade = h.engine.trades["BTC/USDT"]
    assert trade.explanation == WHY
    restored = decode_trades(encode_trades(h.engine.trades)).trades["BTC/USDT"]
    assert restored.explanation == WHY  # a restart keeps it

    await h.candle(2, 100.3, 106.0, 100.1, 105.5)  # every take-profit at once
    [closed] = h.engine.closed_trades
    assert closed.explanation == WHY
    [event] = h.of(TradeClosed)
    assert EntryExplanation.from_json(event_payload(event)["explanation"]) == WHY


async def test_a_provider_without_explanations_enters_as_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await Harness(
        clean_settings(monkeypatch, tmp_path), ScriptedProvider(entries={at(0): 1})
    ).start()
    await h.candles([(0, 100.0, 100.5, 99.5, 100.0), (1, 100.0, 100.6, 99.6, 100.3)])
    assert h.engine.trades["BTC/USDT"].explanation is None and h.of(EntryExplained) == []


@dataclass
class HandsOverAfterComputing(ScriptedProvider):
    """Scripted entries; its successor is handed over right after it computed (the demo's
    ensemble finishing its training while the engine is still deciding on that candle)."""

    handover: HandOverProvider | None = None
    successor: Explaining | None = None

    def compute(self, series: CandleSeries) -> SignalFrame:
        frame = super().compute(series)
        if self.handover is not None and self.successor is not None:
            self.handover.hand_over(self.successor)
        return frame


async def test_an_entry_decided_before_a_hand_over_is_the_deciding_provider_s(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    baseline = HandsOverAfterComputing(entries={at(0): 1}, name="ema_rsi")
    handover = HandOverProvider(baseline)
    baseline.handover, baseline.successor = handover, Explaining(name="ensemble")
    h = await Harness(clean_settings(monkeypatch, tmp_path), handover).start()  # type: ignore[arg-type]
    await h.candle(0, 100.0, 100.5, 99.5, 100.0)

    assert handover.name == "ensemble"  # handed over while the entry was being made
    trade = h.engine.trades["BTC/USDT"]
    assert trade.provider == "ema_rsi"  # not the successor's: it did not decide this entry
    assert trade.explanation is None and h.of(EntryExplained) == []


@dataclass
class LeavingOut(ScriptedProvider):
    """Scripted signals; leaves out the members ``script`` names at each candle count."""

    script: dict[int, dict[str, str]] = field(default_factory=dict)
    computed: int = 0

    def compute(self, series: CandleSeries) -> SignalFrame:
        self.computed = len(series)
        return super().compute(series)

    def excluded(self, symbol: str) -> dict[str, str]:
        now = {}
        for count, members in sorted(self.script.items()):
            if self.computed >= count:
                now = members
        return now


async def test_each_change_of_the_members_left_out_is_published_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from core.domain.events import ModelMemberExcluded

    stuck = {"xgb": "unhealthy output: near-constant"}
    provider = LeavingOut(script={0: {}, 2: stuck, 4: {**stuck, "lgbm": "disabled"}, 6: {}})
    h = await Harness(clean_settings(monkeypatch, tmp_path), provider).start()
    await h.candles([(i, 100.0, 100.5, 99.5, 100.0) for i in range(8)])
    said = [(e.member, e.reason) for e in h.of(ModelMemberExcluded)]
    assert said == [("xgb", stuck["xgb"]), ("lgbm", "disabled")]  # each once, when it began
    assert h.engine.excluded["BTC/USDT"] == {}  # all back in
