"""Hand-made candles and scripted signals for backtests whose every fill is known in advance."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pytest

from core.config import Settings, load_settings
from core.domain.market import CandleSeries
from core.signals.base import SignalFrame

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
T0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
FLAT = (100.0, 100.2, 99.8, 100.0)

Row = tuple[float, float, float, float]  # open, high, low, close


class RowScript:
    """Signals by row number: ``entries`` maps a row to +1 (long) or -1 (short)."""

    name = "row_script"
    warmup_candles = 1

    def __init__(self, entries: dict[int, int], exits: Sequence[int] = ()) -> None:
        self.entries = entries
        self.exits = set(exits)

    def compute(self, series: CandleSeries) -> SignalFrame:
        """Return the scripted signals (causal: row i reads only its own number)."""
        n = len(series)
        entry = np.zeros(n, dtype=np.int8)
        for row, side in self.entries.items():
            if row < n:
                entry[row] = side
        out = np.array([i in self.exits for i in range(n)], dtype=np.bool_)
        return SignalFrame(
            ts_ms=series.ts_ms,
            entry=entry,
            exit_long=out.copy(),
            exit_short=out.copy(),
            confidence=np.full(n, 0.5),
            atr=np.full(n, np.nan),
        )


def series(
    symbol: str,
    rows: Sequence[Row],
    *,
    tf: str = "1h",
    tf_ms: int = HOUR_MS,
    t0_ms: int = T0_MS,
) -> CandleSeries:
    """Return candles from ``(open, high, low, close)`` rows, volume 1000, one per ``tf``."""
    for row in rows:
        o, h, lo, c = row
        assert lo <= min(o, c) and h >= max(o, c), f"malformed test candle {row}"
    cols = [np.array([r[i] for r in rows], dtype=np.float64) for i in range(4)]
    ts = t0_ms + np.arange(len(rows), dtype=np.int64) * tf_ms
    return CandleSeries.from_columns(symbol, tf, ts, *cols, np.full(len(rows), 1000.0))


def settings_with(monkeypatch: pytest.MonkeyPatch, tmp_path: object, **env: str) -> Settings:
    """Return default settings plus ``env`` (QT__ names), ignoring the caller's environment.

    The brains are off unless ``env`` turns them on: a scripted market tests the engine's
    mechanics candle by candle, and a mode change the script did not plan would move them."""
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    env = {"QT__BRAINS__ENABLED": "false", **env}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


class AlwaysLong:
    """Wants to be long on every candle: positions are open whenever the market moves."""

    name = "always_long"
    warmup_candles = 1

    def compute(self, series: CandleSeries) -> SignalFrame:
        n = len(series)
        return SignalFrame(
            ts_ms=series.ts_ms,
            entry=np.ones(n, dtype=np.int8),
            exit_long=np.zeros(n, dtype=np.bool_),
            exit_short=np.zeros(n, dtype=np.bool_),
            confidence=np.full(n, 0.5),
            atr=np.full(n, np.nan),
        )
