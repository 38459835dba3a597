"""The Strategy Brain's glue: input from closed trades and member predictions (traded ones
joined by the trade's explanation), the choices read from and written back to a Policy."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from core.brains.strategy import review_strategies
from core.domain.explanations import EntryExplanation, MemberVote
from core.domain.policy import Policy
from core.domain.trades import ClosedTrade
from core.errors import DataError
from core.services.strategy_review import (
    MemberOutcome,
    review_input,
    state_from_policy,
    strategy_changes,
)
from tests.unit.brains.strategy_builders import HOUR_MS, T0_MS, trade, trades


def explained(t: ClosedTrade, **weights: float) -> ClosedTrade:
    votes = tuple(MemberVote(member=m, p_up=0.7, weight=w) for m, w in weights.items())
    why = EntryExplanation(
        provider="ensemble", p_up=0.7, members=votes, regime=t.regime, top_features=()
    )
    return dataclasses.replace(t, explanation=why, provider="ensemble")


def outcomes(symbol: str = "BTC/USDT", n: int = 10) -> list[MemberOutcome]:
    return [
        MemberOutcome(
            symbol=symbol, ts_ms=T0_MS + k * HOUR_MS, p_up=0.7, up=k % 2 == 0, regime="trend"
        )
        for k in range(n)
    ]


def test_a_trade_is_joined_to_the_newest_prediction_of_its_member_and_symbol() -> None:
    # decided on the candle opened at T0 + 3h, filled at its close (T0 + 4h)
    t = explained(trade(0.02, opened_ms=T0_MS + 4 * HOUR_MS), xgb=0.6, lgbm=0.0)
    inp = review_input(
        [t],
        {"xgb": outcomes(), "lgbm": outcomes(), "nhits": outcomes("ETH/USDT")},
        as_of_ms=T0_MS + 20 * HOUR_MS,
        match_ms=2 * HOUR_MS,
        last_retrain_ms={"xgb": T0_MS - HOUR_MS},
    )
    by = {m.member: m for m in inp.members}
    traded = [p for p in by["xgb"].predictions if p.traded]
    assert [(p.ts_ms, p.pnl, p.ret) for p in traded] == [(T0_MS + 4 * HOUR_MS, 20.0, 0.02)]
    assert not any(p.traded for p in by["lgbm"].predictions)  # weight 0: left out, not its trade
    assert not any(p.traded for p in by["nhits"].predictions)  # another symbol
    assert by["xgb"].last_retrain_ms == T0_MS - HOUR_MS and by["lgbm"].last_retrain_ms is None
    review = review_strategies(inp)
    xgb = next(m for m in review.members if m.member == "xgb")
    assert xgb.economic_win_rate_pct == 100.0 and xgb.edge.trades == 1
    assert [(r.regime, r.predictions) for r in xgb.regimes] == [("trend", 10)]


def test_a_fill_too_long_after_any_prediction_is_not_joined() -> None:
    late = explained(trade(0.02, opened_ms=T0_MS + 30 * HOUR_MS), xgb=0.5)
    inp = review_input(
        [late], {"xgb": outcomes()}, as_of_ms=T0_MS + 40 * HOUR_MS, match_ms=2 * HOUR_MS
    )
    assert not any(p.traded for p in inp.members[0].predictions)


def test_two_trades_on_one_prediction_count_once() -> None:
    a = explained(trade(0.01, i=1, opened_ms=T0_MS + HOUR_MS), xgb=1.0)
    b = dataclasses.replace(
        explained(trade(0.03, i=2, opened_ms=T0_MS + HOUR_MS + 60_000), xgb=1.0), trade_id="b"
    )
    inp = review_input(
        [a, b], {"xgb": outcomes(n=2)}, as_of_ms=T0_MS + 5 * HOUR_MS, match_ms=2 * HOUR_MS
    )
    assert [p.pnl for p in inp.members[0].predictions if p.traded] == [10.0]


def test_trades_without_a_provider_take_the_default_or_are_refused() -> None:
    bare = [trade(0.01, provider="", i=k) for k in range(3)]
    inp = review_input(
        bare, {}, as_of_ms=T0_MS + 10 * HOUR_MS, match_ms=HOUR_MS, default_provider="ema_rsi"
    )
    assert {t.provider for t in inp.trades} == {"ema_rsi"}
    with pytest.raises(DataError, match="has no provider"):
        review_input(bare, {}, as_of_ms=T0_MS + 10 * HOUR_MS, match_ms=HOUR_MS)


def test_the_review_round_trips_through_the_policy_and_then_writes_nothing() -> None:
    ts = trades([0.01, -0.02] * 20, provider="mean_reversion") + trades(
        [0.02, -0.01] * 20, provider="ema_rsi", start=40
    )
    preds = {m: outcomes(n=60) for m in ("xgb", "lgbm")}
    policy = Policy(risk_per_trade=Decimal("0.02"))
    args = {"as_of_ms": T0_MS + 100 * HOUR_MS, "match_ms": 2 * HOUR_MS}
    review = review_strategies(review_input(ts, preds, current=state_from_policy(policy), **args))
    changes = strategy_changes(review, policy)
    assert changes["primary_strategy"] == "ema_rsi"
    assert changes["disabled_strategies"] == ("mean_reversion",)
    assert "fallback_strategy" not in changes  # None before, None after: no write
    updated = dataclasses.replace(policy, **changes)
    assert updated.risk_per_trade == Decimal("0.02")
    assert state_from_policy(updated) == review.state
    again = review_strategies(review_input(ts, preds, current=state_from_policy(updated), **args))
    assert strategy_changes(again, updated) == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ensemble_weights": (("xgb", 0.7), ("lgbm", 0.7))}, "sum to 1"),
        ({"ensemble_weights": (("xgb", float("nan")),)}, "sum to 1"),
        ({"ensemble_weights": (("xgb", 0.5), ("xgb", 0.5))}, "each key once"),
        ({"regime_strategies": (("trend", "a"), ("trend", "b"))}, "each key once"),
        ({"primary_strategy": "a", "disabled_strategies": ("a",)}, "among the disabled"),
    ],
)
def test_policy_refuses_strategy_fields_no_consumer_could_follow(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Policy(**fields)


def late_fill(t: ClosedTrade) -> ClosedTrade:
    """The record a spot take-profit's fill after ``t`` closed books (exit LATE, P&L its fee)."""
    from core.services.open_trade import LATE_FILL_REASON

    fee = Decimal("0.75")
    return dataclasses.replace(
        t,
        trade_id=f"{t.trade_id}-tp1-late-{t.closed_ms}",
        opened_ms=t.closed_ms,
        exit_reason=LATE_FILL_REASON,
        fees=fee,
        pnl=-fee,
        pnl_pct=-0.0005,
        legs=(),
    )


def test_late_fill_records_are_no_provider_trades_in_the_review() -> None:
    """A late fill's record (P&L minus its fee, the trade's provider and regime) is no round
    trip of the provider's: counted, five winners and five late fills read as ten trades at
    a 50 % win rate and a profit factor a fee's worth from infinite."""
    winners = trades([0.01] * 5, provider="ema_rsi")
    inp = review_input(
        [*winners, *(late_fill(t) for t in winners)],
        {},
        as_of_ms=T0_MS + 20 * HOUR_MS,
        match_ms=2 * HOUR_MS,
    )
    assert [t.trade_id for t in inp.trades] == [t.trade_id for t in winners]
    [stats] = review_strategies(inp).providers
    assert (stats.edge.trades, stats.edge.wins, stats.edge.profit_factor) == (5, 5, float("inf"))
