"""How long a big candle import makes a running bot's writes wait (the SQLite write lock).

A `qt data import` of 5 years of 1m candles (2.63 M rows) runs through `SqlCandleRepo.upsert`
while another connection (think: `qt run` saving its trades) writes one small row every 20 ms
and records how long each write waited. Prints the import's wall time and the writer's worst
and median waits. Before batch commits the import held the lock for the whole upsert (~8 s on
this machine), past the 10 s busy timeout under load.

Usage: .venv/bin/python bench/storage_lock.py [--rows 2630000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _writer(db: Path, stop: threading.Event, waits: list[float]) -> None:
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    while not stop.is_set():
        started = time.perf_counter()
        conn.execute(
            "INSERT INTO kv_state(key, value) VALUES ('bench', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(started),),
        )
        waits.append(time.perf_counter() - started)
        time.sleep(0.02)
    conn.close()


async def main(rows: int) -> None:
    sys.path.insert(0, str(ROOT))
    from core.market.synthetic import generate_candles
    from storage.repositories import SqlStorage

    db = Path(tempfile.mkdtemp()) / "lock.sqlite"
    storage = SqlStorage(f"sqlite+aiosqlite:///{db}")
    await storage.start()
    series = generate_candles("BTC/USDT", "1m", rows, seed=1, start_ms=1_577_836_800_000)
    waits: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(target=_writer, args=(db, stop, waits))
    thread.start()
    started = time.perf_counter()
    await storage.candles.upsert("binance", series)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    await storage.stop()
    print(f"import of {rows:,} candles: {elapsed:.1f} s")
    print(
        f"a concurrent small write waited at most {max(waits) * 1000:.0f} ms "
        f"(median {statistics.median(waits) * 1000:.1f} ms, {len(waits)} writes)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_630_000)
    asyncio.run(main(parser.parse_args().rows))
