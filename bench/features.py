"""Feature-set speed and memory: 10 synthetic symbols x 4 years of 1h, and one of 200k candles.

Symbols are priced 0.0001 to 100,000 (the set is scale-free, so the price does not matter to
the figures). Prints, for the base set and for the set with the 4h block and a reference
series (the 100,000 coin as "BTC"): wall time over all symbols (median of --repeat), the peak
memory numpy allocated while computing (tracemalloc) and what the matrices hold, and the
number of columns; then the time for 200,000 candles of one symbol, and the process's peak RSS.

Usage: .venv/bin/python bench/features.py [--repeat 3] [--years 4]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T0 = 1_609_459_200_000  # 2021-01-01
PRICES = (0.0001, 100_000.0, 0.01, 1_000.0, 1.0, 0.001, 10_000.0, 0.1, 100.0, 10.0)
MIB = 1024 * 1024


def _run(series: list, config, reference, repeat: int) -> tuple[float, int, int, int]:
    from core.ml.features import compute_features

    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        for s in series:
            compute_features(s, config, reference=reference)
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    kept = [compute_features(s, config, reference=reference) for s in series]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held = sum(m.values.nbytes for m in kept)
    return statistics.median(times), peak, held, len(kept[0].columns)


def main() -> None:
    from core.market.synthetic import generate_candles
    from core.ml.features import FeatureConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--years", type=int, default=4)
    args = parser.parse_args()
    n = args.years * 8766
    series = [
        generate_candles(f"C{i}/USDT", "1h", n, seed=5, start_ms=T0, start_price=p)
        for i, p in enumerate(PRICES)
    ]
    reference = generate_candles("BTC/USDT", "1h", n, seed=5, start_ms=T0, start_price=1e5)
    print(f"{len(series)} symbols x {n:,} 1h candles ({len(series) * n:,} rows), float32")
    for label, config, ref in (
        ("base", FeatureConfig(), None),
        ("+4h +BTC", FeatureConfig(higher_timeframe="4h", reference_symbol="BTC/USDT"), reference),
    ):
        wall, peak, held, columns = _run(series, config, ref, args.repeat)
        print(
            f"  {label:9s} {columns} columns: {wall:.2f} s ({len(series) * n / wall / 1e6:.1f} M "
            f"rows/s), peak allocated {peak / MIB:.0f} MiB, matrices {held / MIB:.0f} MiB"
        )
    big = generate_candles("C0/USDT", "1h", 200_000, seed=5, start_ms=T0)
    big_ref = generate_candles("BTC/USDT", "1h", 200_000, seed=6, start_ms=T0)
    for label, config, ref in (
        ("base", FeatureConfig(), None),
        ("+4h +BTC", FeatureConfig(higher_timeframe="4h", reference_symbol="BTC/USDT"), big_ref),
    ):
        wall, peak, _, columns = _run([big], config, ref, args.repeat)
        print(f"200,000 candles, {label:9s}: {wall:.2f} s, peak allocated {peak / MIB:.0f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {rss:.0f} MiB (candles generated included)")


if __name__ == "__main__":
    main()
