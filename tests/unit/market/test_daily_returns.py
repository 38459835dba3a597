"""Daily closes of candles (UTC days, intraday resampled) and a weighted portfolio's returns."""

from __future__ import annotations

import numpy as np
import pytest

from core.domain.market import CandleSeries
from core.errors import DataError
from core.market.daily_returns import DAY_MS, daily_closes, portfolio_returns, scaled_weights
from core.market.synthetic import generate_candles

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
H = 3_600_000


def _drop(series: CandleSeries, rows: np.ndarray) -> CandleSeries:
    keep = np.setdiff1d(np.arange(len(series)), rows)
    return CandleSeries.from_columns(
        series.symbol,
        series.timeframe,
        series.ts_ms[keep],
        series.open[keep],
        series.high[keep],
        series.low[keep],
        series.close[keep],
        series.volume[keep],
    )


def test_hourly_candles_give_each_utc_days_last_close_and_drop_an_unfinished_last_day() -> None:
    hourly = generate_candles("BTC/USDT", "1h", 24 * 5 + 7, seed=1, start_ms=T0)
    # day 2 loses its last two hours (a gap inside the day): it keeps the close it has
    hourly = _drop(hourly, np.array([24 * 2 + 22, 24 * 2 + 23]))
    c = daily_closes(hourly)
    assert c.day_ms.tolist() == [T0 + d * DAY_MS for d in range(5)]  # day 5 has 7 hours only
    assert c.partial_last_day and c.short_days == 1 and c.resampled_from == "1h"
    close_at = dict(zip(hourly.ts_ms.tolist(), hourly.close.tolist(), strict=True))
    assert c.close[0] == close_at[T0 + 23 * H]
    assert c.close[2] == close_at[T0 + (2 * 24 + 21) * H]  # 21:00, the day's last candle


def test_daily_candles_are_taken_as_they_are() -> None:
    daily = generate_candles("ETH/USDT", "1d", 10, seed=2, start_ms=T0)
    c = daily_closes(daily)
    assert c.day_ms.tolist() == daily.ts_ms.tolist() and c.close.tolist() == daily.close.tolist()
    assert not c.partial_last_day and c.resampled_from is None


def test_weekly_candles_and_nan_closes_are_refused() -> None:
    with pytest.raises(DataError, match="longer than a day"):
        daily_closes(generate_candles("BTC/USDT", "1w", 10, seed=1, start_ms=T0))
    daily = generate_candles("BTC/USDT", "1d", 10, seed=1, start_ms=T0)
    close = daily.close.copy()
    close[4] = np.nan
    broken = CandleSeries.from_columns(
        "BTC/USDT", "1d", daily.ts_ms, daily.open, daily.high, daily.low, close, daily.volume
    )
    with pytest.raises(DataError, match="1 close"):
        daily_closes(broken)


def test_a_portfolio_with_a_short_on_the_common_days_rebalanced_daily() -> None:
    btc = daily_closes(generate_candles("BTC/USDT", "1d", 30, seed=1, start_ms=T0))
    eth_all = generate_candles("ETH/USDT", "1d", 30, seed=2, start_ms=T0)
    eth = daily_closes(_drop(eth_all, np.array([10])))  # no ETH close on day 10
    p = portfolio_returns({"BTC/USDT": btc, "ETH/USDT": eth}, {"BTC/USDT": 3, "ETH/USDT": -1})
    assert p.weights == {"BTC/USDT": 0.75, "ETH/USDT": -0.25}
    assert len(p.returns) == 28 and p.spanning_gaps == 1
    day11 = int(np.flatnonzero(p.day_ms == T0 + 11 * DAY_MS)[0])
    b, e = btc.close, eth_all.close
    expected = 0.75 * (b[11] / b[9] - 1) - 0.25 * (e[11] / e[9] - 1)  # across the missing day
    assert p.returns[day11] == pytest.approx(expected)
    assert p.returns[0] == pytest.approx(0.75 * (b[1] / b[0] - 1) - 0.25 * (e[1] / e[0] - 1))


def test_bad_portfolios_are_one_clear_error() -> None:
    btc = daily_closes(generate_candles("BTC/USDT", "1d", 30, seed=1, start_ms=T0))
    with pytest.raises(DataError, match="no candles for SOL/USDT"):
        portfolio_returns({"BTC/USDT": btc}, {"SOL/USDT": 1.0})
    with pytest.raises(DataError, match="all zero"):
        scaled_weights({"BTC/USDT": 0.0})
    late = daily_closes(generate_candles("ETH/USDT", "1d", 5, seed=1, start_ms=T0 + 40 * DAY_MS))
    with pytest.raises(DataError, match="0 day\\(s\\) with a close in common"):
        portfolio_returns({"BTC/USDT": btc, "ETH/USDT": late}, {"BTC/USDT": 1, "ETH/USDT": 1})
