"""Candles read back from storage for trading, checked by the rules files are checked by.

Candles are validated when they are written (imports, downloads, the live feed), but a database
an earlier version wrote can hold rows today's rules refuse: its ``--repair`` kept a mistyped
2027 candle at the end of a series, which a backtest then ran to, and which, seeded into the
signals of ``qt run``, made every new candle look older than the newest one, so no signal came
again. A load for trading therefore leaves out the rows that break a rule (the ``future`` one
above all, hence ``now_ms``) and says so in one line, naming how to delete them for good.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.domain.enums import CandleMarket
from core.domain.market import CandleSeries
from core.market.validation import ValidationReport, repair_candles
from core.ports import CandleRepo

REPAIR_HINT = "`qt data check --repair` deletes such rows"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedCandles:
    """The stored candles that pass every rule, and the open times of those that did not."""

    series: CandleSeries
    report: ValidationReport
    dropped_ms: npt.NDArray[np.int64]

    @property
    def notice(self) -> str | None:
        """Return one line on the rows left out, or None when there were none."""
        n = len(self.dropped_ms)
        if n == 0:
            return None
        rules = ", ".join(f"{rule}={count}" for rule, count in self.report.dropped)
        return (
            f"{self.report.source}: {n} stored candle{'s' if n > 1 else ''} left out, breaking "
            f"a rule ({rules}); {REPAIR_HINT}"
        )


def series_name(exchange: str, market: CandleMarket, symbol: str, timeframe: str) -> str:
    """Return how messages name a stored series (``binance spot BTC/USDT 1h``)."""
    return f"{exchange} {market} {symbol} {timeframe}"


def check_stored(series: CandleSeries, *, source: str, now_ms: int) -> CheckedCandles:
    """Return ``series`` (as stored: sorted, distinct) without the rows that break a rule."""
    kept, report = repair_candles(series, source=source, now_ms=now_ms)
    dropped = series.ts_ms[~np.isin(series.ts_ms, kept.ts_ms)] if report.dropped_rows else None
    return CheckedCandles(
        series=kept,
        report=report,
        dropped_ms=np.empty(0, dtype=np.int64) if dropped is None else dropped,
    )


async def load_checked(
    repo: CandleRepo,
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    now_ms: int,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> CheckedCandles:
    """Load ``[start_ms, end_ms)`` of a stored series and check it (``now_ms``: the wall
    clock, or the demo's market time, which the core does not read)."""
    series = await repo.load(exchange, symbol, timeframe, start_ms, end_ms)
    where = series_name(exchange, repo.market, symbol, timeframe)
    return check_stored(series, source=where, now_ms=now_ms)
