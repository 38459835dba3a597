"""The sizing environment: the reward is the trade's return at the chosen size minus the
drawdown it adds, and an observation never knows an outcome its decision could not know."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError, DataError
from core.ml.rl.book import PORTFOLIO_FEATURES
from core.ml.rl.candidates import Candidates
from core.ml.rl.env import DEFAULT_LEVELS, SizingEnv, SizingEnvConfig, run_episode
from tests.unit.ml.rl.synthetic import HOUR_MS, START_MS, candidates

LEVEL = {m: i for i, m in enumerate(DEFAULT_LEVELS)}


def hand_made(outcomes: list[float], *, hold_h: int = 1) -> Candidates:
    n = len(outcomes)
    decision = START_MS + np.arange(n) * 10 * HOUR_MS
    return Candidates(
        decision_ms=decision,
        close_ms=decision + hold_h * HOUR_MS,
        features=np.zeros((n, 1)),
        feature_names=("confidence",),
        unit_outcome=np.asarray(outcomes),
    )


def play(env: SizingEnv, actions: list[int]) -> tuple[list[np.ndarray], list[float], list[dict]]:
    obs, _ = env.reset(seed=0)
    seen, rewards, infos = [obs], [], []
    for a in actions:
        obs, reward, done, truncated, info = env.step(a)
        seen.append(obs)
        rewards.append(reward)
        infos.append(info)
        assert not truncated
    assert done
    return seen[:-1], rewards, infos


def test_the_reward_is_the_multiplier_times_the_unit_outcome_minus_the_added_drawdown() -> None:
    env = SizingEnv(
        hand_made([0.02, -0.01, -0.02, 0.03]),
        SizingEnvConfig(drawdown_penalty=2.0, reward_scale=100.0),
    )
    actions = [LEVEL[1.0], LEVEL[1.5], LEVEL[0.5], LEVEL[0.0]]

    _, rewards, infos = play(env, actions)

    # Booked curve 0.02, 0.005, -0.005, -0.005: the drawdown deepens by 0.015, then 0.01.
    assert [i["multiplier"] for i in infos] == [1.0, 1.5, 0.5, 0.0]
    assert [i["pnl"] for i in infos] == pytest.approx([0.02, -0.015, -0.01, 0.0])
    assert [i["drawdown_penalty"] for i in infos] == pytest.approx([0.0, 0.03, 0.02, 0.0])
    assert rewards == pytest.approx([2.0, -4.5, -3.0, 0.0])


def test_without_a_penalty_every_reward_is_the_sized_outcome() -> None:
    c = candidates(200, seed=3)
    env = SizingEnv(c, SizingEnvConfig(drawdown_penalty=0.0, reward_scale=1.0))
    actions = np.random.default_rng(3).integers(0, len(DEFAULT_LEVELS), len(c)).tolist()

    _, rewards, _ = play(env, actions)

    sizes = np.asarray(DEFAULT_LEVELS)[actions]
    assert np.allclose(rewards, sizes * c.unit_outcome, rtol=0, atol=1e-15)


def test_an_episodes_penalties_add_up_to_the_penalty_times_its_max_drawdown() -> None:
    c = candidates(300, seed=4, edge=0.001, cost=0.004)
    env = SizingEnv(c, SizingEnvConfig(drawdown_penalty=3.0, reward_scale=1.0))
    actions = np.random.default_rng(4).integers(0, len(DEFAULT_LEVELS), len(c)).tolist()

    _, _, infos = play(env, actions)

    curve = np.cumsum(np.asarray(DEFAULT_LEVELS)[actions] * c.unit_outcome)
    max_drawdown = float(np.max(np.maximum.accumulate(np.maximum(curve, 0.0)) - curve))
    assert max_drawdown > 0.01  # the sequence does lose for a while
    assert sum(i["drawdown_penalty"] for i in infos) == pytest.approx(3.0 * max_drawdown)


def test_no_observation_changes_when_outcomes_unknown_at_its_decision_change() -> None:
    c = candidates(120, seed=5)
    actions = np.random.default_rng(5).integers(1, len(DEFAULT_LEVELS), len(c)).tolist()
    base, _, _ = play(SizingEnv(c), actions)
    rng = np.random.default_rng(6)
    changed_some = 0
    for t in range(1, len(c)):
        unknown = c.close_ms > c.decision_ms[t]  # later candidates and trades still open
        outcomes = c.unit_outcome.copy()
        outcomes[unknown] = rng.normal(0.0, 0.05, int(unknown.sum()))
        again, _, _ = play(SizingEnv(c.with_outcomes(outcomes)), actions)
        assert np.array_equal(again[t], base[t]), f"observation {t} saw an unknown outcome"
        changed_some += int(not np.array_equal(again[-1], base[-1]))
    assert changed_some > 100  # the perturbations did reach later observations


def test_a_closed_trade_shows_in_the_observation_and_an_open_one_only_as_exposure() -> None:
    # Trade 0 is still open at decision 1 (held 15 h, decisions 10 h apart), closed by 2.
    c = hand_made([-0.02, 0.01, 0.01], hold_h=15)
    seen, _, _ = play(SizingEnv(c), [LEVEL[1.5], LEVEL[1.0], LEVEL[1.0]])
    account = {name: i for i, name in enumerate(PORTFOLIO_FEATURES, start=1)}

    assert seen[1][account["exposure"]] == pytest.approx(1.5)
    assert seen[1][account["drawdown_pct"]] == 0.0
    assert seen[1][account["recent_trades_frac"]] == 0.0
    assert seen[2][account["exposure"]] == pytest.approx(1.0)  # trade 1 still open
    assert seen[2][account["drawdown_pct"]] == pytest.approx(3.0)  # 1.5 x 2 %
    assert seen[2][account["recent_win_rate"]] == 0.0
    assert seen[2][account["recent_mean_pct"]] == pytest.approx(-2.0)


def test_the_time_since_the_last_trade_counts_taken_trades_only() -> None:
    c = hand_made([0.01, 0.01, 0.01, 0.01])
    seen, _, _ = play(SizingEnv(c, SizingEnvConfig(idle_cap_days=1.0)), [4, 0, 0, 0])
    idle = 1 + PORTFOLIO_FEATURES.index("idle_frac")

    assert seen[0][idle] == 1.0  # no trade yet: as idle as can be
    assert seen[1][idle] == pytest.approx(10 / 24)
    assert seen[2][idle] == pytest.approx(20 / 24)
    assert seen[3][idle] == 1.0  # 30 h, capped at a day


def test_a_window_episode_is_seeded_and_as_long_as_configured() -> None:
    env = SizingEnv(candidates(100, seed=7), SizingEnvConfig(episode_length=30))
    starts = {env.reset(seed=s)[1]["index"] for s in range(20)}
    _, first = env.reset(seed=11)
    _, again = env.reset(seed=11)
    steps, done = 0, False
    while not done:
        done = env.step(0)[2]
        steps += 1

    assert first == again and len(starts) > 5
    assert steps == 30
    assert all(0 <= s <= 70 for s in starts)


def test_a_deterministic_episode_reports_its_figures() -> None:
    c = candidates(50, seed=8)
    stats = run_episode(SizingEnv(c), lambda obs: LEVEL[1.0] if obs[0] > 0.5 else LEVEL[0.0])
    wins = c.features[:, 0] > 0.5

    assert stats.trades == int(wins.sum())
    assert stats.total_return == pytest.approx(float(c.unit_outcome[wins].sum()))
    assert stats.metrics()["mean_multiplier"] == pytest.approx(wins.mean())


def test_stepping_past_the_end_or_off_the_levels_is_refused() -> None:
    env = SizingEnv(hand_made([0.01]))
    env.reset(seed=0)
    with pytest.raises(DataError, match="level index"):
        env.step(len(DEFAULT_LEVELS))
    env.step(0)
    with pytest.raises(DataError, match="reset"):
        env.step(0)
    with pytest.raises(DataError, match="longer"):
        SizingEnv(hand_made([0.01, 0.02]), SizingEnvConfig(episode_length=3))


def base_arrays() -> dict[str, object]:
    return {
        "decision_ms": [1, 2, 3],
        "close_ms": [5, 6, 7],
        "features": [[0.1], [0.2], [0.3]],
        "feature_names": ("confidence",),
        "unit_outcome": [0.01, -0.01, 0.0],
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"decision_ms": [3, 2, 1]}, "decision order"),
        ({"close_ms": [5, 2, 7]}, "candidate 1 closes"),
        ({"unit_outcome": [0.01, np.nan, 0.0]}, "finite"),
        ({"features": [[0.1], [np.inf], [0.3]]}, "finite"),
        ({"unit_outcome": [0.01, -1.0, 0.0]}, "whole equity"),
        ({"features": [[0.1, 1.0]] * 3}, "features must be"),
        ({"feature_names": ("a", "a"), "features": [[0.1, 1.0]] * 3}, "distinct"),
        ({"close_ms": [5, 6]}, "one length"),
        ({"decision_ms": [], "close_ms": [], "unit_outcome": [], "features": []}, "one length"),
    ],
)
def test_malformed_candidates_are_a_data_error(change: dict[str, object], match: str) -> None:
    with pytest.raises(DataError, match=match):
        Candidates(**(base_arrays() | change))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "config",
    [
        {"levels": (1.0,)},
        {"levels": (0.0, 1.5, 1.0)},
        {"levels": (-0.5, 1.0)},
        {"drawdown_penalty": -1.0},
        {"reward_scale": 0.0},
        {"episode_length": 0},
        {"recent_trades": 0},
    ],
)
def test_a_bad_environment_config_is_a_config_error(config: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SizingEnv(hand_made([0.01]), SizingEnvConfig(**config))  # type: ignore[arg-type]
