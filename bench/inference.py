"""One live decision for 10 symbols: the latest candle's features, all four members, the ensemble.

As ``qt run`` does it: each symbol's history is seeded with 2,000 1h candles (the warm-up
qt run hands the provider), then each new candle is appended to the ``SignalBook`` and the
signal of that candle asked for, which runs ``EnsembleProvider.compute`` on the history.
One decision = the newest signal of all 10 symbols (synthetic series, prices from 0.01 to
100,000). The members (XGBoost, LightGBM: their defaults; N-HiTS, PatchTST: their default
architectures, one epoch, so the latency is that of the real networks) are trained once on
two symbols' older candles and serve the rest (their figures do not depend on what they
learned). Prints p50/p99/max of a decision over ``--candles`` new candles, and one
symbol's compute split into its parts (features, each member's predict_proba, the rest).

Usage: .venv/bin/python bench/inference.py [--candles 60] [--symbols 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T0 = 1_672_531_200_000  # 2023-01-01
HISTORY = 2_000  # bot.app.WARMUP_HISTORY_CANDLES
PRICES = (0.01, 100_000.0, 1_000.0, 1.0, 10_000.0, 0.1, 100.0, 10.0, 5.0, 50.0)


def _members(train: list, threads: int) -> list:
    from core.ml.ensemble import EnsembleMember
    from core.ml.members import MEMBERS
    from core.ml.training import TrainConfig, fit_member, prepare

    data = prepare(train, TrainConfig())
    out = []
    for name in ("xgb", "lgbm", "nhits", "patchtst"):
        params = {"n_jobs": threads, "n_threads": threads, "epochs": 1}
        started = time.perf_counter()
        fit = fit_member(name, data, params)
        print(f"  trained {name} in {time.perf_counter() - started:.1f} s")
        out.append(
            EnsembleMember(
                name=name,
                member=MEMBERS[name].from_files(fit.files),
                trained_until_ms=data.end_ms,
                version_id=name,
            )
        )
    return out


def _parts(provider, series) -> dict[str, float]:
    """Return one compute's parts in ms (features, each member on the rows it predicts)."""
    import numpy as np

    from core.ml.ensemble import _predict
    from core.ml.features import compute_features

    started = time.perf_counter()
    fm = compute_features(series, provider.features)
    parts = {"features": time.perf_counter() - started}
    rows = np.flatnonzero(fm.valid_rows())
    x = np.asarray(fm.values[rows], dtype=np.float64)
    for m in provider.members:
        started = time.perf_counter()
        _predict(m.member, fm, x, rows)
        parts[f"{m.name} ({len(rows)} rows)"] = time.perf_counter() - started
    started = time.perf_counter()
    provider.compute(series)
    parts["the cached compute"] = time.perf_counter() - started
    return {k: v * 1000 for k, v in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=60, help="new candles (decisions)")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="per member (torch, trees)")
    args = parser.parse_args()

    from core.market.synthetic import generate_candles
    from core.ml.ensemble import EnsembleProvider
    from core.services.signal_book import SignalBook

    n = HISTORY + args.candles
    series = [
        generate_candles(
            f"S{i}/USDT", "1h", n + 1500, seed=10 + i, start_ms=T0, start_price=PRICES[i % 10]
        )
        for i in range(args.symbols)
    ]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"{args.symbols} symbols, 1h, {HISTORY:,} candles of history each, {args.candles} new "
        f"candles; {args.threads} thread(s) per member, {os.cpu_count()} core(s), load {load}"
    )
    members = _members([s.slice(0, 1500) for s in series[:2]], args.threads)
    provider = EnsembleProvider(members)
    book = SignalBook(provider)
    live = [s.slice(1500, 1500 + n) for s in series]
    for s in live:
        book.seed(s.slice(0, HISTORY))
        book.signal_at(s.symbol, int(s.ts_ms[HISTORY - 1]))  # qt run's first look-up
    decisions = []
    for k in range(HISTORY, n):
        started = time.perf_counter()
        for s in live:
            book.append(s.symbol, "1h", s.candle(k))
            signal = book.signal_at(s.symbol, int(s.ts_ms[k]))
            assert signal is not None
        decisions.append((time.perf_counter() - started) * 1000)
    decisions.sort()
    p99 = decisions[min(len(decisions) - 1, round(0.99 * (len(decisions) - 1)))]
    print(
        f"  one decision ({args.symbols} symbols): p50 {statistics.median(decisions):.0f} ms, "
        f"p99 {p99:.0f} ms, max {decisions[-1]:.0f} ms over {len(decisions)} candles "
        f"(target p99 < 50 ms on 2 cores)"
    )
    parts = _parts(provider, book_history(book, live[0].symbol))
    print(
        "  one symbol's full compute (every row through each member, what each candle cost "
        "before the reuse): " + ", ".join(f"{k} {v:.1f} ms" for k, v in parts.items())
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {rss:.0f} MiB")


def book_history(book, symbol: str):  # -> CandleSeries
    """Return the history the book holds for ``symbol`` (what compute ran on last)."""
    frame = book.frame(symbol)
    assert frame is not None
    return book._books[symbol].history


if __name__ == "__main__":
    main()
