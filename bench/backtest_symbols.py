"""Backtest throughput as symbols are added: 1, 2, 5 and 10 synthetic symbols, 4 years of 1h.

Each symbol is priced on its own scale (0.0001 to 100,000) and printed on its own tick and
step, so every one trades by the rules inferred from its candles, as `qt backtest --data`
does. Prints, per symbol count, the simulation's wall time (median of --repeat runs, fast
replay, in-process), candles/s, and candles/s relative to one symbol: the issue's target is
that throughput per candle does not fall as symbols are added.

Usage: .venv/bin/python bench/backtest_symbols.py [--repeat 3] [--years 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T0 = 1_609_459_200_000  # 2021-01-01
# (start price, tick, step) of ten coins from a SHIB-like to a BTC-like price
COINS = [
    (0.0001, 1e-8, 1000.0),
    (100_000.0, 1e-1, 1e-6),
    (0.01, 1e-6, 10.0),
    (1_000.0, 1e-2, 1e-4),
    (1.0, 1e-4, 0.1),
    (0.001, 1e-7, 100.0),
    (10_000.0, 1e-1, 1e-5),
    (0.1, 1e-5, 1.0),
    (100.0, 1e-2, 0.001),
    (10.0, 1e-3, 0.01),
]


async def _run(count: int, years: int, repeat: int) -> tuple[float, int, int]:
    from bot.backtest import run_backtest
    from bot.market_rules import resolved
    from core.config import load_settings
    from core.market.synthetic import generate_candles, on_grid

    n = years * 8766
    series = {}
    for i, (price, tick, step) in enumerate(COINS[:count]):
        symbol = f"C{i}/USDT"
        raw = generate_candles(symbol, "1h", n, seed=5, start_ms=T0, start_price=price)
        series[symbol] = on_grid(raw, tick=tick, step=step)
    settings = load_settings(None, trading={"symbols": list(series)})
    rules = resolved(settings, series, series=series)
    times, trades, candles = [], 0, 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = await run_backtest(settings, series, rules=rules)
        times.append(time.perf_counter() - started)
        trades, candles = len(result.trades), result.candles
    return statistics.median(times), candles, trades


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--years", type=int, default=4)
    args = parser.parse_args()
    head = ("symbols", "candles", "trades", "median s", "candles/s", "vs 1", "ms/trade")
    print("{:>7} {:>9} {:>7} {:>9} {:>10} {:>6} {:>9}".format(*head))
    base = None
    for count in (1, 2, 5, 10):
        elapsed, candles, trades = asyncio.run(_run(count, args.years, args.repeat))
        rate = candles / elapsed
        base = base or rate
        per_trade = 1000 * elapsed / max(trades, 1)
        print(
            f"{count:>7} {candles:>9,} {trades:>7} {elapsed:>9.2f} {rate:>10,.0f} "
            f"{rate / base:>6.2f} {per_trade:>9.2f}"
        )


if __name__ == "__main__":
    main()
