"""`qt` skips the interpreter's final collections over the heap at exit, and still writes and
flushes every output: stdout, the report files, the log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# An exit handler registered before the command runs after the CLI's (last in, first out):
# it sees what the interpreter's exit will see.
PROBE = """
import atexit, gc, sys
from bot.cli import app
atexit.register(lambda: print(f"probe gc={gc.isenabled()} frozen={gc.get_freeze_count()}",
                              file=sys.stderr))
sys.argv = ["qt", *sys.argv[1:]]
app(prog_name="qt")
"""


def qt(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT__")}
    env |= {"QT__APP__DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    return subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_command_exits_without_the_final_collection_and_prints_everything(
    tmp_path: Path,
) -> None:
    done = qt(tmp_path, "config", "show")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["app"]["data_dir"] == str(tmp_path / "data")
    assert "probe gc=False frozen=" in done.stderr
    frozen = int(done.stderr.rsplit("frozen=", 1)[1].split()[0])
    assert frozen > 10_000  # the heap was frozen, not an empty generation


def test_a_failing_command_keeps_its_status_and_message(tmp_path: Path) -> None:
    done = qt(tmp_path, "backtest", "--data", str(tmp_path / "missing.csv"), "--no-charts")
    assert done.returncode == 2
    assert "no such candle file" in done.stderr
    assert "probe gc=False" in done.stderr


def test_output_lost_is_still_exit_1_with_the_collection_skipped(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-c", PROBE, "config", "show"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "QT__APP__DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)},
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert "the output could not be written" in done.stderr
