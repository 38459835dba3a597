"""Every demo starts clean: its database goes, and with it what a demo killed during a database
outage left beside it (the kept halt, the kept events), which would otherwise halt the fresh
demo or write an old run's events into its new audit trail."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.event_keep import SUFFIX as EVENT_KEEP_SUFFIX
from bot.halt_note import SUFFIX as HALT_NOTE_SUFFIX
from bot.modes import _claim_demo_database
from tests.unit.services.engine_harness import clean_settings


def test_a_demo_removes_its_last_database_and_what_an_outage_left_beside_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QT__APP__DATA_DIR", str(tmp_path / "data"))
    settings = clean_settings(monkeypatch, tmp_path)
    settings.app.data_dir.mkdir(parents=True)
    db = settings.app.data_dir / "demo.sqlite"
    left = [Path(f"{db}{s}") for s in ("", "-wal", "-shm", HALT_NOTE_SUFFIX, EVENT_KEEP_SUFFIX)]
    for path in left:
        path.write_text("from the last demo\n")
    other = settings.app.data_dir / "quantum_trader_live.sqlite.unsaved-events"
    other.write_text("qt run's: not the demo's\n")

    lock = _claim_demo_database(settings)
    try:
        assert [p.name for p in left if p.exists()] == []
        assert other.exists()
    finally:
        lock.release()
