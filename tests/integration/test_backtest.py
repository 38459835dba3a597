"""The backtester end to end on synthetic data: fast replay parity, buy and hold, detail fills,
and metrics that agree with the trades."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from decimal import ROUND_DOWN
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from bot.backtest import BacktestResult, run_backtest
from bot.report import failures_summary, write_report
from bot.trading import provider_from
from core.config import Settings, load_settings
from core.domain.market import CandleSeries
from core.errors import DataError
from core.market.funding import FundingRates
from core.market.synthetic import DEFAULT_START_MS, generate_candles
from core.signals.base import SignalFrame, SignalProvider

HOUR_MS = 3_600_000
FIVE_MIN_MS = 300_000
PAIRS = ("BTC/USDT", "ETH/USDT")


# A position of exactly 50 units at the expected fill of 100.02 (100 plus 2 bps): a 5_001 USDT
# cap binds before the 2 % risk budget (200 / 2.2176 = 90 units).
ROUND_50 = {
    "QT__RISK__RISK_PER_TRADE": "0.02",
    "QT__RISK__MAX_POSITION_NOTIONAL": "5001",
    "QT__RISK__MAX_POSITION_PCT": "1",
}


def settings_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """Return settings from defaults plus ``env`` (QT__ names), ignoring the caller's env.

    The brains are off unless ``env`` turns them on: these test the engine's replay, fills and
    metrics (tests/integration/test_backtest_brains.py runs both replays with the brains)."""
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    env = {"QT__BRAINS__ENABLED": "false", **env}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


class EnterOnce:
    """Enter long on the first candle of the series; never exit."""

    name = "enter_once"
    warmup_candles = 1

    def __init__(self, entry_ts_ms: int) -> None:
        self.entry_ts_ms = entry_ts_ms

    def compute(self, series: CandleSeries) -> SignalFrame:
        n = len(series)
        return SignalFrame(
            ts_ms=series.ts_ms,
            entry=(series.ts_ms == self.entry_ts_ms).astype(np.int8),
            exit_long=np.zeros(n, dtype=np.bool_),
            exit_short=np.zeros(n, dtype=np.bool_),
            confidence=np.full(n, 0.5),
            atr=np.full(n, np.nan),
        )


def synthetic(n: int = 3000, seed: int = 7) -> dict[str, CandleSeries]:
    return {sym: generate_candles(sym, "1h", n, seed=seed) for sym in PAIRS}


# --- a. fast replay parity --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [7, 2024])
async def test_fast_replay_parity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seed: int
) -> None:
    settings = settings_with(monkeypatch, tmp_path)
    series = synthetic(seed=seed)
    fast = await run_backtest(settings, series, fast=True)
    full = await run_backtest(settings, series, fast=False)

    assert len(full.trades) >= 10, "too few trades for the parity check to mean anything"
    assert [t.trade_id for t in fast.trades] == [t.trade_id for t in full.trades]
    assert fast.trades == full.trades  # amounts, prices, fees, pnl, every leg
    assert fast.fills == full.fills
    assert fast.open_positions == full.open_positions
    assert np.array_equal(fast.curve.equity, full.curve.equity)
    assert fast.metrics == full.metrics
    assert fast.candles == full.candles == 2 * 3000
    # both symbols traded, and the exits were a mix (the replay had stops and signals to skip)
    assert {t.symbol for t in full.trades} == set(PAIRS)
    assert len({t.exit_reason for t in full.trades}) >= 2


async def test_fast_replay_parity_from_a_later_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(monkeypatch, tmp_path, QT__RISK__ALLOW_SHORT="false")
    series = synthetic(n=2000, seed=99)
    start_ms = DEFAULT_START_MS + 500 * HOUR_MS
    end_ms = DEFAULT_START_MS + 1800 * HOUR_MS
    fast = await run_backtest(settings, series, start_ms=start_ms, end_ms=end_ms)
    full = await run_backtest(settings, series, start_ms=start_ms, end_ms=end_ms, fast=False)
    assert fast.trades == full.trades
    assert fast.fills == full.fills
    assert all(f.ts_ms >= start_ms for f in full.fills)
    assert all(f.ts_ms < end_ms for f in full.fills)


# --- b. always long vs buy and hold -----------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "lowest"),
    [(12, 0.94), (1, 0.82)],  # a rising market (+46 %) and a falling one (-13 %)
)
async def test_always_long_tracks_buy_and_hold(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seed: int, lowest: float
) -> None:
    # Risk is capped at 20 % of equity per trade, so to put (almost) all cash in, the stop must
    # be at most 20 % away: 19 %, with data chosen (and checked) never to get there. The
    # take-profits are out of reach (10x to 11x the entry).
    settings = settings_with(
        monkeypatch,
        tmp_path,
        QT__EXITS__TP_PCTS="[900, 950, 1000]",
        QT__EXITS__STOP_PCT="19",
        QT__RISK__RISK_PER_TRADE="0.2",
        QT__RISK__MAX_POSITION_PCT="1",
    )
    symbol = "BTC/USDT"
    series = generate_candles(symbol, "1h", 3000, seed=seed)
    close0 = D(repr(float(series.close[0])))
    assert series.low[1:].min() / series.close[0] > lowest > 0.81, "the stop must stay unhit"
    assert series.high.max() < 10 * series.close[0], "the take-profits must stay unhit"

    result = await run_backtest(
        settings, {symbol: series}, provider=EnterOnce(int(series.ts_ms[0]))
    )

    assert result.trades == ()
    assert result.open_positions == 1
    [fill] = result.fills
    # Sizing: risk 10_000 * 0.2 / (19 % of the price) is more than the cash allows, so cash
    # binds: what 10_000 less the 0.1 % price buffer pays at the expected fill (close0 + 2 bps)
    # with its 0.1 % fee, rounded down to the 0.00001 step.
    step = settings.market.amount_step
    slip = settings.paper.slippage_bps / D(10_000)  # 2 bps
    fee = settings.paper.taker_fee  # 0.1 %
    per_unit = close0 * (1 + slip) * (1 + fee)
    amount = (D(10_000) * D("0.999") / per_unit / step).to_integral_value(ROUND_DOWN) * step
    assert fill.amount == amount
    # Synthetic candles open at the previous close: the market buy fills at close0 + 2 bps.
    assert fill.price == close0 * (1 + slip)
    assert fill.fee == amount * fill.price * fee

    m = result.metrics
    assert m.market_change_pct is not None
    market = m.market_change_pct / 100
    assert market == pytest.approx(float(series.close[-1] / series.close[0] - 1), rel=1e-12)
    ret = m.total_profit_pct / 100
    # Exactly: return = f * (market + 1) - f * (1 + slip) * (1 + fee), with f = amount * close0
    # / 10_000 the invested fraction (~0.998). So return - market = -(1 - f) * market - f *
    # cost, with cost = (1 + slip) * (1 + fee) - 1 = 0.12002 %: the entry's slippage and fee,
    # plus the cash that does not follow the market (what pays them, and the 0.1 % buffer).
    f = float(amount * close0 / D(10_000))
    cost = float((1 + slip) * (1 + fee) - 1)
    assert 0.9975 < f <= 0.998
    assert ret == pytest.approx(f * (market + 1) - f * (1 + cost), abs=1e-9)
    # The honest tolerance: the entry costs on what was invested, plus the cash held back.
    tolerance = f * cost + (1 - f) * abs(market)
    assert abs(ret - market) <= tolerance + 1e-12
    assert tolerance < 0.0012 + 0.0025 * abs(market) + 1e-12


# --- c. detail candles ------------------------------------------------------------------------


def five_minute_path(closes_by_hour: list[list[float]], start_ms: int) -> CandleSeries:
    """Return 5m candles (12 per hour) opening at the previous close, with 0.05 wicks."""
    closes = np.array([c for hour in closes_by_hour for c in hour], dtype=np.float64)
    assert all(len(hour) == 12 for hour in closes_by_hour)
    open_ = np.concatenate(([closes[0]], closes[:-1]))
    n = len(closes)
    return CandleSeries.from_columns(
        "BTC/USDT",
        "5m",
        start_ms + np.arange(n, dtype=np.int64) * FIVE_MIN_MS,
        open_,
        np.maximum(open_, closes) + 0.05,
        np.minimum(open_, closes) - 0.05,
        closes,
        np.ones(n),
    )


def aggregate_hourly(five: CandleSeries) -> CandleSeries:
    """Return the 1h candles made of 12 consecutive 5m candles each."""
    k = 12
    hours = len(five) // k
    shape = (hours, k)
    return CandleSeries.from_columns(
        five.symbol,
        "1h",
        five.ts_ms[::k][:hours],
        five.open.reshape(shape)[:, 0],
        five.high.reshape(shape).max(axis=1),
        five.low.reshape(shape).min(axis=1),
        five.close.reshape(shape)[:, -1],
        five.volume.reshape(shape).sum(axis=1),
    )


FLAT = [100.0] * 12
# Hour 2: up through TP3 (105.22) in the first four 5m candles, then down through the stop
# (98.02). The hourly candle touches both; only the 5m path says which came first.
UP_THEN_DOWN = [101.0, 102.5, 104.0, 105.5, 104.0, 102.0, 100.0, 98.5, 97.5, 97.6, 97.6, 97.5]
AFTER = [97.5] * 12


@pytest.mark.parametrize("fast", [True, False])
async def test_detail_candles_decide_which_exit_came_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fast: bool
) -> None:
    settings = settings_with(monkeypatch, tmp_path, **ROUND_50)
    start = DEFAULT_START_MS
    five = five_minute_path([FLAT, FLAT, UP_THEN_DOWN, AFTER], start)
    hourly = aggregate_hourly(five)
    symbol = five.symbol
    assert hourly.high[2] >= 105.22 and hourly.low[2] <= 98.02  # both exits in one hour
    assert hourly.open[2] == 100.0 and hourly.close[1] == 100.0

    plain = await run_backtest(settings, {symbol: hourly}, provider=EnterOnce(start), fast=fast)
    detail = await run_backtest(
        settings,
        {symbol: hourly},
        detail={symbol: five},
        provider=EnterOnce(start),
        fast=fast,
    )

    # The same entry: decided at hour 0's close (100), 50 units filled at 100 + 2 bps.
    for result in (plain, detail):
        [trade] = result.trades
        assert (trade.amount, trade.entry_price) == (D(50), D("100.02"))
        assert trade.opened_ms == start + HOUR_MS
        assert result.open_positions == 0

    # Hourly candles only: the conservative rule fills the stop first, 98.02 - 2 bps.
    [lost] = plain.trades
    assert [(leg.reason, leg.price) for leg in lost.legs] == [("SL", D("98.000396"))]
    assert lost.pnl == D("-110.8812198")
    # 5m candles: the path reached the three take-profits before the stop.
    [won] = detail.trades
    assert [(leg.reason, leg.price, leg.amount) for leg in won.legs] == [
        ("TP1", D("101.97"), D(15)),
        ("TP2", D("103.27"), D(15)),
        ("TP3", D("105.22"), D(20)),
    ]
    # the fills carry the 5m candle they happened in
    assert [leg.ts_ms for leg in won.legs] == [
        start + 2 * HOUR_MS + i * FIVE_MIN_MS for i in (1, 2, 3)
    ]
    assert won.exit_reason == "TP3"
    assert won.pnl == D("171.81600")
    assert detail.metrics.final_balance == pytest.approx(10_171.816, abs=1e-9)
    assert plain.metrics.final_balance == pytest.approx(10_000 - 110.8812198, abs=1e-9)


# --- d. metrics agree with the trades ---------------------------------------------------------


def assert_consistent(result: BacktestResult, starting: D) -> None:
    m = result.metrics
    assert m.trades.total == len(result.trades)
    assert m.trades.wins + m.trades.losses + m.trades.draws == len(result.trades)
    assert result.open_positions == 0, "the check below needs every position closed"
    pnl = sum((t.pnl for t in result.trades), D(0))
    profit = m.final_balance - float(starting)
    assert math.isclose(float(pnl), profit, rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(m.total_profit_abs, profit, rel_tol=1e-12)
    fees = sum((f.fee for f in result.fills), D(0))
    assert m.fees_paid == pytest.approx(float(fees), rel=1e-12)
    assert float(sum((t.fees for t in result.trades), D(0))) == pytest.approx(float(fees))
    by_pair: Mapping[str, float] = {row.symbol: row.total_profit_abs for row in m.per_pair}
    for symbol in {t.symbol for t in result.trades}:
        mine = sum((t.pnl for t in result.trades if t.symbol == symbol), D(0))
        assert by_pair[symbol] == pytest.approx(float(mine), rel=1e-9)
    assert sum(row.trades for row in m.per_pair) == len(result.trades)


async def test_metrics_agree_with_the_trades(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(monkeypatch, tmp_path)
    result = await run_backtest(settings, synthetic(seed=7))
    assert len(result.trades) >= 10
    assert_consistent(result, settings.paper.starting_balance)
    # every fill belongs to a closed trade's entry or one of its legs
    legs = sum(len(t.legs) for t in result.trades)
    assert len(result.fills) == len(result.trades) + legs


# Hour 2: up through TP1 (101.97) only, then down through the stop.
TP1_THEN_DOWN = [101.0, 102.5, 101.0, 100.0, 99.0, 98.5, 97.5, 97.6, 97.6, 97.5, 97.5, 97.5]


async def test_detail_candles_take_profit_then_stop_in_one_hour(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(monkeypatch, tmp_path, **ROUND_50)
    start = DEFAULT_START_MS
    five = five_minute_path([FLAT, FLAT, TP1_THEN_DOWN, AFTER], start)
    hourly = aggregate_hourly(five)
    symbol = five.symbol
    plain = await run_backtest(settings, {symbol: hourly}, provider=EnterOnce(start))
    detail = await run_backtest(
        settings, {symbol: hourly}, detail={symbol: five}, provider=EnterOnce(start)
    )
    [lost] = plain.trades
    assert [(leg.reason, leg.amount) for leg in lost.legs] == [("SL", D(50))]
    # 5m: TP1 takes 15 first; the stop (reduce-only) closes only the 35 that are left.
    [mixed] = detail.trades
    assert [(leg.reason, leg.amount) for leg in mixed.legs] == [("TP1", D(15)), ("TSL", D(35))]
    assert mixed.legs[0].price == D("101.97")
    assert mixed.legs[0].pnl == D("26.22015")
    # The engine reacted to TP1 inside the hour: the rest left at the break-even stop (100.23),
    # not at the original 98.02 stop.
    assert mixed.legs[1].price > D("99.9")
    assert mixed.amount == D(50)
    assert detail.open_positions == 0
    assert detail.metrics.final_balance == pytest.approx(10_000 + float(mixed.pnl), abs=1e-9)
    assert mixed.pnl > lost.pnl


# --- e. funding on perps ------------------------------------------------------------------------


async def test_funding_is_settled_on_the_open_perp_position_in_fast_and_full_replay(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A long held throughout pays amount * close * rate at every 8-hour funding time after its
    entry; the payments are in the trade-less equity, the metrics and (fast == full)."""
    settings = settings_with(
        monkeypatch,
        tmp_path,
        QT__EXCHANGE__MARKET_TYPE="perp",
        QT__EXITS__TP_PCTS="[900, 950, 1000]",
        QT__EXITS__STOP_PCT="19",
    )
    symbol = "BTC/USDT"
    series = generate_candles(symbol, "1h", 400, seed=12)
    h8 = 8 * HOUR_MS
    first = int(series.ts_ms[0])
    times = [t for t in range(first - first % h8 + h8, int(series.ts_ms[-1]) + HOUR_MS, h8)]
    rate = D("0.0001")
    funding = {symbol: FundingRates(symbol=symbol, ts_ms=tuple(times), rates=(rate,) * len(times))}
    provider = EnterOnce(first)

    fast = await run_backtest(settings, {symbol: series}, provider=provider, funding=funding)
    full = await run_backtest(
        settings, {symbol: series}, provider=provider, funding=funding, fast=False
    )

    [fill] = fast.fills  # the entry, at the open of candle 1; never closed
    closes = dict(zip(series.ts_ms.tolist(), series.close.tolist(), strict=True))
    paid = [
        -fill.amount * D(repr(closes[t - HOUR_MS])) * rate for t in times if t > fill.ts_ms
    ]  # funding at t settles at the close of the candle ending at t
    assert fast.funding_events == full.funding_events == len(paid) > 40
    assert fast.metrics.funding == pytest.approx(float(sum(paid, D(0))), rel=1e-12)
    assert fast.metrics.funding < 0
    assert fast.fills == full.fills
    assert np.array_equal(fast.curve.equity, full.curve.equity)
    assert fast.metrics == full.metrics
    # the equity counts each payment from its funding time on
    without = await run_backtest(settings, {symbol: series}, provider=provider)
    assert without.metrics.funding is None  # not modelled
    drift = fast.curve.equity[-1] - without.curve.equity[-1]
    assert drift == pytest.approx(float(sum(paid, D(0))), rel=1e-9)


