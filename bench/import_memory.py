"""Peak memory of a big candle import (`qt data import`), of reading the file alone, and of
reading the stored series back (`qt data check` of the database).

Writes a CSV of synthetic 1m candles (5 M rows, about 0.5 GB, in a temporary folder unless
--csv names one), then runs, each in its own process so the peaks do not mix:

* ``read``: ``read_candle_file`` only (Arrow parse, numpy columns, validation);
* ``import``: the real ``qt data import FILE`` into a fresh SQLite database;
* ``check``: the real ``qt data check``, which loads the stored series and validates it (the
  load ``qt backtest`` without ``--data`` makes too).

Prints the peak resident memory (ru_maxrss of that process) and wall time of each. The
difference is what the database write (or read) costs on top of holding the series.

Usage: .venv/bin/python bench/import_memory.py [--rows 5000000] [--csv FILE] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_MS = 1_420_070_400_000  # 2015-01-01: 5 M minutes end in 2024, before now


def write_csv(path: Path, rows: int) -> None:
    """Write ``rows`` synthetic 1m candles as our CSV, in chunks (the writer stays small)."""
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from core.market.synthetic import generate_candles

    series = generate_candles("BTC/USDT", "1m", rows, seed=1, start_ms=START_MS)
    with pa_csv.CSVWriter(
        path,
        pa.schema(
            [("timestamp", pa.int64())]
            + [(c, pa.float64()) for c in ("open", "high", "low", "close", "volume")]
        ),
        write_options=pa_csv.WriteOptions(quoting_style="none"),
    ) as writer:
        step = 500_000
        for lo in range(0, rows, step):
            part = series.slice(lo, lo + step)
            writer.write_table(
                pa.table(
                    {
                        "timestamp": part.ts_ms,
                        **{c: getattr(part, c) for c in ("open", "high", "low", "close", "volume")},
                    }
                )
            )


def measure(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``args``; return (peak RSS in MiB, wall seconds) of that process alone."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)  # noqa: S603
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started  # ru_maxrss is KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--csv", type=Path, help="use this candle CSV instead of writing one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qt-import-memory-"))
    try:
        csv = opts.csv
        if csv is None:
            csv = work / "BTC_USDT-1m.csv"
            write_csv(csv, opts.rows)
        size_mb = csv.stat().st_size / 1e6
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("QT__")} | {
            "QT__APP__DATA_DIR": str(work / "ud")
        }
        python = sys.executable
        reader = (
            "import sys, time; from core.market.importers import read_candle_file; "
            "print(len(read_candle_file(sys.argv[1], now_ms=int(time.time() * 1000)).series))"
        )
        read_mib, read_s = measure([python, "-c", reader, str(csv)], env)
        qt = str(Path(python).with_name("qt"))
        import_mib, import_s = measure([qt, "data", "import", str(csv)], env)
        check_mib, check_s = measure([qt, "data", "check"], env)
        print(f"{csv.name}: {size_mb:,.0f} MB")
        print(f"read and validate only: peak RSS {read_mib:,.0f} MiB, {read_s:.1f} s")
        print(f"qt data import:         peak RSS {import_mib:,.0f} MiB, {import_s:.1f} s")
        print(f"qt data check (stored): peak RSS {check_mib:,.0f} MiB, {check_s:.1f} s")
    finally:
        if opts.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
