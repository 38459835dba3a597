"""Glue for the Strategy Brain: build its input from closed trades and the members' predictions,
read the current choices from a ``Policy`` and turn a review into the ``Policy`` fields to change.

The ``strategy_review`` job (``core.services.strategy_service``) gathers the window's
``ClosedTrade``s and each member's resolved predictions (``MemberOutcome``, from the ensemble's
own computes), calls ``review_input`` then ``core.brains.strategy.review_strategies``,
publishes the review and hands ``strategy_changes`` to the policy store, the only writer of
policy.

A prediction is *traded* when a closed trade's entry explanation carries that member's vote
(a P(up) and a weight above 0) and the trade's entry filled no later than ``match_ms`` after
the prediction's candle (``ts_ms``: the candle's open time, like ``OpenTrade.decided_ms``);
the newest such prediction of the trade's symbol takes the trade's pnl and return. A second
trade on the same prediction (rare: one position per symbol) is not counted twice.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from core.brains.strategy import StrategyReview
from core.brains.strategy_input import (
    MemberOutcome,
    MemberRecord,
    StrategyReviewConfig,
    StrategyReviewInput,
    StrategyState,
)
from core.brains.strategy_stats import Prediction
from core.domain.policy import Policy
from core.domain.trades import ClosedTrade
from core.services.open_trade import round_trips


def _voted(trade: ClosedTrade, member: str) -> bool:
    if trade.explanation is None:
        return False
    return any(
        v.member == member and v.p_up is not None and v.weight > 0
        for v in trade.explanation.members
    )


def _predictions(
    member: str, outcomes: Sequence[MemberOutcome], trades: Sequence[ClosedTrade], match_ms: int
) -> tuple[Prediction, ...]:
    ordered = sorted(outcomes, key=lambda o: (o.symbol, o.ts_ms))
    keys = [(o.symbol, o.ts_ms) for o in ordered]
    traded: dict[int, ClosedTrade] = {}  # index in ordered -> the trade entered on it
    for trade in sorted(trades, key=lambda t: (t.opened_ms, t.trade_id)):
        if not _voted(trade, member):
            continue
        # the newest prediction of the symbol at or before the fill
        i = bisect.bisect_right(keys, (trade.symbol, trade.opened_ms)) - 1
        if (
            i >= 0
            and keys[i][0] == trade.symbol
            and trade.opened_ms - keys[i][1] <= match_ms
            and i not in traded
        ):
            traded[i] = trade
    return tuple(
        Prediction(
            ts_ms=o.ts_ms,
            p_up=o.p_up,
            up=o.up,
            regime=o.regime,
            traded=i in traded,
            pnl=float(traded[i].pnl) if i in traded else None,
            ret=traded[i].pnl_pct if i in traded else None,
        )
        for i, o in enumerate(ordered)
    )


def review_input(
    trades: Sequence[ClosedTrade],
    predictions: Mapping[str, Sequence[MemberOutcome]],
    *,
    as_of_ms: int,
    match_ms: int,
    current: StrategyState | None = None,
    config: StrategyReviewConfig | None = None,
    providers: Sequence[str] = (),
    last_retrain_ms: Mapping[str, int | None] | None = None,
    default_provider: str = "",
    record_from_ms: int | None = None,
) -> StrategyReviewInput:
    """Return the brain's input. ``predictions``: member -> its resolved predictions;
    ``match_ms``: how long after a prediction's candle opened a trade's entry may fill and be
    its trade (two candles is right for the engine's fill at the next open);
    ``default_provider``: the provider of trades that recorded none (stored before providers
    were); ``record_from_ms``: since when ``trades`` is complete (None: always). Bad input
    raises ``DataError`` from the input's checks; late fills' records are no provider's
    round trip and are left out."""
    trades = round_trips(trades)
    if default_provider:
        trades = [
            t if t.provider else dataclasses.replace(t, provider=default_provider) for t in trades
        ]
    retrained = last_retrain_ms or {}
    members = tuple(
        MemberRecord(
            member=name,
            predictions=_predictions(name, outs, trades, match_ms),
            last_retrain_ms=retrained.get(name),
        )
        for name, outs in sorted(predictions.items())
    )
    return StrategyReviewInput(
        as_of_ms=as_of_ms,
        trades=tuple(trades),
        members=members,
        providers=tuple(providers),
        current=current or StrategyState(),
        config=config or StrategyReviewConfig(),
        record_from_ms=record_from_ms,
    )


def state_from_policy(policy: Policy) -> StrategyState:
    """Return the choices in force in ``policy`` (the review's starting point)."""
    return StrategyState(
        primary=policy.primary_strategy,
        fallback=policy.fallback_strategy,
        disabled=policy.disabled_strategies,
        regime_providers=policy.regime_strategies,
        weights=policy.ensemble_weights,
    )


def strategy_changes(review: StrategyReview, policy: Policy) -> dict[str, Any]:
    """Return the ``Policy`` fields the review changes (empty: nothing to write), for the
    policy store's ``dataclasses.replace``."""
    s = review.state
    fields: dict[str, Any] = {
        "primary_strategy": s.primary,
        "fallback_strategy": s.fallback,
        "disabled_strategies": s.disabled,
        "regime_strategies": s.regime_providers,
        "ensemble_weights": s.weights,
    }
    return {k: v for k, v in fields.items() if getattr(policy, k) != v}
