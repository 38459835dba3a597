"""Worker processes end with the process that started them.

A training worker (a spawned pool worker, the RL sizer's training process) runs for minutes.
Its parent killed (SIGKILL, the OOM killer, a crash), it would go on fitting to the end, as
an orphan: burning the cores the restarted process trades on, two trainings at once. Each
such worker has the kernel kill it when its parent ends (Linux's ``PR_SET_PDEATHSIG``), and
watches its parent too, exiting once that is gone (its parent id changes: it was
re-parented), where there is no such call. The watch alone was not enough: a fit holds the
GIL for seconds in C (XGBoost, LightGBM), and the watching thread waits for it; killed during
a training, the chaos harness measured workers outliving the bot by 1.9 s, a pure-C loop by
its whole length. The kernel's parent is the thread that started the worker: the pools and
the sizer's process are started from the event loop's thread, which ends only with the
process (one started from a thread that ends earlier would die with it, and its training
fail as a broken pool: said, never silent).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

ORPHANED_EXIT = 75  # the exit status of a worker that outlived its parent
POLL_S = 0.5


def end_with_parent(parent_pid: int, *, poll_s: float = POLL_S) -> None:
    """End this process (``os._exit``: nothing of the fit under way is worth finishing) as
    soon as ``parent_pid`` is no longer its parent; at once if it is not now."""
    _killed_with_parent()
    if os.getppid() != parent_pid:  # after the call: a parent gone before it is seen here
        os._exit(ORPHANED_EXIT)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(ORPHANED_EXIT)

    threading.Thread(target=watch, name="qt-end-with-parent", daemon=True).start()


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _killed_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent ends (Linux only; elsewhere, or
    refused, the watch alone)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
