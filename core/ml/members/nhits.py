"""The N-HiTS member: a compact N-HiTS forecaster of the next H candles' return, calibrated.

Our own implementation (``nhits_net.py``), not neuralforecast's: that package imports ray
eagerly (~500 MB) and wants its own data frames, while a member takes plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from core.ml.members.forecaster import ForecastMember, ForecastParams

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, slots=True, kw_only=True)
class NhitsParams(ForecastParams):
    """One block per stack: max-pool kernel and forecast downsampling of each, MLP sizes."""

    pools: tuple[int, ...] = (24, 6, 1)
    downsample: tuple[int, ...] = (12, 4, 1)  # H / knots: the coarse block says 2 numbers
    hidden: int = 128
    layers: int = 2

    def __post_init__(self) -> None:
        ForecastParams.__post_init__(self)
        if not self.pools or len(self.pools) != len(self.downsample):
            raise ValueError("pools and downsample need one entry per stack")
        if min(self.pools) < 1 or min(self.downsample) < 1 or self.hidden < 1 or self.layers < 1:
            raise ValueError("pools, downsample, hidden and layers must be >= 1")


class NhitsMember(ForecastMember[NhitsParams]):
    """N-HiTS on the windows of the returns and a few features."""

    name: ClassVar[str] = "nhits"
    params_type: ClassVar[type[NhitsParams]] = NhitsParams

    def _build(self) -> nn.Module:
        from core.ml.members.nhits_net import Nhits

        p = self._params
        return Nhits(
            len(p.channels), p.window, p.horizon, p.pools, p.downsample, p.hidden, p.layers
        )
