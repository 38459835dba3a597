"""One live decision for 10 symbols: the latest candle's features, all four members, the ensemble.

As ``qt run`` does it: each symbol's history is seeded with 2,000 1h candles (the warm-up
qt run hands the provider); then at each close the 10 symbols' new candles are appended to the
``SignalBook``, prepared together in a worker thread (``prepare_many``: one
``EnsembleProvider.compute_many``, each member called once for the 10 new rows) and each
symbol's signal looked up (``--path batched``). ``--path per-symbol``: the path before, each
symbol appended and its signal computed in turn (``compute``); ``both`` (the default) runs
the two on the same candles, in turn. One decision = the newest signal of all 10 symbols
(synthetic series, prices from 0.01 to 100,000). The members (XGBoost, LightGBM: their
defaults; N-HiTS, PatchTST: their default architectures, one epoch, so the latency is that
of the real networks) are trained once on two symbols' older candles and serve the rest
(their figures do not depend on what they learned). Prints p50/p99/max of a decision over
``--candles`` new candles (each path's), and one symbol's compute split into its parts
(features, each member's predict_proba, the rest).

Usage: .venv/bin/python bench/inference.py [--candles 60] [--symbols 10] [--threads 2]
       [--path both|batched|per-symbol]
"""

from __future__ import annotations

import argparse
import asyncio
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


def _percentiles(ms: list[float]) -> str:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):.0f} ms, p99 {p99:.0f} ms, max {ms[-1]:.0f} ms"


async def _batched(book, live: list, k: int) -> float:
    """Return one decision as qt run makes it (ms): the close's candles appended, their
    signals prepared together in a worker thread, then each symbol's look-up."""
    started = time.perf_counter()
    for s in live:
        book.append(s.symbol, "1h", s.candle(k))
    await book.prepare_many([s.symbol for s in live])
    for s in live:
        assert book.signal_at(s.symbol, int(s.ts_ms[k])) is not None
    return (time.perf_counter() - started) * 1000


def _per_symbol(book, live: list, k: int) -> float:
    """Return one decision symbol by symbol (ms): each appended and computed in turn."""
    started = time.perf_counter()
    for s in live:
        book.append(s.symbol, "1h", s.candle(k))
        assert book.signal_at(s.symbol, int(s.ts_ms[k])) is not None
    return (time.perf_counter() - started) * 1000


async def run(args: argparse.Namespace) -> None:
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
    live = [s.slice(1500, 1500 + n) for s in series]
    paths = ("batched", "per-symbol") if args.path == "both" else (args.path,)
    # One provider per path (the same members): each keeps its own per-symbol state.
    books = {
        path: SignalBook(EnsembleProvider(members), offload=path == "batched") for path in paths
    }
    for book in books.values():
        for s in live:
            book.seed(s.slice(0, HISTORY))
        book.provider.compute_many([book._books[s.symbol].history for s in live])  # start-up
    decisions: dict[str, list[float]] = {path: [] for path in paths}
    for k in range(HISTORY, n):
        order = paths if k % 2 == 0 else paths[::-1]  # neither always runs first
        for path in order:
            book = books[path]
            ms = await _batched(book, live, k) if path == "batched" else _per_symbol(book, live, k)
            decisions[path].append(ms)
    for path in paths:
        how = (
            "appended, prepared together in a worker thread (prepare_many), looked up"
            if path == "batched"
            else "each appended and computed in turn"
        )
        print(
            f"  one decision ({args.symbols} symbols, {path}: {how}): "
            f"{_percentiles(decisions[path])} over {len(decisions[path])} candles "
            "(target p99 < 50 ms on 2 cores)"
        )
    book = books[paths[-1]]
    parts = _parts(book.provider, book_history(book, live[0].symbol))
    print(
        "  one symbol's full compute (every row through each member, what each candle cost "
        "before the reuse): " + ", ".join(f"{k} {v:.1f} ms" for k, v in parts.items())
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {rss:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=60, help="new candles (decisions)")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="per member (torch, trees)")
    parser.add_argument(
        "--path",
        choices=("both", "batched", "per-symbol"),
        default="both",
        help="batched: as qt run decides a close; per-symbol: one symbol after another",
    )
    asyncio.run(run(parser.parse_args()))


def book_history(book, symbol: str):  # -> CandleSeries
    """Return the history the book holds for ``symbol`` (what compute ran on last)."""
    frame = book.frame(symbol)
    assert frame is not None
    return book._books[symbol].history


if __name__ == "__main__":
    main()
