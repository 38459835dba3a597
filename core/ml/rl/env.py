"""``SizingEnv``: a gymnasium environment that replays candidate trades for a sizing agent.

Each step is one candidate (``core.ml.rl.candidates``), in decision order. The agent sees the
candidate's own features followed by the account's (``core.ml.rl.book.PORTFOLIO_FEATURES``:
drawdown, exposure, recent record, time since the last trade), chooses a size multiplier and
is rewarded ``reward_scale * (multiplier * unit_outcome - drawdown_penalty * dMDD)``, where
``dMDD`` is how much this trade deepens the maximum drawdown of the episode's booked curve
(every sized trade added at its decision). The penalties of an episode add up to
``drawdown_penalty * its max drawdown``: the agent maximises return minus that. The reward may
use the trade's outcome at once (it is the label of the action); the observation never does:
the account part is rebuilt from trades closed at or before each decision only.

Why scaling one outcome is valid: the engine's fees and slippage are proportional to the
amount traded and the fill model has no market impact, so a trade at multiplier ``m`` returns
``m`` times its unit outcome. Where it is not: when ``m`` times the risk size would hit a
position, exposure or cash cap (the real size is capped, so the outcome is less than ``m``
times), or when a small ``m`` rounds below the venue's minimum amount or notional (the real
trade is skipped). Candidates should be computed with caps loose enough that the largest level
is not capped, or the levels above the cap are optimistic.

Action: ``Discrete(len(levels))``, an index into fixed multiplier levels (0 … 1.5 by 0.25 by
default) rather than a ``Box``: skipping (exactly 0) and the largest size are reachable
without a Gaussian's mass piling up at clipped bounds, the deterministic action is an argmax
that a reloaded network reproduces exactly, and a quarter step is finer than what exchange
amount steps and risk caps leave of the size anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from core.errors import ConfigError, DataError
from core.ml.rl.book import PORTFOLIO_FEATURES, SizingBook
from core.ml.rl.candidates import Candidates

DEFAULT_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
Observation = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingEnvConfig:
    """The action levels, the reward's drawdown penalty and scale, the episode's length."""

    levels: tuple[float, ...] = DEFAULT_LEVELS
    drawdown_penalty: float = 1.0  # per unit of max drawdown (in starting equity)
    reward_scale: float = 100.0  # rewards in percent: PPO's value function sees O(1) numbers
    recent_trades: int = 20
    idle_cap_days: float = 30.0
    episode_length: int | None = None  # None: the whole sequence; else a random window of it

    def __post_init__(self) -> None:
        levels = tuple(float(v) for v in self.levels)
        object.__setattr__(self, "levels", levels)
        if len(levels) < 2 or any(not (math.isfinite(v) and v >= 0) for v in levels):
            raise ConfigError(f"levels must be >= 2 finite multipliers >= 0, were {levels}")
        if list(levels) != sorted(set(levels)):
            raise ConfigError(f"levels must be increasing, were {levels}")
        if not (math.isfinite(self.drawdown_penalty) and self.drawdown_penalty >= 0):
            raise ConfigError(f"drawdown_penalty must be >= 0, was {self.drawdown_penalty}")
        if not (math.isfinite(self.reward_scale) and self.reward_scale > 0):
            raise ConfigError(f"reward_scale must be > 0, was {self.reward_scale}")
        if self.recent_trades < 1 or not self.idle_cap_days > 0:
            raise ConfigError(
                f"recent_trades must be >= 1 and idle_cap_days > 0, were {self.recent_trades} "
                f"and {self.idle_cap_days}"
            )
        if self.episode_length is not None and self.episode_length < 1:
            raise ConfigError(f"episode_length must be >= 1, was {self.episode_length}")


def observation_names(candidates: Candidates) -> tuple[str, ...]:
    """Return the names of an observation's values, in order."""
    return (*candidates.feature_names, *PORTFOLIO_FEATURES)


