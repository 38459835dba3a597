"""A universe over history is point in time: a refresh at R ranks only candles closed by R."""

from __future__ import annotations

import numpy as np

from core.domain.market import CandleSeries
from core.market.universe import DAY_MS, Candidate, UniverseRules
from core.market.universe_history import candidates_at, refresh_times, universe_schedule

T0 = 1_704_067_200_000  # 2024-01-01
HOUR = 3_600_000
R = T0 + 40 * DAY_MS  # a refresh time


def series(
    symbol: str, start_ms: int, hours: int, volume: float | np.ndarray, price: float = 1.0
) -> CandleSeries:
    ts = start_ms + np.arange(hours, dtype=np.int64) * HOUR
    close = np.full(hours, price)
    vol = np.broadcast_to(np.asarray(volume, dtype=np.float64), (hours,))
    return CandleSeries.from_columns(symbol, "1h", ts, close, close, close, close, vol)


def rules(top_n: int = 1, **kw: float) -> UniverseRules:
    return UniverseRules(top_n=top_n, quote="USDT", **kw)  # type: ignore[arg-type]


def rising_after(refresh_ms: int) -> CandleSeries:
    """B trades little until the candle that opens at ``refresh_ms`` (it closes an hour after
    the refresh), then more than anyone."""
    ts = T0 + np.arange(60 * 24, dtype=np.int64) * HOUR
    return series("B/USDT", T0, len(ts), np.where(ts >= refresh_ms, 1e9, 10.0))


def test_volume_that_rises_only_after_the_refresh_does_not_select_at_it() -> None:
    data = {"A/USDT": series("A/USDT", T0, 60 * 24, 100.0), "B/USDT": rising_after(R)}
    assert universe_schedule(data, rules(), [R, R + HOUR, R + DAY_MS]) == [
        (R, ("A/USDT",)),  # B's first big candle closes at R + 1h: not seen at R
        (R + HOUR, ("B/USDT",)),  # now it has closed
        (R + DAY_MS, ("B/USDT",)),
    ]


def test_the_trailing_window_is_the_last_24_hours_of_closed_candles() -> None:
    data = {"A/USDT": series("A/USDT", T0, 60 * 24, 3.0, price=2.0)}
    [a] = candidates_at(data, R)
    assert a.quote_volume == 24 * 3.0 * 2.0  # volume x close over 24 candles
    assert a.last_price == 2.0 and a.listed_ms == T0


def test_a_symbol_that_has_not_started_or_is_too_young_cannot_be_selected() -> None:
    data = {
        "OLD/USDT": series("OLD/USDT", T0, 60 * 24, 1.0),
        "LATER/USDT": series("LATER/USDT", R, 24, 1e9),  # its first candle closes after R
        "YOUNG/USDT": series("YOUNG/USDT", R - 10 * DAY_MS, 40 * 24, 1e9),
    }
    assert [c.symbol for c in candidates_at(data, R)] == ["OLD/USDT", "YOUNG/USDT"]
    assert universe_schedule(data, rules(min_listing_days=30), [R, R + 20 * DAY_MS]) == [
        (R, ("OLD/USDT",)),
        (R + 20 * DAY_MS, ("YOUNG/USDT",)),  # 30 days of candles by then
    ]


def test_a_symbol_whose_candles_ended_is_no_candidate() -> None:
    data = {"GONE/USDT": series("GONE/USDT", T0, 10 * 24, 1e9)}
    assert candidates_at(data, T0 + 11 * DAY_MS + HOUR) == []


def test_refresh_times_start_at_the_start_and_stay_before_the_end() -> None:
    assert refresh_times(0, 10, 4) == [0, 4, 8]
    assert refresh_times(5, 5, 4) == [5]


def naive(series: dict[str, CandleSeries], t: int, rules: UniverseRules) -> tuple[str, ...]:
    """The rule written out candle by candle, as a reference."""
    from core.market.universe import select_universe

    found = []
    for symbol, s in series.items():
        rows = [i for i, ts in enumerate(s.ts_ms.tolist()) if t - DAY_MS <= ts and ts + HOUR <= t]
        if rows:
            found.append(
                Candidate(
                    symbol=symbol,
                    quote="USDT",
                    quote_volume=sum(float(s.volume[i] * s.close[i]) for i in rows),
                    last_price=float(s.close[rows[-1]]),
                    listed_ms=int(s.ts_ms[0]),
                )
            )
    return select_universe(found, rules, t)


def test_the_schedule_is_the_rule_applied_at_each_refresh_on_random_markets() -> None:
    rng = np.random.default_rng(11)
    data = {}
    for k in range(12):
        start = T0 + int(rng.integers(0, 20)) * DAY_MS
        hours = int(rng.integers(24, 40 * 24))
        keep = rng.random(hours) > 0.1  # holes in the data
        ts = (start + np.arange(hours, dtype=np.int64) * HOUR)[keep]
        close = rng.uniform(0.001, 5.0, len(ts))
        volume = np.round(rng.uniform(0, 1e4, len(ts)))
        if k in (3, 4):  # two symbols that traded exactly alike: a tie, broken by symbol
            ts, close, volume = (
                data["S00/USDT"].ts_ms,
                data["S00/USDT"].close,
                data["S00/USDT"].volume,
            )
        sym = f"S{k:02d}/USDT"
        data[sym] = CandleSeries.from_columns(sym, "1h", ts, close, close, close, close, volume)
    times = refresh_times(T0 + 5 * DAY_MS, T0 + 60 * DAY_MS, 7 * HOUR)
    for r in (rules(top_n=4), rules(top_n=3, min_price=0.5, min_listing_days=10)):
        got = universe_schedule(data, r, times)
        assert got == [(t, naive(data, t, r)) for t in times]
        assert any(len(members) == r.top_n for _, members in got)


def test_a_refresh_between_two_closes_still_sees_the_whole_window() -> None:
    data = {"A/USDT": series("A/USDT", T0, 60 * 24, 3.0, price=2.0)}
    [a] = candidates_at(data, R + 6 * 60_000)  # six minutes after a close
    assert a.quote_volume == 24 * 3.0 * 2.0  # all 24 candles, not 23
    day = 24 * HOUR
    ts = T0 + np.arange(30, dtype=np.int64) * day
    ones = np.ones(30)
    daily = CandleSeries.from_columns("D/USDT", "1d", ts, ones, ones, ones, ones, ones * 5)
    [d] = candidates_at({"D/USDT": daily}, T0 + 10 * day + 12 * HOUR)  # at noon
    assert d.quote_volume == 5.0  # the day that closed at midnight (before: nothing, no pick)
