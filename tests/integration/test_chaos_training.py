"""The chaos harness's kills during a training run, reduced (``bench/chaos.py --training`` is
the full one): ``qt run`` (live perp, the learning manager retraining XGBoost and LightGBM
every few wall seconds) SIGKILLed while a worker fits. Every fitting worker ends with it
(the kernel kills it with its parent: ``bot.orphan_guard``), the restarts' books match the
venue, a later training finishes, and every version in the registry verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos_harness import ChaosConfig
from tests.chaos_training import ORPHAN_S, run_training_kills


@pytest.mark.slow
def test_a_kill_during_a_training_leaves_no_orphan_worker_and_a_registry_that_verifies(
    tmp_path: Path,
) -> None:
    result = run_training_kills(
        ChaosConfig(workdir=tmp_path / "training", kills=2, fault_rate=0.0, max_wall_s=240),
        say=lambda _line: None,
    )
    assert result.broken() == [], (result.notes, result.during.notes, result.final.notes)
    assert result.kills == result.kills_in_training == 2
    assert result.workers_killed_with >= 2 and result.orphans == 0
    assert result.worker_exit_s < ORPHAN_S
    assert result.trainings >= 1 and result.versions >= 1 and result.versions_refused == 0
    final = result.final
    assert (final.duplicates, final.lost_fills, final.double_fills) == (0, 0, 0)
    assert final.position_mismatches == final.audit_gaps == 0
