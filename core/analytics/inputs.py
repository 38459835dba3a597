"""What a backtest hands to the metrics: the equity curve, the trades and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from core.analytics.benchmark import BenchmarkSeries
from core.domain.market import FloatArray, IntArray, timeframe_to_ms
from core.domain.trades import ClosedTrade
from core.errors import DataError


@dataclass(frozen=True, slots=True, kw_only=True)
class EquityCurve:
    """Account equity (quote currency) sampled once per candle; ``ts_ms`` strictly increasing."""

    ts_ms: IntArray
    equity: FloatArray

    def __post_init__(self) -> None:
        if self.ts_ms.ndim != 1 or self.equity.ndim != 1:
            raise DataError("equity curve: ts_ms and equity must be 1-D arrays")
        if len(self.ts_ms) != len(self.equity):
            raise DataError(
                f"equity curve: ts_ms has {len(self.ts_ms)} rows, equity has {len(self.equity)}"
            )
        if len(self.ts_ms) == 0:
            raise DataError("equity curve: received no samples; need at least one")
        if len(self.ts_ms) > 1 and not bool(np.all(np.diff(self.ts_ms) > 0)):
            bad = int(np.argmin(np.diff(self.ts_ms) > 0)) + 1
            raise DataError(
                f"equity curve: ts_ms must strictly increase; row {bad} was "
                f"{int(self.ts_ms[bad])} after {int(self.ts_ms[bad - 1])}"
            )
        if not bool(np.all(np.isfinite(self.equity))):
            bad = int(np.argmin(np.isfinite(self.equity)))
            raise DataError(
                f"equity curve: equity must be finite; row {bad} was {self.equity[bad]}"
            )

    def __len__(self) -> int:
        return len(self.ts_ms)

    @classmethod
    def from_columns(cls, ts_ms: npt.ArrayLike, equity: npt.ArrayLike) -> EquityCurve:
        """Build a curve from array-likes (Decimals are fine), converting to int64 / float64."""
        return cls(
            ts_ms=np.asarray(ts_ms, dtype=np.int64),
            equity=np.asarray(equity, dtype=np.float64),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestInput:
    """Everything the metrics need; build it once at the end of a backtest.

    ``starting_balance`` and ``fees_paid`` are in the quote currency (Decimal or float); trades
    may come in any order (they are sorted by close time). Each benchmark's ``close`` must have
    one value per equity sample.
    """

    curve: EquityCurve
    starting_balance: Decimal | float
    trades: Sequence[ClosedTrade]
    fees_paid: Decimal | float
    timeframe: str
    benchmarks: tuple[BenchmarkSeries, ...] = field(default=())
    funding: Decimal | float | None = None  # settled funding; None: not modelled
    # Every symbol the backtest ran on: the per-pair table lists those without trades too.
    symbols: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        try:
            timeframe_to_ms(self.timeframe)
        except ValueError as e:
            raise DataError(f"backtest input: {e}") from e
        if not float(self.starting_balance) > 0:
            raise DataError(f"starting_balance must be > 0, was {self.starting_balance}")
        for bench in self.benchmarks:
            if len(bench.close) != len(self.curve):
                raise DataError(
                    f"benchmark {bench.symbol}: {len(bench.close)} closes for "
                    f"{len(self.curve)} equity samples; align it with align_close()"
                )
