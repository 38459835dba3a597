"""Worker functions for the walk-forward attacks: module level, so a spawned worker can
import them by name; each has ``fit_candidate``'s signature."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.ml.training import CandidateFit, TrainingSet
from tests.integration.candidate_fits import constant_fit


def die_once(
    name: str,
    data: TrainingSet,
    params: Mapping[str, Any] | None,
    warm_files: Mapping[str, bytes] | None,
    champion_files: Mapping[str, bytes] | None,
    champion_trained_until_ms: int | None,
) -> CandidateFit:
    """Kill this worker process the first time any fit runs (a segfault, the OOM killer:
    the pool breaks), then return a constant forecast."""
    assert params is not None
    marker = Path(params["pid_dir"]) / "died"
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return constant_fit(name, data)
    os._exit(1)
