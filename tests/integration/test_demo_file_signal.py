"""A stop signal while the demo reads its candle file stops the demo; it is not a bad file."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from rich.console import Console

from bot.modes import build_demo
from bot.runner import run_process
from core.config import load_settings
from core.market.synthetic import generate_candles

T0 = 1_704_067_200_000


async def test_sigterm_while_the_demo_loads_its_file_stops_it_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    series = generate_candles("BTC/USDT", "1h", 200, seed=3, start_ms=T0)
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        + "".join(
            f"{c.ts_ms},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r}\n"
            for c in map(series.candle, range(len(series)))
        )
    )
    settings = load_settings(
        app={"data_dir": str(tmp_path / "ud")},
        demo={"data_file": str(path), "history_candles": 100, "candles_per_second": 5.0},
        strategy={"provider": "ema_rsi"},
    )
    real_read = pa_csv.read_csv

    def read_while_signalled(*args: Any, **kwargs: Any) -> pa.Table:
        # SIGTERM arrives mid-read. On the main thread Arrow then cancels the read, hands the
        # signal to the process's handler and raises ArrowCancelled (what this fake does); on
        # any other thread it installs no handler and the read completes.
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            raise pa.ArrowCancelled("Operation cancelled. Detail: received signal 15", signum=15)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(pa_csv, "read_csv", read_while_signalled)
    console = Console(record=True, width=200)

    reason = await run_process(lambda: build_demo(settings), console=console)

    assert reason == "signal"
    assert "stopped (signal)" in console.export_text()
