"""The account an agent's own sizes make, as it is known at each decision.

``SizingAccount`` is the one definition of the account's part of an observation
(``PORTFOLIO_FEATURES``), shared by training and live sizing: trades are ``opened`` at their
decision with a size multiplier and ``closed`` with their unit outcome (a return on the
equity they were sized on, at multiplier 1), and ``features(t)`` reports only what those
calls have told it. Equity is in units of the starting equity and adds each closed trade's
``multiplier * unit outcome``: to first order what fixed-fractional sizing compounds, and
independent of the order trades close in.

- ``SizingBook`` (training: ``core.ml.rl.env``) knows every candidate's close time and
  outcome in advance; ``observe(t)`` first closes every trade that closed at or before ``t``
  and only then reports, so a trade still open at a decision contributes its size to the
  exposure and nothing of its outcome.
- Live (``core.services.sizing_service``), the engine opens a trade when its entry goes out
  and closes it when its ``TradeClosed`` arrives: the outcome cannot be known earlier.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError, DataError

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


class SizingAccount:
    """Open trades by key, realised equity and the recent record (see module docstring)."""

    def __init__(self, *, recent_trades: int = 20, idle_cap_days: float = 30.0) -> None:
        if recent_trades < 1 or not idle_cap_days > 0:
            raise ConfigError(
                f"need recent_trades >= 1 and idle_cap_days > 0, were {recent_trades} and "
                f"{idle_cap_days}"
            )
        self._idle_cap_ms = idle_cap_days * MS_PER_DAY
        self._open: dict[Hashable, float] = {}  # key -> multiplier
        self._recent: deque[float] = deque(maxlen=recent_trades)
        self.equity = 1.0  # realised: closed trades only
        self.peak = 1.0
        self.last_trade_ms: int | None = None

    @property
    def recent_trades(self) -> int:
        """Return how many closed trades the recent record keeps."""
        return self._recent.maxlen or 0

    @property
    def idle_cap_days(self) -> float:
        """Return the days at which time since the last trade is capped."""
        return self._idle_cap_ms / MS_PER_DAY

    @property
    def exposure(self) -> float:
        """Return the sum of the multipliers of the trades still open."""
        return sum(self._open.values())

    @property
    def recent_outcomes(self) -> tuple[float, ...]:
        """Return the unit outcomes of the last closed trades, oldest first."""
        return tuple(self._recent)

    def is_open(self, key: Hashable) -> bool:
        """Return True while the trade ``key`` is open here."""
        return key in self._open

    def open_keys(self) -> tuple[Hashable, ...]:
        """Return the keys of the trades still open."""
        return tuple(self._open)

    def multiplier_of(self, key: Hashable) -> float:
        """Return the multiplier the open trade ``key`` was sized at."""
        return self._open[key]

    def opened(self, key: Hashable, decision_ms: int, multiplier: float) -> None:
        """Open the trade ``key`` of ``multiplier`` (0: skipped, nothing is recorded)."""
        if multiplier <= 0:
            return
        if key in self._open:
            raise DataError(f"trade {key!r} is open already")
        self._open[key] = multiplier
        self.last_trade_ms = decision_ms

    def closed(self, key: Hashable, unit_outcome: float) -> None:
        """Book the outcome of the open trade ``key`` (a return at multiplier 1)."""
        multiplier = self._open.pop(key)
        self.equity += multiplier * unit_outcome
        self.peak = max(self.peak, self.equity)
        self._recent.append(unit_outcome)

    def dropped(self, key: Hashable) -> None:
        """Forget the trade ``key`` without an outcome (its entry never filled); a key not
        open here is ignored."""
        self._open.pop(key, None)

    def to_json(self) -> dict[str, Any]:
        """Return the account as JSON values (live: its keys are trade ids)."""
        return {
            "open": [[str(k), m] for k, m in self._open.items()],
            "recent": list(self._recent),
            "equity": self.equity,
            "peak": self.peak,
            "last_trade_ms": self.last_trade_ms,
        }

    def restore(self, doc: Mapping[str, Any]) -> None:
        """Take the state ``to_json`` wrote (the newest ``recent_trades`` of its record);
        anything malformed is a ``DataError`` and changes nothing."""
        try:
            opened: dict[Hashable, float] = {
                str(k): _finite(m, "multiplier") for k, m in doc["open"]
            }
            recent = [_finite(u, "outcome") for u in doc["recent"]]
            equity, peak = _finite(doc["equity"], "equity"), _finite(doc["peak"], "peak")
            last = doc["last_trade_ms"]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"the sizing account is malformed: {exc}") from exc
        if last is not None and (isinstance(last, bool) or not isinstance(last, int)):
            raise DataError(f"the sizing account's last_trade_ms is not a time: {last!r}")
        if min(opened.values(), default=1.0) <= 0 or peak < equity:
            raise DataError("the sizing account has a multiplier <= 0 or a peak below equity")
        self._open = opened
        self._recent = deque(recent, maxlen=self._recent.maxlen)
        self.equity, self.peak, self.last_trade_ms = equity, peak, last

    def features(self, decision_ms: int) -> npt.NDArray[np.float64]:
        """Return the account's features (``PORTFOLIO_FEATURES``) at ``decision_ms``."""
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


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} {value!r} is not a finite number")
    return float(value)


class SizingBook:
    """A training episode's account: outcomes known in advance, booked at their close."""

    def __init__(self, *, recent_trades: int = 20, idle_cap_days: float = 30.0) -> None:
        self.account = SizingAccount(recent_trades=recent_trades, idle_cap_days=idle_cap_days)
        self._closes: list[tuple[int, int, float]] = []  # close_ms, seq (the key), unit
        self._seq = 0

    @property
    def equity(self) -> float:
        """Return the realised equity (closed trades only)."""
        return self.account.equity

    @property
    def exposure(self) -> float:
        """Return the sum of the multipliers of the trades still open."""
        return self.account.exposure

    def observe(self, decision_ms: int) -> npt.NDArray[np.float64]:
        """Book the trades closed by ``decision_ms`` and return the account's features."""
        while self._closes and self._closes[0][0] <= decision_ms:
            _, seq, unit = heapq.heappop(self._closes)
            self.account.closed(seq, unit)
        return self.account.features(decision_ms)

    def open(self, decision_ms: int, close_ms: int, multiplier: float, unit_outcome: float) -> None:
        """Open a trade of ``multiplier`` (0: skipped, nothing is recorded)."""
        if multiplier <= 0:
            return
        self.account.opened(self._seq, decision_ms, multiplier)
        heapq.heappush(self._closes, (close_ms, self._seq, unit_outcome))
        self._seq += 1
