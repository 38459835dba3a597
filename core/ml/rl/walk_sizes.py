"""The size multiplier each method gives each out-of-sample candidate of a walk-forward.

The test folds (``core.ml.rl.folds``) are sized by every method with what it knew then:

- fixed-fractional: 1 (the engine's own size);
- volatility targeting: the fold's target is the median realised volatility of its training
  candidates (so the typical trade keeps its size), each candidate's own volatility scales it;
- capped fractional Kelly: the record of the last ``record_trades`` unit outcomes closed by
  each decision (any candidate's, training or test: they are known then);
- the RL policy: PPO trained per fold on its purged training candidates only, then one
  deterministic pass over all the test candidates in order, each fold's by its own policy
  (the account state, drawdown and recent record, runs on across folds);
- the shuffled-reward control: the same, trained on the training outcomes permuted (seeded
  per fold), evaluated on the true ones. It cannot learn which candidates pay, only what
  any size does on average.

``rl_sizes`` trains for minutes with the default budget: call it in a worker process.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from core.brains.sizing_policies import (
    KellyParams,
    SizerState,
    TradeRecord,
    VolTargetParams,
    fixed_fractional,
    fractional_kelly,
    volatility_target,
)
from core.errors import ConfigError, DataError
from core.ml.rl.candidates import Candidates
from core.ml.rl.env import SizingEnvConfig
from core.ml.rl.folds import SizingFold
from core.ml.rl.policy import PpoParams
from core.ml.rl.scorecard import SIMPLE_METHODS

FloatVector = npt.NDArray[np.float64]
VOL_FEATURE = "realised_vol"


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkSizesConfig:
    """The folds, the simple sizers' settings and the RL budget."""

    folds: int = 4  # the first only trains: three out-of-sample folds
    min_train: int = 20  # closed trades a fold's policy needs to train on
    record_trades: int = 50  # Kelly's recent record
    kelly: KellyParams = field(default_factory=KellyParams)
    vol_cap: float = 1.5
    env: SizingEnvConfig = field(default_factory=SizingEnvConfig)
    # Modest: the real run's six trainings (three folds, RL and control, on 94-285 trades)
    # took 125 s in two workers on 2 cores shared with other work.
    ppo: PpoParams = field(default_factory=lambda: PpoParams(total_timesteps=20_480))
    control_seed: int = 0

    def __post_init__(self) -> None:
        if self.record_trades < 1:
            raise ConfigError(f"record_trades must be >= 1, was {self.record_trades}")


def oos_indices(folds: tuple[SizingFold, ...]) -> npt.NDArray[np.int64]:
    """Return the out-of-sample candidates' indices, in order."""
    return np.concatenate([f.test for f in folds]).astype(np.int64)


def simple_sizes(
    candidates: Candidates, folds: tuple[SizingFold, ...], config: WalkSizesConfig
) -> dict[str, FloatVector]:
    """Return each simple method's multipliers of the test candidates (see module)."""
    if VOL_FEATURE not in candidates.feature_names:
        raise DataError(f"volatility targeting needs a {VOL_FEATURE!r} feature")
    vol = candidates.features[:, candidates.feature_names.index(VOL_FEATURE)]
    by_close = np.argsort(candidates.close_ms, kind="stable")
    closes, outcomes = candidates.close_ms[by_close], candidates.unit_outcome[by_close]
    out: dict[str, list[float]] = {m: [] for m in SIMPLE_METHODS}
    for fold in folds:
        known = vol[fold.train][vol[fold.train] > 0]
        if not len(known):
            raise DataError(f"no measurable volatility to target before {fold.start_ms}")
        target = VolTargetParams(target_vol=float(np.median(known)), cap=config.vol_cap)
        for i in fold.test:
            seen = int(np.searchsorted(closes, candidates.decision_ms[i], side="right"))
            recent = outcomes[max(0, seen - config.record_trades) : seen]
            state = SizerState(
                realised_vol=float(vol[i]), record=TradeRecord.from_outcomes(recent.tolist())
            )
            out["fixed"].append(fixed_fractional(state))
            out["vol_target"].append(volatility_target(state, target))
            out["kelly"].append(fractional_kelly(state, config.kelly))
    return {m: np.asarray(v, dtype=np.float64) for m, v in out.items()}


def training_set(
    candidates: Candidates, fold: SizingFold, k: int, shuffle_seed: int | None
) -> Candidates:
    """Return fold ``k``'s training candidates, their outcomes permuted with ``shuffle_seed``
    (and ``k``) when it is given: the control's."""
    train = candidates.take(fold.train)
    if shuffle_seed is None:
        return train
    return train.with_outcomes(
        np.random.default_rng([shuffle_seed, k]).permutation(train.unit_outcome)
    )


def rl_sizes(
    candidates: Candidates,
    folds: tuple[SizingFold, ...],
    env: SizingEnvConfig,
    ppo: PpoParams,
    *,
    shuffle_seed: int | None = None,
) -> FloatVector:
    """Return the RL policy's multipliers of the test candidates: one policy per fold trained
    on its training candidates (their outcomes permuted with ``shuffle_seed``: the
    control), one pass over the test candidates (see module)."""
    from core.ml.rl.env import SizingEnv, run_episode
    from core.ml.rl.policy import policy_chooser, train_policy

    choosers = [
        policy_chooser(train_policy(training_set(candidates, fold, k, shuffle_seed), env, ppo))
        for k, fold in enumerate(folds)
    ]
    owner = np.repeat(np.arange(len(folds)), [len(f.test) for f in folds])
    steps = itertools.count()

    def choose(obs: npt.NDArray[np.float32]) -> int:
        return choosers[int(owner[next(steps)])](obs)

    whole = replace(env, episode_length=None)
    return run_episode(SizingEnv(candidates.take(oos_indices(folds)), whole), choose).multipliers
