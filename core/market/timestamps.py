"""The unit of a data file's epoch timestamps: ms as expected, seconds refused, µs and ns
converted. One rule for candle and funding-rate files alike.

Below 1e11 an epoch timestamp is in seconds, not ms (1e11 ms is 1973, 1e11 s is year 5138). The
same reasoning one unit finer: from 1e14 a timestamp is in microseconds (1e14 ms would be year
5138, 1e14 µs is 1973), from 1e17 in nanoseconds. The ranges do not overlap for any date between
1973 and 5138, so each row's unit is unambiguous (Binance's public spot klines switched from ms
to µs in 2025, so one file can hold both).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from core.errors import DataError

IntArray = npt.NDArray[np.int64]

MIN_PLAUSIBLE_MS = 100_000_000_000
_MIN_PLAUSIBLE_US = 100_000_000_000_000
_MIN_PLAUSIBLE_NS = 100_000_000_000_000_000


def to_milliseconds(
    ts: IntArray, source: str, where: Callable[[int], str]
) -> tuple[IntArray, list[str]]:
    """Return ``ts`` in ms, converting rows in µs or ns, and a note per unit converted.

    ``source`` names the file, ``where(i)`` row ``i`` in it (``data row 3 (...)``). A file whose
    largest timestamp is below 1e11 is in seconds and refused. A row in a finer unit that is not
    a whole number of ms is refused, naming it: truncating it would invent a time the file does
    not hold.
    """
    if len(ts) and int(ts.max()) < MIN_PLAUSIBLE_MS:
        raise DataError(
            f"{source}: timestamps look like seconds (largest {int(ts.max())}, at "
            f"{where(int(np.argmax(ts)))}); expected ms UTC"
        )
    ns = ts >= _MIN_PLAUSIBLE_NS
    us = (ts >= _MIN_PLAUSIBLE_US) & ~ns
    if not (ns.any() or us.any()):
        return ts, []
    out = ts.copy()
    notes = []
    for unit, rows, per_ms in (("nanoseconds", ns, 1_000_000), ("microseconds", us, 1_000)):
        if not rows.any():
            continue
        frac = rows & (ts % per_ms != 0)
        if frac.any():
            row = int(np.argmax(frac))
            raise DataError(
                f"{source}: timestamp {int(ts[row])} at {where(row)} is in {unit} but not a "
                "whole number of ms; expected open times in ms"
            )
        out[rows] = ts[rows] // per_ms
        notes.append(f"timestamps: {int(rows.sum())} rows were in {unit}, converted to ms")
    return out, notes
