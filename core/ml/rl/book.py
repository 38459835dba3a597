"""The account an agent's own sizes make, as it is known at each decision.

A sized trade is opened at its decision and its outcome stays hidden until its close time:
``observe(t)`` first books every trade that closed at or before ``t`` and only then reports
the state, so a trade still open at a decision contributes its size to the exposure and
nothing of its outcome. Equity is in units of the starting equity and adds each trade's
``multiplier * unit outcome`` (a return on the equity it was sized on): to first order what
fixed-fractional sizing compounds, and independent of the order trades close in.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

MS_PER_DAY = 86_400_000

# The account's part of an observation, after the candidate's own features.
PORTFOLIO_FEATURES = (
    "drawdown_pct",  # of the realised equity below its peak, in percent of starting equity
    "exposure",  # sum of the size multipliers of trades still open
    "recent_win_rate",  # of the last ``recent_trades`` closed trades; 0.5 with none
    "recent_mean_pct",  # their mean unit outcome, in percent
    "recent_trades_frac",  # how full that window is (0: no record yet)
    "idle_frac",  # time since the last trade taken over ``idle_cap_days``, capped at 1
)


class SizingBook:
    """Open trades, realised equity and the recent record of one episode (see module)."""

    def __init__(self, *, recent_trades: int = 20, idle_cap_days: float = 30.0) -> None:
        if recent_trades < 1 or not idle_cap_days > 0:
            raise ConfigError(
                f"need recent_trades >= 1 and idle_cap_days > 0, were {recent_trades} and "
                f"{idle_cap_days}"
            )
        self._idle_cap_ms = idle_cap_days * MS_PER_DAY
        self._open: list[tuple[int, int, float, float]] = []  # close_ms, seq, multiplier, unit
        self._seq = 0
        self._recent: deque[float] = deque(maxlen=recent_trades)
        self.equity = 1.0  # realised: closed trades only
        self.peak = 1.0
        self.exposure = 0.0
        self.last_trade_ms: int | None = None

    def observe(self, decision_ms: int) -> npt.NDArray[np.float64]:
        """Book the trades closed by ``decision_ms`` and return the account's features."""
        while self._open and self._open[0][0] <= decision_ms:
            _, _, multiplier, unit = heapq.heappop(self._open)
            self.equity += multiplier * unit
            self.peak = max(self.peak, self.equity)
            self.exposure -= multiplier
            self._recent.append(unit)
        if not self._open:
            self.exposure = 0.0  # no float residue once everything is closed
        recent = self._recent
        n = len(recent)
        idle = (
            1.0
            if self.last_trade_ms is None
            else min(1.0, (decision_ms - self.last_trade_ms) / self._idle_cap_ms)
        )
        return np.array(
            [
                (self.peak - self.equity) * 100.0,
                self.exposure,
                sum(1 for u in recent if u > 0) / n if n else 0.5,
                sum(recent) / n * 100.0 if n else 0.0,
                n / recent.maxlen if recent.maxlen else 0.0,
                idle,
            ],
            dtype=np.float64,
        )

    def open(self, decision_ms: int, close_ms: int, multiplier: float, unit_outcome: float) -> None:
        """Open a trade of ``multiplier`` (0: skipped, nothing is recorded)."""
        if multiplier <= 0:
            return
        heapq.heappush(self._open, (close_ms, self._seq, multiplier, unit_outcome))
        self._seq += 1
        self.exposure += multiplier
        self.last_trade_ms = decision_ms