async def test_funding_is_refused_on_spot_and_for_symbols_without_candles(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    series = synthetic(n=200)
    rates = FundingRates(symbol="SOL/USDT", ts_ms=(DEFAULT_START_MS,), rates=(D("0.0001"),))
    spot = settings_with(monkeypatch, tmp_path)
    with pytest.raises(DataError, match="funding rates apply to perps"):
        await run_backtest(spot, series, funding={"SOL/USDT": rates})
    perp = settings_with(monkeypatch, tmp_path, QT__EXCHANGE__MARKET_TYPE="perp")
    with pytest.raises(DataError, match="funding rates for SOL/USDT, which has no candles"):
        await run_backtest(perp, series, funding={"SOL/USDT": rates})


async def test_funding_counts_in_the_pnl_of_each_trade(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(monkeypatch, tmp_path, QT__EXCHANGE__MARKET_TYPE="perp")
    series = synthetic(seed=7)
    times = tuple(range(DEFAULT_START_MS, DEFAULT_START_MS + 3000 * HOUR_MS, 8 * HOUR_MS))
    funding = {
        s: FundingRates(symbol=s, ts_ms=times, rates=(D("0.0003"),) * len(times)) for s in PAIRS
    }
    result = await run_backtest(settings, series, funding=funding)
    full = await run_backtest(settings, series, funding=funding, fast=False)
    assert result.trades == full.trades and result.metrics == full.metrics
    assert len(result.trades) >= 10 and result.open_positions == 0
    assert any(t.funding != 0 for t in result.trades)
    assert_consistent(result, settings.paper.starting_balance)  # pnl sums to the equity change
    total = sum((t.funding for t in result.trades), D(0))
    assert result.metrics.funding == pytest.approx(float(total), rel=1e-12)


# --- a symbol whose cycle fails ---------------------------------------------------------------


class BrokenFor:
    """The configured provider, but raising for ``symbol`` on histories ending in a window (a
    bug that shows on some candles of one symbol only)."""

    def __init__(self, inner: SignalProvider, symbol: str, from_ms: int, to_ms: int) -> None:
        self.inner, self.symbol, self.from_ms, self.to_ms = inner, symbol, from_ms, to_ms
        self.name, self.warmup_candles = inner.name, inner.warmup_candles

    def compute(self, series: CandleSeries) -> SignalFrame:
        last = int(series.ts_ms[-1])
        if series.symbol == self.symbol and self.from_ms <= last < self.to_ms:
            raise ZeroDivisionError("float division by zero")
        return self.inner.compute(series)


async def test_a_symbol_whose_signals_raise_is_paused_counted_and_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The provider raises on ETH's series (a backtest computes it once, whole): every ETH
    cycle fails, ETH never enters, BTC trades on; one pause is counted, fast and full alike."""
    settings = settings_with(monkeypatch, tmp_path)
    series = synthetic(n=1500, seed=7)
    end = int(series["ETH/USDT"].ts_ms[-1])
    broken = BrokenFor(provider_from(settings), "ETH/USDT", end, end + 1)
    fast = await run_backtest(settings, series, provider=broken)
    full = await run_backtest(settings, series, provider=broken, fast=False)

    assert fast.trades == full.trades and fast.fills == full.fills
    assert {t.symbol for t in full.trades} == {"BTC/USDT"}
    assert len(full.trades) >= 3
    failed = [(f.symbol, f.candle_open_ms, f.strikes, f.error) for f in fast.symbol_failures]
    assert failed == [
        (f.symbol, f.candle_open_ms, f.strikes, f.error) for f in full.symbol_failures
    ]
    assert failed == [
        (
            "ETH/USDT",
            int(series["ETH/USDT"].ts_ms[0]),
            1,
            "ZeroDivisionError: float division by zero",
        )
    ]
    files = write_report(
        fast.metrics,
        fast.trades,
        fast.curve,
        tmp_path,
        run_name="broken",
        charts=False,
        symbol_failures=fast.symbol_failures,
    )
    [reported] = json.loads(files.json_path.read_text())["symbol_failures"]
    assert (reported["symbol"], reported["strikes"]) == ("ETH/USDT", 1)
    assert "ETH/USDT 1x" in failures_summary(fast.symbol_failures)
