"""The RL sizing policy's figures (issue 15): environment steps per second, PPO's training
wall time for the default budget, and one sizing decision's latency with the loaded policy.

1. **Environment**: ``SizingEnv`` over ``--candidates`` (2,000) synthetic candidate trades
   (overlapping, 2-11 hours apart, a confidence feature that says which ones pay), stepped
   with random level indices for ``--env-steps`` (100,000) steps; prints steps per second.
2. **Training**: ``train_policy`` with the default ``PpoParams`` (50,000 timesteps, one torch
   thread) on those candidates, 1,000 more held out for the eval metrics, in a spawned worker
   process as the learning manager will run it (the spawn included); prints the wall time
   and the held-out metrics beside fixed sizing's. Target: a full retrain under 5 minutes.
3. **Decision latency**: the policy saved and loaded back (``load_policy``: weights only,
   sha256 checked), then ``multiplier(observation)`` timed on ``--decisions`` (5,000) of
   the environment's own observations; prints p50/p99/max. Target: p99 < 5 ms.

Offline; the artifact goes to a temporary folder deleted at the end. Exits 1 when a target
is missed.

Usage: .venv/bin/python bench/rl_sizing.py [--candidates 2000] [--env-steps 100000]
       [--decisions 5000] [--timesteps 50000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOUR_MS = 3_600_000
T0 = 1_672_531_200_000  # 2023-01-01
RETRAIN_TARGET_S = 300.0
DECISION_P99_TARGET_MS = 5.0


def make_candidates(n: int, seed: int):
    """Return ``n`` synthetic candidates: above confidence 0.5 a trade wins 0.8 % on average,
    below it loses 0.6 %, with 0.4 % of noise; 4 features, like a small real state."""
    import numpy as np

    from core.ml.rl.candidates import Candidates

    rng = np.random.default_rng(seed)
    decision = T0 + np.cumsum(rng.integers(2, 12, n)) * HOUR_MS
    confidence = rng.uniform(0.0, 1.0, n)
    outcome = np.where(confidence > 0.5, 0.008, -0.006) + rng.normal(0.0, 0.004, n)
    features = np.column_stack(
        [confidence, rng.uniform(0, 1, n), rng.integers(0, 4, n), rng.exponential(0.02, n)]
    )
    return Candidates(
        decision_ms=decision,
        close_ms=decision + rng.integers(1, 24, n) * HOUR_MS,
        features=features,
        feature_names=("confidence", "agreement", "regime_id", "realised_vol"),
        unit_outcome=outcome,
    )


def env_steps_per_s(n: int, steps: int) -> float:
    import numpy as np

    from core.ml.rl.env import SizingEnv

    env = SizingEnv(make_candidates(n, seed=1))
    actions = np.random.default_rng(0).integers(0, env.action_space.n, steps)
    env.reset(seed=0)
    started = time.perf_counter()
    for a in actions:
        if env.step(int(a))[2]:
            env.reset()
    return steps / (time.perf_counter() - started)


def train_and_save(n: int, timesteps: int, folder: str) -> tuple[float, dict[str, float], str]:
    """Train on the default budget (in the worker), save, return seconds, metrics, digest."""
    from dataclasses import replace

    from core.ml.rl.policy import PpoParams, save_policy, train_policy

    started = time.perf_counter()
    params = replace(PpoParams(), total_timesteps=timesteps)
    policy = train_policy(
        make_candidates(n, seed=1), params=params, eval_candidates=make_candidates(1_000, 2)
    )
    seconds = time.perf_counter() - started
    return seconds, policy.metrics, save_policy(policy, Path(folder) / "policy")


def fixed_metrics() -> dict[str, float]:
    from core.ml.rl.env import DEFAULT_LEVELS, SizingEnv, run_episode

    one = DEFAULT_LEVELS.index(1.0)
    return run_episode(SizingEnv(make_candidates(1_000, 2)), lambda obs: one).metrics()


def decision_latency_ms(folder: Path, digest: str, n: int, decisions: int) -> list[float]:
    import numpy as np

    from core.ml.rl.env import SizingEnv
    from core.ml.rl.policy import load_policy

    policy = load_policy(folder / "policy", expected_sha256=digest)
    env = SizingEnv(make_candidates(n, seed=3))
    observations, (obs, _) = [], env.reset(seed=0)
    rng = np.random.default_rng(0)
    while len(observations) < decisions:
        observations.append(obs)
        obs, _, done, _, _ = env.step(int(rng.integers(0, env.action_space.n)))
        if done:
            obs, _ = env.reset()
    for o in observations[:50]:  # warm-up: torch's first calls allocate
        policy.multiplier(o)
    out = []
    for o in observations:
        started = time.perf_counter()
        policy.multiplier(o)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=2_000)
    parser.add_argument("--env-steps", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=5_000)
    parser.add_argument("--timesteps", type=int, default=50_000)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")

    rate = env_steps_per_s(args.candidates, args.env_steps)
    print(f"environment: {rate:,.0f} steps/s ({args.candidates} candidates, random actions)")

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            seconds, metrics, digest = pool.submit(
                train_and_save, args.candidates, args.timesteps, tmp
            ).result()
        wall = time.perf_counter() - started
        print(
            f"training: {args.timesteps:,} timesteps in {seconds:.1f} s "
            f"({args.timesteps / seconds:,.0f} steps/s), {wall:.1f} s with the worker's spawn"
        )
        fixed = fixed_metrics()
        for key in ("total_return", "max_drawdown", "mean_multiplier"):
            print(f"  held out {key}: PPO {metrics[f'eval_{key}']:.3f}, fixed {fixed[key]:.3f}")

        ms = sorted(decision_latency_ms(Path(tmp), digest, args.candidates, args.decisions))
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        print(
            f"decision: p50 {statistics.median(ms):.3f} ms, p99 {p99:.3f} ms, "
            f"max {ms[-1]:.3f} ms over {len(ms)} decisions (loaded policy, one observation)"
        )
    missed = []
    if wall > RETRAIN_TARGET_S:
        missed.append(f"training {wall:.0f} s > {RETRAIN_TARGET_S:.0f} s")
    if p99 > DECISION_P99_TARGET_MS:
        missed.append(f"decision p99 {p99:.2f} ms > {DECISION_P99_TARGET_MS} ms")
    print("targets: " + ("missed: " + "; ".join(missed) if missed else "met"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
