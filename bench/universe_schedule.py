"""How long a backtest takes to select its dynamic universe: 50 synthetic symbols x 4 years of
1h candles, the top 10 at every refresh (hourly and daily), point in time.

Prints the wall time of ``universe_schedule`` (median of --repeat runs) per refresh interval.

Usage: .venv/bin/python bench/universe_schedule.py [--symbols 50] [--years 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOUR_MS = 3_600_000


def main() -> None:
    from core.market.synthetic import generate_candles
    from core.market.universe import DAY_MS, UniverseRules
    from core.market.universe_history import refresh_times, universe_schedule

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--years", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.years * 365 * 24
    series = {
        f"S{i:03d}/USDT": generate_candles(f"S{i:03d}/USDT", "1h", n, seed=i)
        for i in range(args.symbols)
    }
    start = int(next(iter(series.values())).ts_ms[0]) + 30 * DAY_MS
    end = start - 30 * DAY_MS + n * HOUR_MS
    rules = UniverseRules(top_n=10, quote="USDT", min_listing_days=30)
    print(f"{args.symbols} symbols x {n:,} 1h candles, top 10")
    for hours in (1, 24):
        times = refresh_times(start, end, hours * HOUR_MS)
        runs = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            universe_schedule(series, rules, times)
            runs.append(time.perf_counter() - began)
        took = statistics.median(runs)
        print(f"refresh every {hours:>2} h: {len(times):>6,} refreshes in {took:.2f} s")


if __name__ == "__main__":
    main()
