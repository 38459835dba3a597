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
