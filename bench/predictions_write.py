"""How long the registry's prediction log takes to write and read 10,000 predictions.

``add_many`` of 10,000 predictions (2,500 candles x 4 symbols) into a file SQLite database,
the same batch again (all already stored: nothing written), and the version's list read
back; then the same on the in-memory twin. Prints the median of ``--runs`` runs.

Usage: .venv/bin/python bench/predictions_write.py [--rows 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
H = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")


async def _one_run(rows: int, kind: str) -> tuple[float, float, float]:
    from core.domain.model_versions import Prediction
    from core.ports import Storage
    from storage.memory import MemoryStorage
    from storage.repositories import SqlStorage

    batch = [
        Prediction(
            version_id="xgb-bench",
            member="xgb",
            symbol=SYMBOLS[i % len(SYMBOLS)],
            ts_ms=T0 + (i // len(SYMBOLS)) * H,
            p_up=(i % 97) / 96,
            role="shadow",
            created_ms=T0 + (i // len(SYMBOLS) + 1) * H,
        )
        for i in range(rows)
    ]
    store: Storage
    if kind == "sqlite":
        store = SqlStorage(f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.sqlite3")
    else:
        store = MemoryStorage()
    await store.start()
    try:
        started = time.perf_counter()
        await store.predictions.add_many(batch)
        added = time.perf_counter()
        await store.predictions.add_many(batch)
        again = time.perf_counter()
        await store.predictions.list_predictions("xgb-bench")
        listed = time.perf_counter()
    finally:
        await store.stop()
    return added - started, again - added, listed - again


async def main(rows: int, runs: int) -> None:
    sys.path.insert(0, str(ROOT))
    for kind in ("sqlite", "memory"):
        times = [await _one_run(rows, kind) for _ in range(runs)]
        add, again, listed = (statistics.median(t[i] for t in times) for i in range(3))
        print(
            f"{kind:6} {rows:,} predictions: add {add * 1000:.0f} ms, "
            f"again (all stored) {again * 1000:.0f} ms, list {listed * 1000:.0f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.runs))
