"""The PatchTST member: a compact PatchTST forecaster of the next H candles' return, calibrated.

Our own implementation (``patchtst_net.py``), not neuralforecast's: that package imports ray
eagerly (~500 MB) and wants its own data frames, while a member takes plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from core.ml.members.forecaster import ForecastMember, ForecastParams

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, slots=True, kw_only=True)
class PatchTstParams(ForecastParams):
    """Patches of ``patch`` candles every ``stride``; a small pre-norm Transformer encoder.

    Non-overlapping day-long patches and at most 12 epochs: on 2 cores an epoch of 14,700
    windows costs 2-3x what N-HiTS's does even so (overlapping patches, stride 12, doubled
    it), and one retrain on 2 years of 1h must stay under 2 minutes (``bench/torch_fit.py``).
    """

    epochs: int = 12
    warm_epochs: int = 4
    patch: int = 24
    stride: int = 24
    d_model: int = 32
    heads: int = 4
    layers: int = 2
    ff: int = 64
    dropout: float = 0.1

    def __post_init__(self) -> None:
        ForecastParams.__post_init__(self)
        if not 1 <= self.patch <= self.window or self.stride < 1:
            raise ValueError(f"need 1 <= patch <= window ({self.window}) and stride >= 1")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")


class PatchTstMember(ForecastMember[PatchTstParams]):
    """PatchTST on the windows of the returns and a few features."""

    name: ClassVar[str] = "patchtst"
    params_type: ClassVar[type[PatchTstParams]] = PatchTstParams

    def _build(self) -> nn.Module:
        from core.ml.members.patchtst_net import PatchTst

        p = self._params
        return PatchTst(
            len(p.channels),
            p.window,
            p.horizon,
            p.patch,
            p.stride,
            p.d_model,
            p.heads,
            p.layers,
            p.ff,
            p.dropout,
        )
