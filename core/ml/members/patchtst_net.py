"""The PatchTST network (Nie et al., 2023), compact: imported only when a member needs torch.

Each channel's window is cut into overlapping patches (``patch`` candles every ``stride``),
each patch embedded as one token with a learned position; a small Transformer encoder reads
every channel on its own with the same weights (channel independence: one encoder learns one
notion of a pattern, and a noisy channel cannot mix into another's tokens). A linear head
reads all channels' encoded tokens and emits the H-step forecast path of the returns, so the
features can still inform the return forecast.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchTst(nn.Module):
    """Input (B, C, L) normalised windows, channel 0 the returns; output (B, H) the path."""

    def __init__(
        self,
        channels: int,
        window: int,
        horizon: int,
        patch: int,
        stride: int,
        d_model: int,
        heads: int,
        layers: int,
        ff: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.patch, self.stride = patch, stride
        tokens = (window - patch) // stride + 1
        # Patches end at the newest candle: the oldest ones are left over when they do not fit.
        self.offset = (window - patch) % stride
        self.embed = nn.Linear(patch, d_model)
        self.position = nn.Parameter(torch.zeros(tokens, d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ff, dropout, batch_first=True, norm_first=True
        )
        # No nested tensors: they only pay off with padding masks, and warn with norm_first.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(channels * tokens * d_model, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the forecast path (B, H)."""
        b = x.shape[0]
        patches = x[:, :, self.offset :].unfold(2, self.patch, self.stride)  # (B, C, N, P)
        tokens = self.embed(patches.flatten(0, 1)) + self.position  # (B*C, N, D)
        encoded = self.norm(self.encoder(tokens))
        out: torch.Tensor = self.head(encoded.reshape(b, -1))
        return out
