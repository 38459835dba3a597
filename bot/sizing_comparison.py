"""``qt evaluate --sizing``: RL sizing against the simple sizers on the walk-forward's trades.

The walk-forward backtest's closed trades become candidates (``core.ml.rl.from_trades``:
decision, close, features known at the decision, outcome at the engine's size over equity),
cut into purged walk-forward folds (``core.ml.rl.folds``); every method sizes the same
out-of-sample candidates (``core.ml.rl.walk_sizes``) and is scored on the same compounding
account (``core.ml.rl.scorecard``). PPO trains in spawned worker processes, the RL policy and
its shuffled-reward control side by side, never on the event loop. The engine's trades, and
so their costs, are the same for every method: only the multiplier differs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from bot.backtest import BacktestResult
from bot.model_training import new_pool, stop_pool
from core.config import SizingSettings
from core.domain.events import RiskAssessed
from core.ml.rl.folds import SizingFold, sizing_folds
from core.ml.rl.from_trades import TradeCandidates, candidates_from_trades
from core.ml.rl.gate import RL, SizingGate, best_simple, sizing_gate
from core.ml.rl.policy import PpoParams, SizingPolicy, train_policy
from core.ml.rl.scorecard import MethodScore, beats_baseline, score_methods
from core.ml.rl.walk_sizes import WalkSizesConfig, oos_indices, rl_sizes, simple_sizes

CONTROL = "rl_shuffled"
METHODS = ("fixed", "vol_target", "kelly", "rl", CONTROL)


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingComparison:
    """What ``compare_sizing`` found."""

    trades: TradeCandidates
    folds: tuple[SizingFold, ...]
    scores: tuple[MethodScore, ...]  # in METHODS order, the control last
    config: WalkSizesConfig
    train_s: float  # wall time of the RL trainings (both workers)
    gate: SizingGate  # may the policy size live trades (core.ml.rl.gate)
    # trained on every candidate, the gate's verdict attached: what live sizing would load
    policy: SizingPolicy

    @property
    def out_of_sample(self) -> int:
        """Return how many candidates the methods sized."""
        return sum(len(f.test) for f in self.folds)

    def score(self, method: str) -> MethodScore:
        """Return one method's score."""
        return next(s for s in self.scores if s.method == method)


def walk_sizes_config(s: SizingSettings) -> WalkSizesConfig:
    """Return the comparison's folds and budget from the QT__SIZING__EVAL_* settings."""
    return WalkSizesConfig(
        folds=s.eval_folds,
        min_train=s.eval_min_train,
        ppo=PpoParams(total_timesteps=s.eval_timesteps),
        control_seed=s.eval_control_seed,
    )


async def compare_sizing(
    result: BacktestResult, config: WalkSizesConfig | None = None, *, margin: float = 0.0
) -> SizingComparison:
    """Compare the sizing methods on ``result``'s trades and judge the RL policy against the
    best simple one by ``margin`` of Sharpe (see module)."""
    config = config or WalkSizesConfig()
    trades = candidates_from_trades(
        result.trades,
        result.curve,
        result.window,
        [e for e in result.brain_events if isinstance(e, RiskAssessed)],
    )
    candidates = trades.candidates
    folds = sizing_folds(candidates, config.folds, min_train=config.min_train)
    sizes = simple_sizes(candidates, folds, config)
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    pool = new_pool(2)
    try:
        rl, control, final = await asyncio.gather(
            loop.run_in_executor(pool, rl_sizes, candidates, folds, config.env, config.ppo),
            loop.run_in_executor(
                pool,
                partial(rl_sizes, shuffle_seed=config.control_seed),
                candidates,
                folds,
                config.env,
                config.ppo,
            ),
            # what would size live: the policy of every candidate, judged by the folds' verdict
            loop.run_in_executor(pool, train_policy, candidates, config.env, config.ppo),
        )
    finally:
        stop_pool(pool)  # Ctrl-C or a failed training must not wait for the other's minutes
    train_s = time.perf_counter() - started
    sizes |= {"rl": rl, CONTROL: control}
    oos = oos_indices(folds)
    tested, notional = candidates.take(oos), np.asarray(trades.notional[oos])
    scores = score_methods(
        tested,
        notional,
        {m: sizes[m] for m in METHODS},
        baseline="fixed",
        controls=frozenset({CONTROL}),
    )
    best = best_simple(scores)
    vs_best = score_methods(tested, notional, {m: sizes[m] for m in (best, RL)}, baseline=best)
    shuffled = next(s for s in scores if s.method == CONTROL)
    gate = sizing_gate(vs_best, best, control_beat_fixed=beats_baseline(shuffled), margin=margin)
    return SizingComparison(
        trades=trades,
        folds=folds,
        scores=scores,
        config=config,
        train_s=train_s,
        gate=gate,
        # what it knows ends with the walk's last candle, not its last trade: a quiet stretch
        # at the end is data too (its age, QT__SIZING__MAX_AGE_DAYS, counts from there)
        policy=replace(final, gate=gate, trained_until_ms=data_end(result, final)),
    )


def data_end(result: BacktestResult, policy: SizingPolicy) -> int | None:
    """Return when the data the policy learned from ends: the walk's last candle (its newest
    trade's close if that is later, or if the curve is empty)."""
    ends = [policy.trained_until_ms] if policy.trained_until_ms is not None else []
    if len(result.curve.ts_ms):
        ends.append(int(result.curve.ts_ms[-1]))
    return max(ends) if ends else None
