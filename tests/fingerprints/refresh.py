"""Refresh the stored trade fingerprints: ``.venv/bin/python -m tests.fingerprints.refresh``.

Run it only when a change is meant to move trades (and say so in the commit); a speed-up must
leave ``trades.json`` as it is. The real cases need ``../shared/data``: without it their stored
fingerprints are kept as they are.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from tests.fingerprints.cases import (
    CASES,
    STORED,
    fingerprint_of,
    isolated_settings,
    real_data_present,
    store,
    stored,
)


def main() -> None:
    found = stored() if STORED.exists() else {}
    for case in CASES:
        if case.real and not real_data_present():
            print(f"{case.name}: ../shared/data absent, kept as stored")
            continue
        with tempfile.TemporaryDirectory() as tmp, isolated_settings(case.env, Path(tmp)) as s:
            fast = asyncio.run(fingerprint_of(case, s, fast=True))
        print(f"{case.name}: {fast.trades} trades, final balance {fast.final_balance}")
        found[case.name] = fast
    store(found)
    print(f"written: {STORED}")


if __name__ == "__main__":
    main()
