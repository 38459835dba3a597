"""``qt`` with a stdout that is closed or cannot be written: no traceback, no lost result.

These start the real program (``python -m bot.cli``): a closed stdout is seen at import, before
any in-process runner could stand in for it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from core.market.synthetic import generate_candles
from storage import open_storage

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def _qt(
    tmp_path: Path, *args: str, stdout: IO[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT__")}
    env["QT__APP__DATA_DIR"] = str(tmp_path / "ud")
    extra: dict[str, Any] = {"stdout": stdout}
    if stdout is None:  # `qt ... >&-`: Python then sets sys.stdout to None
        extra["preexec_fn"] = lambda: os.close(1)
    return subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "bot.cli", *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
        **extra,
    )


def _store_candles(db_file: Path) -> None:
    async def store() -> None:
        storage = open_storage(f"sqlite+aiosqlite:///{db_file}")
        await storage.start()
        try:
            series = generate_candles("BTC/USDT", "1h", 24, seed=3, start_ms=T0)
            await storage.candles.upsert("binance", series)
        finally:
            await storage.stop()

    asyncio.run(store())


def test_a_command_runs_with_stdout_closed(tmp_path: Path) -> None:
    result = _qt(tmp_path, "data", "list")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "ud" / "quantum_trader.sqlite").is_file()  # it ran, not just imported


@pytest.mark.parametrize("args", [("data", "list"), ("data", "list", "--json")])
def test_output_to_a_full_disk_is_one_line_and_a_failed_status(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    _store_candles(tmp_path / "ud" / "quantum_trader.sqlite")
    with Path("/dev/full").open("w") as full:  # every write fails with ENOSPC
        result = _qt(tmp_path, *args, stdout=full)
    assert "Traceback" not in result.stderr
    # A script must not take an empty result for the answer.
    assert result.returncode == 1, result.stderr
    assert " ".join(result.stderr.split()) == (
        "error: the output could not be written to stdout: No space left on device (the "
        "command itself ran to the end)"
    )
