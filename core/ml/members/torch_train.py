"""The training loop of the torch members: seeded, deterministic, early-stopped on validation.

Imported only when a member fits or predicts, so that nothing at start pays for torch. The
loss is the mean squared error of the cumulative-return path, each step divided by its
horizon h (the variance of a sum of h returns grows with h: unscaled, the far steps would
drown the near ones). Early stopping keeps the weights of the best validation epoch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from core.ml.members.windows import Float32, Vector

PREDICT_BATCH = 4096


@dataclass(frozen=True, slots=True)
class Rows:
    """Training or validation rows: inputs (n, C, L), target paths (n, H), weights (n,)."""

    inputs: Float32
    targets: Float32
    weights: Vector

    def __len__(self) -> int:
        return len(self.targets)

    @classmethod
    def empty(cls, channels: int, window: int, horizon: int) -> Rows:
        """Return no rows (of these shapes)."""
        return cls(
            np.zeros((0, channels, window), dtype=np.float32),
            np.zeros((0, horizon), dtype=np.float32),
            np.zeros(0),
        )

    @classmethod
    def concat(cls, parts: list[Rows]) -> Rows:
        """Return the rows of several runs of candles as one set (windows stay whole)."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.inputs for p in parts]),
            np.concatenate([p.targets for p in parts]),
            np.concatenate([p.weights for p in parts]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopConfig:
    """How long and how fast to train."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    seed: int


def set_threads(n: int) -> None:
    """Use ``n`` threads (explicit: torch would take every core the machine has)."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@contextlib.contextmanager
def seeded(seed: int, threads: int) -> Iterator[None]:
    """Run a block on ``threads`` threads with torch's global RNG seeded and deterministic
    algorithms on, restoring the RNG state and the algorithm setting afterwards."""
    set_threads(threads)
    before = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(before)


def path_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Return the weighted mean over rows of the horizon-scaled squared error."""
    steps = torch.arange(1, pred.shape[1] + 1, dtype=pred.dtype)
    per_row = ((pred - target) ** 2 / steps).mean(dim=1)
    return (per_row * weight).sum() / weight.sum().clamp_min(1e-12)


def fit_net(net: nn.Module, train: Rows, valid: Rows | None, cfg: LoopConfig) -> dict[str, Any]:
    """Train ``net`` in place (inside ``seeded``) and return what training found."""
    x, y, w = (torch.from_numpy(a) for a in (train.inputs, train.targets, train.weights))
    w = w.to(torch.float32)
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    order = torch.Generator().manual_seed(cfg.seed)
    best_loss, best_epoch, best_state = math.inf, -1, None
    epochs_run = 0
    for epoch in range(cfg.epochs):
        net.train()
        for idx in torch.split(torch.randperm(len(train), generator=order), cfg.batch_size):
            optimiser.zero_grad()
            loss = path_loss(net(x[idx]), y[idx], w[idx])
            torch.autograd.backward(loss)
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
        epochs_run = epoch + 1
        if valid is None or not len(valid):
            continue
        score = evaluate(net, valid)
        if score < best_loss - 1e-9:
            best_loss, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= cfg.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    return {
        "epochs": epochs_run,
        "best_epoch": None if best_state is None else best_epoch + 1,
        "best_valid_loss": None if best_state is None else best_loss,
        "train_rows": len(train),
        "valid_rows": 0 if valid is None else len(valid),
    }


def evaluate(net: nn.Module, rows: Rows) -> float:
    """Return the validation loss of ``net`` on ``rows``."""
    pred = torch.from_numpy(predict_paths(net, rows.inputs))
    target = torch.from_numpy(rows.targets)
    weight = torch.from_numpy(rows.weights).to(torch.float32)
    return float(path_loss(pred, target, weight))


def predict_paths(net: nn.Module, inputs: Float32) -> Float32:
    """Return the forecast paths (n, H) of normalised windows (n, C, L), in eval mode."""
    if net.training:  # eval() walks every submodule: a live decision's row pays for it
        net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), PREDICT_BATCH):
            out.append(net(torch.from_numpy(inputs[start : start + PREDICT_BATCH])).numpy())
    result: Float32 = np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
    return result
