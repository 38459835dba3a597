"""Worker processes end with the process that started them.

A training worker (a spawned pool worker, the RL sizer's training process) runs for minutes.
Its parent killed (SIGKILL, the OOM killer, a crash), it would go on fitting to the end, as
an orphan: burning the cores the restarted process trades on, two trainings at once. Each
such worker watches its parent instead and exits once that is gone (its parent id changes:
it was re-parented). Polling, not ``PR_SET_PDEATHSIG``: the same on every platform, and
half a second is soon enough for a fit that would run for minutes.
"""

from __future__ import annotations

import os
import threading
import time

ORPHANED_EXIT = 75  # the exit status of a worker that outlived its parent
POLL_S = 0.5


def end_with_parent(parent_pid: int, *, poll_s: float = POLL_S) -> None:
    """End this process (``os._exit``: nothing of the fit under way is worth finishing) as
    soon as ``parent_pid`` is no longer its parent; at once if it is not now."""
    if os.getppid() != parent_pid:
        os._exit(ORPHANED_EXIT)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(ORPHANED_EXIT)

    threading.Thread(target=watch, name="qt-end-with-parent", daemon=True).start()
