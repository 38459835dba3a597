"""The PPO sizing policy: trained with stable-baselines3, kept and served as plain torch.

``train_policy`` fits PPO (``MlpPolicy``, CPU, a fixed seed) on a ``SizingEnv`` and keeps only
the actor: the policy network and its action head, copied into a small ``nn.Sequential``
(``Linear``/``Tanh`` layers, then the logits). The deterministic action is the argmax of the
categorical distribution of those logits, as in stable-baselines3, and training ends by
checking that the copy chooses what PPO chooses on every training observation.

Artifact (``save_policy`` / ``load_policy``), sealed by ``core.ml.artifacts``' sha256
manifest: ``policy.pt``, the network's ``state_dict`` (tensors only, read back with
``torch.load(..., weights_only=True)``), and ``policy.json`` (hyper-parameters, observation
spec, action spec, environment config, metrics, library versions, the newest close time
trained on). Never SB3's zip, whose members are pickles. This blocks for the training's
length: run it in a worker process (``bot.model_training`` pools), never on the event loop.
torch and stable-baselines3 are imported inside the functions, so importing this module
costs neither.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from core.errors import ArtifactError, ConfigError, DataError, InvariantViolation
from core.ml.artifacts import read_sealed, write_sealed
from core.ml.rl.gate import SizingGate

if TYPE_CHECKING:
    from torch import nn

    from core.ml.rl.candidates import Candidates
    from core.ml.rl.env import SizingEnvConfig

WEIGHTS_FILE = "policy.pt"
SPEC_FILE = "policy.json"
KIND = "rl_sizing"
FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PpoParams:
    """PPO's budget and hyper-parameters (stable-baselines3's names) and the network's size."""

    total_timesteps: int = 50_000
    n_steps: int = 1_024  # per rollout; a multiple of batch_size (SB3 warns otherwise)
    batch_size: int = 128
    n_epochs: int = 10
    learning_rate: float = 3e-4
    gamma: float = 0.9  # a trade's reward is mostly its own: a short horizon learns faster
    gae_lambda: float = 0.95
    ent_coef: float = 0.01
    clip_range: float = 0.2
    hidden: tuple[int, ...] = (64, 64)
    seed: int = 0
    # One: the network is a few thousand weights, too small to split; on 2 shared cores two
    # threads made 8192 steps take 43 s instead of 8 s (contention, same result).
    n_threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.total_timesteps < 1 or self.n_steps < 2 or self.batch_size < 2:
            raise ConfigError("need total_timesteps >= 1, n_steps >= 2 and batch_size >= 2")
        if self.n_steps % self.batch_size:
            raise ConfigError(f"n_steps {self.n_steps} must be a multiple of {self.batch_size}")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"hidden must be one or more layer sizes >= 1, was {self.hidden}")

    def to_json(self) -> dict[str, Any]:
        """Return the parameters as JSON values."""
        doc = asdict(self)
        doc["hidden"] = list(self.hidden)
        return doc


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingPolicy:
    """A trained or loaded policy: its network and what it reads and chooses."""

    net: Any  # torch.nn.Sequential, built by ``build_net``
    observation_names: tuple[str, ...]
    levels: tuple[float, ...]
    params: PpoParams
    env: dict[str, Any]  # the SizingEnvConfig it was trained in, as JSON
    metrics: dict[str, float]
    libraries: dict[str, str]
    # The newest close time of the trades it learned from: how old what it knows is (live
    # sizing refuses a policy older than its configured age). None: not recorded.
    trained_until_ms: int | None = None
    # The verdict of its out-of-sample comparison with the simple sizers (core.ml.rl.gate):
    # live sizing uses the policy only when it passed. None: never judged.
    gate: SizingGate | None = None

    def level_indices(self, observations: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Return the deterministic level index of each row of ``observations``."""
        import torch

        obs = np.asarray(observations, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != len(self.observation_names):
            raise DataError(
                f"observations must be (rows, {len(self.observation_names)}), were {obs.shape}"
            )
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(obs))
            probs = torch.distributions.Categorical(logits=logits).probs
            return probs.argmax(dim=1).numpy().astype(np.int64)

    def multiplier(self, observation: npt.ArrayLike) -> float:
        """Return the size multiplier the policy chooses for one observation."""
        row = np.asarray(observation, dtype=np.float32).reshape(1, -1)
        return self.levels[int(self.level_indices(row)[0])]


def build_net(observations: int, hidden: tuple[int, ...], actions: int) -> nn.Sequential:
    """Return the actor's architecture: SB3's ``MlpPolicy`` policy branch and action head."""
    from torch import nn

    layers: list[nn.Module] = []
    width = observations
    for size in hidden:
        layers += [nn.Linear(width, size), nn.Tanh()]
        width = size
    layers.append(nn.Linear(width, actions))
    return nn.Sequential(*layers)


def train_policy(
    candidates: Candidates,
    env_config: SizingEnvConfig | None = None,
    params: PpoParams | None = None,
    *,
    eval_candidates: Candidates | None = None,
) -> SizingPolicy:
    """Train PPO on ``candidates`` and return its actor; metrics are deterministic passes over
    the training candidates (``train_*``) and over ``eval_candidates`` if given (``eval_*``,
    out of sample: candidates after the training ones)."""
    import stable_baselines3
    import torch
    from stable_baselines3 import PPO

    from core.ml.members.torch_train import seeded
    from core.ml.rl.env import SizingEnv, SizingEnvConfig, observation_names, run_episode

    params = params or PpoParams()
    env_config = env_config or SizingEnvConfig()
    env = SizingEnv(candidates, env_config)
    if eval_candidates is not None and observation_names(eval_candidates) != env.names:
        raise DataError("eval_candidates have other features than the training candidates")
    with seeded(params.seed, params.n_threads):
        model = PPO(
            "MlpPolicy",
            env,
            n_steps=params.n_steps,
            batch_size=params.batch_size,
            n_epochs=params.n_epochs,
            learning_rate=params.learning_rate,
            gamma=params.gamma,
            gae_lambda=params.gae_lambda,
            ent_coef=params.ent_coef,
            clip_range=params.clip_range,
            policy_kwargs={"net_arch": {"pi": list(params.hidden), "vf": list(params.hidden)}},
            seed=params.seed,
            device="cpu",
            verbose=0,
        )
        model.learn(total_timesteps=params.total_timesteps)
        net = _actor_of(model.policy, len(env.names), params.hidden, len(env_config.levels))
    policy = SizingPolicy(
        net=net,
        observation_names=env.names,
        levels=env_config.levels,
        params=params,
        env=_env_json(env_config),
        metrics={},
        libraries={
            "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "numpy": np.__version__,
        },
        trained_until_ms=int(candidates.close_ms.max()),
    )
    seen: list[npt.NDArray[np.float32]] = []
    choose = policy_chooser(policy)

    def remember(obs: npt.NDArray[np.float32]) -> int:
        seen.append(obs)
        return choose(obs)

    whole = replace(env_config, episode_length=None)
    train = run_episode(SizingEnv(candidates, whole), remember)
    chosen, _ = model.predict(np.stack(seen), deterministic=True)
    if not np.array_equal(np.asarray(chosen, dtype=np.int64), policy.level_indices(seen)):
        raise InvariantViolation("the copied actor chooses other sizes than PPO's own policy")
    metrics = {f"train_{k}": v for k, v in train.metrics().items()}
    if eval_candidates is not None:
        held_out = run_episode(SizingEnv(eval_candidates, whole), choose)
        metrics |= {f"eval_{k}": v for k, v in held_out.metrics().items()}
    return replace(policy, metrics=metrics)


def policy_chooser(policy: SizingPolicy) -> Callable[[npt.NDArray[np.float32]], int]:
    """Return ``obs -> level index`` (what ``run_episode`` takes)."""

    def choose(obs: npt.NDArray[np.float32]) -> int:
        return int(policy.level_indices(np.asarray(obs).reshape(1, -1))[0])

    return choose


def _env_json(config: SizingEnvConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in fields(config) if f.name != "levels"}


def _actor_of(sb3_policy: Any, observations: int, hidden: tuple[int, ...], actions: int) -> Any:
    # SB3's MlpPolicy: mlp_extractor.policy_net is Linear/Tanh pairs, action_net the logits.
    net = build_net(observations, hidden, actions)
    source = sb3_policy.state_dict()
    state = {}
    for i in range(len(hidden)):
        for part in ("weight", "bias"):
            state[f"{2 * i}.{part}"] = source[f"mlp_extractor.policy_net.{2 * i}.{part}"]
    for part in ("weight", "bias"):
        state[f"{2 * len(hidden)}.{part}"] = source[f"action_net.{part}"]
    net.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    net.eval()
    return net


def save_policy(policy: SizingPolicy, folder: Path) -> str:
    """Write ``policy``'s artifact into ``folder`` (which must not exist) and return its
    sha256 (the manifest's: what a registry records)."""
    import torch

    bad = {k: v for k, v in policy.metrics.items() if not math.isfinite(v)}
    if bad:
        raise ArtifactError(f"policy metrics must be finite numbers, were {bad}")
    buffer = io.BytesIO()
    # A plain dict of tensors: nothing else to unpickle, so weights_only can read it.
    torch.save({k: v.contiguous() for k, v in policy.net.state_dict().items()}, buffer)
    spec = {
        "format": FORMAT,
        "kind": KIND,
        "params": policy.params.to_json(),
        "observation": {"names": list(policy.observation_names)},
        "action": {"type": "discrete", "levels": list(policy.levels)},
        "env": policy.env,
        "metrics": policy.metrics,
        "libraries": policy.libraries,
        "trained_until_ms": policy.trained_until_ms,
        "gate": None if policy.gate is None else policy.gate.to_json(),
    }
    text = json.dumps(spec, indent=2, sort_keys=True, allow_nan=False) + "\n"

    def write(partial: Path) -> list[Path]:
        (partial / WEIGHTS_FILE).write_bytes(buffer.getvalue())
        (partial / SPEC_FILE).write_text(text)
        return [partial / WEIGHTS_FILE, partial / SPEC_FILE]

    return write_sealed(folder, write)


def load_policy(folder: Path, *, expected_sha256: str | None = None) -> SizingPolicy:
    """Return the policy in ``folder`` once every file checks out against the manifest (and
    the manifest against ``expected_sha256``); anything else is an ``ArtifactError``."""
    import torch

    _, files = read_sealed(folder, expected_sha256=expected_sha256)
    missing = [name for name in (WEIGHTS_FILE, SPEC_FILE) if name not in files]
    if missing:
        raise ArtifactError(f"{folder}: the policy's files are not all sealed: {missing}")
    spec = _parse_spec(files[SPEC_FILE], folder / SPEC_FILE)
    params, names, levels = spec["params"], spec["names"], spec["levels"]
    try:
        state = torch.load(io.BytesIO(files[WEIGHTS_FILE]), weights_only=True)
        net = build_net(len(names), params.hidden, len(levels))
        net.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ArtifactError(f"{folder / WEIGHTS_FILE} cannot be read: {exc}") from exc
    net.eval()
    return SizingPolicy(
        net=net,
        observation_names=names,
        levels=levels,
        params=params,
        env=spec["env"],
        metrics=spec["metrics"],
        libraries=spec["libraries"],
        trained_until_ms=spec["trained_until_ms"],
        gate=spec["gate"],
    )


def _parse_spec(raw: bytes, where: Path) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
        if (doc["format"], doc["kind"]) != (FORMAT, KIND):
            raise ValueError(f"format/kind {doc['format']!r}/{doc['kind']!r} unknown here")
        names = tuple(doc["observation"]["names"])
        levels = tuple(float(v) for v in doc["action"]["levels"])
        if doc["action"]["type"] != "discrete" or len(levels) < 2:
            raise ValueError("the action must be discrete with >= 2 levels")
        if not names or not all(isinstance(n, str) for n in names):
            raise ValueError("observation names must be strings")
        metrics = {str(k): float(v) for k, v in doc["metrics"].items()}
        env, libraries = doc["env"], doc["libraries"]
        if not (isinstance(env, dict) and isinstance(libraries, dict)):
            raise ValueError("env and libraries must be objects")
        params = PpoParams(**doc["params"])
        until = doc.get("trained_until_ms")
        if until is not None and (isinstance(until, bool) or not isinstance(until, int)):
            raise ValueError(f"trained_until_ms must be an integer or null, was {until!r}")
        gate = doc.get("gate")
        gate = None if gate is None else SizingGate.from_json(gate)
    except (ValueError, KeyError, TypeError, AttributeError, ConfigError, DataError) as exc:
        raise ArtifactError(f"{where} is malformed: {exc}") from exc
    return {
        "params": params,
        "names": names,
        "levels": levels,
        "env": env,
        "metrics": metrics,
        "libraries": libraries,
        "trained_until_ms": until,
        "gate": gate,
    }
