"""The engine's open trades survive a restart through the key-value store: every field."""

from __future__ import annotations

import json
from decimal import Decimal as D

from core.brains.exits import BotSideStop, PlanRequest, plan_exits
from core.domain.enums import MarketType, PositionSide
from core.domain.trades import ExitLeg
from core.services.open_trade import OpenTrade
from core.services.symbol_health import SymbolHealth
from core.services.trade_codec import decode_trades, encode_trades


def full_trade() -> OpenTrade:
    plan = plan_exits(
        PlanRequest(
            side=PositionSide.SHORT,
            entry_price=D("100.02"),
            amount=D(50),
            amount_step=D("0.00001"),
            price_tick=D("0.01"),
        )
    )
    trade = OpenTrade(
        trade_id="qt-BTC-1-e",
        symbol="BTC/USDT",
        side=PositionSide.SHORT,
        decided_ms=1,
        entry_cid="qt-BTC-1-e",
        confidence=0.7,
        atr=1.5,
        market_type=MarketType.PERP,
        leverage=3,
        opened_ms=2,
        amount=D(50),
        entry_cost=D("5001"),
        entry_fee=D("5.001"),
        plan=plan,
        working={"TP2": "qt-BTC-1-t2", "SL": "qt-BTC-1-s1"},
        roles={"qt-BTC-1-e": "entry", "qt-BTC-1-t2": "TP2", "qt-BTC-1-s1": "SL"},
        exit_reasons={"qt-BTC-1-x2": "SIGNAL"},
        legs=[ExitLeg(reason="TP1", ts_ms=3, price=D(98), amount=D(15), fee=D("1.47"), pnl=D(1))],
        bot_stop=BotSideStop(price=D(102), amount=D(35)),
        seq=2,
        first_stop=D("102.03"),
        funding=D("-0.25"),
        provider="mean_reversion",
        regime="trend_low_vol",
        exit_profile="trend",
    )
    trade.note_fill("qt-BTC-1-e", D(50), D("100.02"), D("5.001"))
    return trade


def test_every_field_round_trips() -> None:
    trade = full_trade()
    decided = {trade.symbol: 1_704_067_200_000, "ETH/USDT": 1_704_070_800_000}
    health = SymbolHealth(3_600_000)
    health.fail("ETH/USDT", 1_704_070_800_000, "KeyError: 'x'")
    failed = health.dump()
    regimes, picks = {trade.symbol: "trend_low_vol"}, {trade.symbol: "mean_reversion"}
    text = encode_trades({trade.symbol: trade}, decided, failed, regimes, picks)
    stored = decode_trades(text)
    assert (stored.trades, stored.decided, stored.failed) == (
        {trade.symbol: trade},
        decided,
        failed,
    )
    assert (stored.regimes, stored.strategies) == (regimes, picks)


def test_trades_saved_before_the_newer_fields_still_load() -> None:
    trade = full_trade()
    data = json.loads(encode_trades({trade.symbol: trade}))
    for name in (
        *("first_stop", "funding", "cost_by_cid", "fee_by_cid"),
        *("provider", "regime", "exit_profile"),
    ):
        del data["trades"][0][name]
    data.pop("decided")  # saved before the decided candles and failed symbols were kept
    data.pop("failed")
    data.pop("regimes")  # nor the regimes and picks
    data.pop("strategies")
    stored = decode_trades(json.dumps(data))
    [old] = stored.trades.values()
    assert stored.decided == {} and stored.failed == {}
    assert stored.regimes == {} and stored.strategies == {}
    assert (old.first_stop, old.funding, old.cost_by_cid, old.fee_by_cid) == (None, D(0), {}, {})
    assert (old.provider, old.regime, old.exit_profile) == ("", "", "default")
    assert old.plan == trade.plan and old.filled_by_cid == trade.filled_by_cid
