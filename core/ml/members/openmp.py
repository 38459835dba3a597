"""OpenMP threads that sleep instead of spinning while they wait, set before a library loads.

XGBoost and LightGBM run on OpenMP (libgomp), whose idle threads spin by default. With the
other core busy (a second training worker, the engine, a test suite) two spinning threads wait
on each other: XGBoost fitting 300 trees on 200,000 x 40 rows took 21-46 s instead of 6 s
here (``bench/gbdt_fit.py``, load average 2.6-3.7 on 2 cores; LightGBM 28-45 s, not 8-10 s).
libgomp reads the policy once, when it is loaded, so this must run before the first import of
either library; an operator's own ``OMP_WAIT_POLICY`` wins.
"""

from __future__ import annotations

import os


def passive_openmp() -> None:
    """Ask OpenMP, if not loaded yet, to put waiting threads to sleep."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# A live decision predicts one row (a window) per member: handing it to a second thread costs
# more than it saves (a sleeping thread is woken, both wait on each other with the other core
# busy), so small batches run on the calling thread. No result depends on it: a tree's
# prediction of a row is the same on any thread, a network's up to float32 rounding.
ONE_THREAD_ROWS = 64


def prediction_threads(rows: int, threads: int) -> int:
    """Return the threads to predict ``rows`` rows on (``threads``: the member's setting)."""
    return 1 if rows <= ONE_THREAD_ROWS else threads
