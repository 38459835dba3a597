"""Calendar periods: a candle's result belongs to the day and month the candle opened in."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from core.analytics import BacktestInput, EquityCurve, compute_metrics
from tests.unit.analytics.builders import DAY_MS, HOUR_MS, trade


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_a_daily_candle_of_december_31_counts_in_december_and_on_its_own_day() -> None:
    # The curve as the backtest builds it: the opening mark at the first candle's open, then one
    # sample at each candle's close. The 2023-12-31 candle closes at 2024-01-01 00:00.
    dec30, dec31 = _ms(2023, 12, 30), _ms(2023, 12, 31)
    eq = EquityCurve.from_columns([dec30, dec31, dec31 + DAY_MS], [10_000.0, 9_994.0, 10_171.82])
    closed = trade("177.82", opened_ms=dec30, duration_ms=DAY_MS + 12 * HOUR_MS)  # Dec 31 noon
    m = compute_metrics(
        BacktestInput(
            curve=eq,
            starting_balance=Decimal(10_000),
            trades=[closed],
            fees_paid=Decimal(0),
            timeframe="1d",
        )
    )
    assert [(r.month, round(r.profit_abs, 2), r.trades) for r in m.monthly] == [
        ("2023-12", 171.82, 1)
    ]
    assert m.days == 2  # Dec 30 and Dec 31: two candles, two days
    assert (m.worst_day_abs, round(m.best_day_abs, 2)) == (-6.0, 177.82)


def test_a_year_of_hourly_candles_spans_its_days_and_months_exactly() -> None:
    start, end = _ms(2024, 1, 1), _ms(2025, 1, 1)
    ts = np.arange(start, end + 1, HOUR_MS, dtype=np.int64)  # opening mark + 8,784 closes
    equity = 100.0 + np.arange(len(ts), dtype=np.float64)
    m = compute_metrics(
        BacktestInput(
            curve=EquityCurve(ts_ms=ts, equity=equity),
            starting_balance=Decimal(100),
            trades=[],
            fees_paid=Decimal(0),
            timeframe="1h",
        )
    )
    assert m.days == 366  # 2024 is a leap year; the last close (2025-01-01 00:00) ends Dec 31
    assert (m.monthly[0].month, m.monthly[-1].month, len(m.monthly)) == ("2024-01", "2024-12", 12)
    assert m.monthly[-1].profit_abs == 31 * 24  # the last candle's +1 is December's
    assert sum(r.profit_abs for r in m.monthly) == m.total_profit_abs
