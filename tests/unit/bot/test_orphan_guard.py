"""A training worker ends with the process that started it (``bot.orphan_guard``): killed
with SIGKILL mid-fit, the trading process leaves no orphan fitting on the cores its restart
trades on (before, a spawned pool worker ran its fit to the end as an orphan)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.orphan_guard import ORPHANED_EXIT

ROOT = Path(__file__).resolve().parents[3]

# A parent that starts the pool as qt does (bot.model_training.new_pool), gives its worker a
# minute-long task, says the worker's pid and waits: the test kills it. The tasks: a sleep,
# and a loop in C that holds the GIL all along (as a fit does for seconds), which starves a
# thread that watches the parent.
PARENT = """
import os, time
from bot.model_training import new_pool
pool = new_pool(1, background=True)
worker = pool.submit(os.getpid).result()  # started: its guard is set
pool.submit({task})
print(worker, flush=True)
time.sleep(60)
"""


def _gone(pid: int) -> bool:
    """Return True when ``pid`` ended (exited, or a zombie nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("task", ["time.sleep, 60", "sum, range(10**13)"], ids=["sleep", "gil"])
def test_a_pool_worker_ends_soon_after_its_parent_is_killed(task: str) -> None:
    parent = subprocess.Popen(  # noqa: S603 - our own code
        [sys.executable, "-c", PARENT.format(task=task)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        time.sleep(0.5)
        assert not _gone(worker)  # alive and busy while its parent lives
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        killed = time.monotonic()
        while not _gone(worker) and time.monotonic() < killed + 10:
            time.sleep(0.02)
        assert _gone(worker), "the worker outlived its killed parent"
        assert time.monotonic() - killed < 1.0  # not after a poll the fit holds up
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_a_worker_whose_parent_is_already_gone_ends_at_once() -> None:
    code = f"from bot.orphan_guard import end_with_parent; end_with_parent({os.getpid() + 10**6})"
    done = subprocess.run(  # noqa: S603 - our own code
        [sys.executable, "-c", code + "; print('still here')"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == ORPHANED_EXIT and "still here" not in done.stdout


def test_a_worker_whose_parent_lives_goes_on() -> None:
    code = (
        "import os, time; from bot.orphan_guard import end_with_parent; "
        "end_with_parent(os.getppid(), poll_s=0.01); time.sleep(0.2); print('done')"
    )
    done = subprocess.run(  # noqa: S603 - our own code
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout.strip() == "done"
