"""compute_metrics end to end: known curves, monthly sums, buy and hold, edge cases, speed."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest

from core.analytics import (
    BacktestInput,
    EquityCurve,
    align_close,
    buy_and_hold_curve,
    compute_metrics,
    market_change_pct,
)
from core.domain.market import CandleSeries
from core.errors import DataError
from tests.unit.analytics.builders import (
    DAY_MS,
    HOUR_MS,
    T0_MS,
    bench,
    curve,
    daily_curve,
    make_input,
    trade,
)


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_daily_ratios_from_the_equity_curve() -> None:
    # Day ends 101, 99.99, 101.9898, 101.9898 from a start of 100: returns 1 %, -1 %, 2 %, 0 %.
    m = compute_metrics(make_input(daily_curve([101, 99.99, 101.9898, 101.9898])))
    assert m.days == 4
    assert m.sharpe == pytest.approx(0.005 / math.sqrt(0.0005 / 3) * math.sqrt(365))
    assert m.sortino == pytest.approx(math.sqrt(365))
    assert m.omega == pytest.approx(3.0)
    assert m.best_day_abs == pytest.approx(1.9998)
    assert m.worst_day_abs == pytest.approx(-1.01)
    assert (m.winning_days, m.losing_days, m.flat_days) == (2, 1, 1)
    assert m.daily_var_95_pct == pytest.approx(1.0)  # k = ceil(4 * 0.05) = 1: the -1 % day


def test_day_ends_use_the_last_sample_of_each_utc_day_and_carry_empty_days() -> None:
    ts = [T0_MS + 1 * HOUR_MS, T0_MS + 23 * HOUR_MS, T0_MS + 2 * DAY_MS + HOUR_MS]
    m = compute_metrics(make_input(curve(ts, [150, 110, 121])))
    assert m.days == 3  # day 2 has no sample and carries 110
    assert m.best_day_abs == pytest.approx(11.0)
    assert m.worst_day_abs == pytest.approx(0.0)
    assert (m.winning_days, m.flat_days) == (2, 1)


def test_cagr_over_exactly_one_year() -> None:
    m = compute_metrics(make_input(curve([T0_MS, T0_MS + 365 * DAY_MS], [100, 121])))
    assert m.cagr_pct == pytest.approx(21.0)
    assert m.total_profit_pct == pytest.approx(21.0)
    assert m.total_profit_abs == pytest.approx(21.0)
    assert m.calmar == math.inf  # no drawdown, positive CAGR


def test_calmar_is_cagr_over_max_drawdown() -> None:
    ts = [T0_MS, T0_MS + 100 * DAY_MS, T0_MS + 365 * DAY_MS]
    m = compute_metrics(make_input(curve(ts, [100, 80, 121])))
    assert m.drawdown.max_drawdown_pct == pytest.approx(20.0)
    assert m.calmar == pytest.approx(21.0 / 20.0)


def test_monthly_breakdown_sums_to_total_profit() -> None:
    ts = [_ms(2024, 1, 10), _ms(2024, 1, 31, 23), _ms(2024, 3, 15), _ms(2024, 3, 31, 12)]
    closes = [_ms(2024, 1, 5), _ms(2024, 1, 20), _ms(2024, 3, 3)]
    trades = [trade("1", trade_id=str(i), opened_ms=c - HOUR_MS) for i, c in enumerate(closes)]
    m = compute_metrics(make_input(curve(ts, [105, 110, 99, 121]), trades=trades))
    assert [r.month for r in m.monthly] == ["2024-01", "2024-02", "2024-03"]
    assert [r.profit_abs for r in m.monthly] == pytest.approx([10.0, 0.0, 11.0])
    assert [r.profit_pct for r in m.monthly] == pytest.approx([10.0, 0.0, 10.0])
    assert [r.trades for r in m.monthly] == [2, 0, 1]
    assert sum(r.profit_abs for r in m.monthly) == pytest.approx(m.total_profit_abs)


def test_always_long_buy_and_hold_matches_market_change_within_fees() -> None:
    closes = [100.0, 110.0, 99.0, 120.0, 132.0]
    fee = 0.001  # one entry fee, paid on day one
    equity = [100.0 * (1 - fee) * c / closes[0] for c in closes]
    inp = make_input(daily_curve(equity), benchmarks=[bench("BTC/USDT", closes)], fees="0.1")
    m = compute_metrics(inp)
    assert m.market_change_pct == pytest.approx(32.0)
    assert abs(m.total_profit_pct - m.market_change_pct) <= fee * 132.0 + 1e-9
    assert m.fees_paid == pytest.approx(0.1)
    hold = buy_and_hold_curve(inp.benchmarks, 100.0)
    np.testing.assert_allclose(hold, closes)


def test_market_change_averages_pairs_and_hold_waits_for_late_symbols() -> None:
    benches = [bench("A", [100, 105, 108, 110]), bench("B", [math.nan, 50, 45, 40])]
    assert market_change_pct(benches) == pytest.approx((10.0 - 20.0) / 2)
    hold = buy_and_hold_curve(benches, 100.0)
    np.testing.assert_allclose(hold, [100.0, 52.5 + 50.0, 54.0 + 45.0, 55.0 + 40.0])
    assert market_change_pct([]) is None and buy_and_hold_curve([], 100.0) is None


def test_align_close_takes_the_last_close_at_or_before() -> None:
    series = CandleSeries.from_columns("X", "1m", [0, 10, 20], *([[1, 2, 3]] * 4), [1, 1, 1])
    got = align_close(series, np.array([-5, 0, 5, 10, 25], dtype=np.int64))
    np.testing.assert_array_equal(got, [np.nan, 1.0, 1.0, 2.0, 3.0])


def test_flat_equity_and_no_trades() -> None:
    m = compute_metrics(make_input(daily_curve([100.0] * 10)))
    assert m.total_profit_abs == 0.0 and m.cagr_pct == pytest.approx(0.0)
    assert m.sharpe is None and m.sortino is None and m.omega is None and m.calmar is None
    assert m.daily_var_95_pct == 0.0
    assert m.drawdown.max_drawdown_pct == 0.0 and m.drawdown.start_ms is None
    assert m.trades.total == 0 and m.trades.profit_factor is None
    assert m.best_pair is None and m.per_pair == () and m.exit_reasons == ()
    assert m.market_change_pct is None


def test_fewer_than_two_days() -> None:
    ts = [T0_MS, T0_MS + HOUR_MS, T0_MS + 2 * HOUR_MS]
    m = compute_metrics(make_input(curve(ts, [100, 90, 95]), trades=[trade("-5")]))
    assert m.days == 1
    assert m.sharpe is None and m.sortino is None and m.omega is None
    assert m.daily_var_95_pct is None and m.daily_es_95_pct is None
    assert m.cagr_pct is None and m.calmar is None
    assert m.drawdown.max_drawdown_pct == pytest.approx(10.0)
    assert m.worst_pair == "BTC/USDT" and m.worst_pair_profit_abs == -5.0


@pytest.mark.parametrize(
    ("ts", "equity", "needle"),
    [
        ([0, 2, 1], [1, 1, 1], "strictly increase; row 2"),
        ([0, 1], [1.0], "ts_ms has 2 rows, equity has 1"),
        ([], [], "no samples"),
        ([0, 1], [1.0, math.nan], "finite; row 1"),
    ],
)
def test_bad_curves_are_rejected_with_the_row(ts, equity, needle) -> None:
    with pytest.raises(DataError, match=needle):
        EquityCurve.from_columns(ts, equity)


def test_bad_inputs_are_rejected() -> None:
    eq = daily_curve([100, 101])
    with pytest.raises(DataError, match="starting_balance must be > 0"):
        make_input(eq, start=0.0)
    with pytest.raises(DataError, match="unknown timeframe"):
        BacktestInput(curve=eq, starting_balance=Decimal(1), trades=[], fees_paid=0, timeframe="x")
    with pytest.raises(DataError, match="benchmark BTC: 3 closes for 2 equity samples"):
        make_input(eq, benchmarks=[bench("BTC", [1, 2, 3])])
    with pytest.raises(DataError, match="benchmark ETH: no positive finite close"):
        compute_metrics(make_input(eq, benchmarks=[bench("ETH", [math.nan, math.nan])]))


def test_seventy_thousand_candles_and_five_thousand_trades_in_well_under_a_second() -> None:
    rng = np.random.default_rng(7)
    n = 70_000
    ts = T0_MS + np.arange(n, dtype=np.int64) * 15 * 60_000
    equity = 1000.0 * np.cumprod(1.0 + rng.normal(0.0, 0.002, n))
    opens = rng.integers(0, n - 100, 5000)
    trades = [
        trade(
            f"{rng.normal(0.5, 5):.4f}",
            trade_id=str(i),
            symbol=("BTC/USDT", "ETH/USDT", "SOL/USDT")[i % 3],
            opened_ms=int(ts[o]),
            legs=[("TP1", "0.5"), ("SL", "-0.5")],
        )
        for i, o in enumerate(opens)
    ]
    closes = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.002, n))
    inp = make_input(
        EquityCurve(ts_ms=ts, equity=equity),
        start=1000.0,
        trades=trades,
        benchmarks=[bench("BTC/USDT", closes)],
    )
    started = time.perf_counter()
    m = compute_metrics(inp)
    elapsed_s = time.perf_counter() - started
    assert m.trades.total == 5000 and len(m.per_pair) == 3
    assert m.days == 730  # 69 999 quarter hours = 729.16 days, touching 730 UTC days
    assert sum(r.trades for r in m.monthly) == 5000
    assert elapsed_s < 0.5


def test_pairs_without_trades_are_listed_and_the_best_pair_is_one_that_made_money() -> None:
    eq = daily_curve([1000, 900, 160, 150])
    losing = [
        trade("-834.78", trade_id="a", symbol="BTC/USDT"),
        trade("-20", trade_id="b", symbol="ETH/USDT", opened_ms=T0_MS + DAY_MS),
    ]
    m = compute_metrics(
        make_input(eq, start=1000, trades=losing, symbols=("BTC/USDT", "ETH/USDT", "SOL/USDT"))
    )
    assert [(r.symbol, r.trades, r.total_profit_abs) for r in m.per_pair] == [
        ("ETH/USDT", 1, -20.0),
        ("BTC/USDT", 1, -834.78),
        ("SOL/USDT", 0, 0.0),  # no trades: listed, after the pairs that traded
    ]
    idle = m.per_pair[-1]
    assert (idle.win_rate_pct, idle.avg_profit_pct, idle.avg_duration_ms) == (None, None, None)
    # No pair made money, so none is "best"; the worst is the one that lost the most.
    assert (m.best_pair, m.best_pair_profit_abs) == (None, None)
    assert (m.worst_pair, m.worst_pair_profit_abs) == ("BTC/USDT", -834.78)

    mixed = [trade("25", symbol="ETH/USDT"), trade("-5", symbol="BTC/USDT")]
    m = compute_metrics(make_input(eq, start=1000, trades=mixed, symbols=("SOL/USDT",)))
    assert [r.symbol for r in m.per_pair] == ["ETH/USDT", "BTC/USDT", "SOL/USDT"]
    assert (m.best_pair, m.best_pair_profit_abs) == ("ETH/USDT", 25.0)
    assert (m.worst_pair, m.worst_pair_profit_abs) == ("BTC/USDT", -5.0)
    winners = compute_metrics(make_input(eq, start=1000, trades=[trade("3")]))
    assert (winners.best_pair, winners.worst_pair) == ("BTC/USDT", None)  # nothing lost
