"""The N-HiTS network (Challu et al., 2023), compact: imported only when a member needs torch.

Stacks of MLP blocks. Block ``s`` max-pools the input window with kernel ``pools[s]`` (coarse
blocks see the slow trend, fine ones the detail), reads all channels, and emits a backcast of
the return channel and ``ceil(H / downsample[s])`` forecast knots, linearly interpolated to
the H steps: coarse blocks can only say something smooth. Each block sees the return channel
minus the backcasts before it; the forecast is the sum of the blocks' forecasts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class NhitsBlock(nn.Module):
    """One block: pool, MLP, backcast and interpolated forecast knots."""

    def __init__(
        self,
        channels: int,
        window: int,
        horizon: int,
        pool: int,
        knots: int,
        hidden: int,
        layers: int,
    ) -> None:
        super().__init__()
        self.pool = nn.MaxPool1d(pool, stride=pool, ceil_mode=True)
        width = channels * math.ceil(window / pool)
        mlp: list[nn.Module] = []
        for i in range(layers):
            mlp += [nn.Linear(width if i == 0 else hidden, hidden), nn.ReLU()]
        self.mlp = nn.Sequential(*mlp)
        self.backcast = nn.Linear(hidden, window)
        self.knots = nn.Linear(hidden, knots)
        self.horizon = horizon

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (backcast of the return channel (B, L), forecast (B, H)) of x (B, C, L)."""
        h = self.mlp(self.pool(x).flatten(1))
        knots = self.knots(h).unsqueeze(1)  # (B, 1, K)
        forecast = F.interpolate(knots, size=self.horizon, mode="linear", align_corners=True)
        return self.backcast(h), forecast.squeeze(1)


class Nhits(nn.Module):
    """Input (B, C, L) normalised windows, channel 0 the returns; output (B, H) the path."""

    def __init__(
        self,
        channels: int,
        window: int,
        horizon: int,
        pools: tuple[int, ...],
        downsample: tuple[int, ...],
        hidden: int,
        layers: int,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            NhitsBlock(channels, window, horizon, p, max(1, math.ceil(horizon / d)), hidden, layers)
            for p, d in zip(pools, downsample, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the forecast path (B, H)."""
        residual = x[:, :1]
        others = x[:, 1:]
        total: torch.Tensor | None = None
        for block in self.blocks:
            backcast, forecast = block(torch.cat([residual, others], dim=1))
            residual = residual - backcast.unsqueeze(1)
            total = forecast if total is None else total + forecast
        assert total is not None  # noqa: S101 - at least one block, checked by the params
        return total