class SizingEnv(gym.Env[Observation, np.int64]):
    """The sizing environment (see module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(self, candidates: Candidates, config: SizingEnvConfig | None = None) -> None:
        self.candidates = candidates
        self.config = config or SizingEnvConfig()
        n = len(candidates)
        if self.config.episode_length is not None and self.config.episode_length > n:
            raise DataError(
                f"episode_length {self.config.episode_length} is longer than the {n} candidates"
            )
        self.names = observation_names(candidates)
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(len(self.names),), dtype=np.float32
        )
        self.action_space = gym.spaces.Discrete(len(self.config.levels))
        self._levels = np.asarray(self.config.levels, dtype=np.float64)
        self._start = self._t = self._stop = 0
        self._book = SizingBook()
        self._booked = self._booked_peak = self._max_drawdown = 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Start a new account at the sequence's start (or a random window's, seeded)."""
        super().reset(seed=seed)
        n, length = len(self.candidates), self.config.episode_length
        self._start = 0 if length is None else int(self.np_random.integers(0, n - length + 1))
        self._stop = n if length is None else self._start + length
        self._t = self._start
        self._book = SizingBook(
            recent_trades=self.config.recent_trades, idle_cap_days=self.config.idle_cap_days
        )
        self._booked = self._booked_peak = self._max_drawdown = 0.0
        return self._observe(), {"index": self._t}

    def step(self, action: np.int64 | int) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Size the current candidate by level ``action`` and move to the next one."""
        if self._t >= self._stop:
            raise DataError("the episode is over: call reset() before step()")
        index = int(action)
        if not 0 <= index < len(self._levels):
            raise DataError(
                f"action must be a level index in [0, {len(self._levels)}), was {action}"
            )
        c, t = self.candidates, self._t
        multiplier = float(self._levels[index])
        pnl = multiplier * float(c.unit_outcome[t])
        self._booked += pnl
        self._booked_peak = max(self._booked_peak, self._booked)
        deeper = max(0.0, self._booked_peak - self._booked - self._max_drawdown)
        self._max_drawdown += deeper
        penalty = self.config.drawdown_penalty * deeper
        reward = self.config.reward_scale * (pnl - penalty)
        self._book.open(
            int(c.decision_ms[t]), int(c.close_ms[t]), multiplier, float(c.unit_outcome[t])
        )
        self._t += 1
        done = self._t >= self._stop
        # The last observation is never acted on; a zero vector keeps it free of any outcome.
        obs = np.zeros(len(self.names), dtype=np.float32) if done else self._observe()
        info = {
            "index": t,
            "multiplier": multiplier,
            "pnl": pnl,
            "drawdown_penalty": penalty,
            "max_drawdown": self._max_drawdown,
        }
        return obs, reward, done, False, info

    def _observe(self) -> Observation:
        t = self._t
        account = self._book.observe(int(self.candidates.decision_ms[t]))
        return np.concatenate([self.candidates.features[t], account]).astype(np.float32)


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeStats:
    """One deterministic pass: reward, return, drawdown and sizes chosen."""

    total_reward: float
    total_return: float  # sum of multiplier * unit outcome, in starting equity
    max_drawdown: float  # of the booked curve, in starting equity
    mean_multiplier: float
    trades: int  # candidates sized above 0
    multipliers: npt.NDArray[np.float64]

    def metrics(self) -> dict[str, float]:
        """Return the scalar figures (what an artifact records)."""
        return {
            "total_reward": self.total_reward,
            "total_return": self.total_return,
            "max_drawdown": self.max_drawdown,
            "mean_multiplier": self.mean_multiplier,
            "trades": float(self.trades),
        }


def run_episode(env: SizingEnv, act: Callable[[Observation], int]) -> EpisodeStats:
    """Run one episode with the chooser ``act`` (observation to level index) from a reset."""
    obs, _ = env.reset(seed=0)
    total_reward = total_return = max_drawdown = 0.0
    multipliers = []
    done = False
    while not done:
        obs, reward, done, _, info = env.step(act(obs))
        total_reward += reward
        total_return += info["pnl"]
        max_drawdown = info["max_drawdown"]
        multipliers.append(info["multiplier"])
    sizes = np.asarray(multipliers, dtype=np.float64)
    return EpisodeStats(
        total_reward=total_reward,
        total_return=total_return,
        max_drawdown=max_drawdown,
        mean_multiplier=float(sizes.mean()),
        trades=int((sizes > 0).sum()),
        multipliers=sizes,
    )
