"""Worker functions for the candidate-training tests: module level, so a spawned worker
process can import them by name. Each has ``fit_candidate``'s signature and misbehaves for
lgbm only; the pid of a hanging worker is written into ``params["pid_dir"]``."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from core.ml.training import CandidateFit, FitResult, TrainingSet, fit_candidate

HANG_S = 600.0  # far beyond any test's timeout: only a terminated worker ends it


def crash_lgbm(
    name: str,
    data: TrainingSet,
    params: Mapping[str, Any] | None,
    warm_files: Mapping[str, bytes] | None,
    champion_files: Mapping[str, bytes] | None,
    champion_trained_until_ms: int | None,
) -> CandidateFit:
    """Raise for lgbm; fit any other member for real."""
    if name == "lgbm":
        raise DataError("planted: lgbm cannot fit\non these rows")
    return fit_candidate(name, data, params, warm_files, champion_files, champion_trained_until_ms)


def hang_lgbm(
    name: str,
    data: TrainingSet,
    params: Mapping[str, Any] | None,
    warm_files: Mapping[str, bytes] | None,
    champion_files: Mapping[str, bytes] | None,
    champion_trained_until_ms: int | None,
) -> CandidateFit:
    """Hang for lgbm (its pid written first); return a constant forecast for any other."""
    if name == "lgbm":
        hang(params)
    return constant_fit(name, data)


def hang_all(
    name: str,
    data: TrainingSet,
    params: Mapping[str, Any] | None,
    warm_files: Mapping[str, bytes] | None,
    champion_files: Mapping[str, bytes] | None,
    champion_trained_until_ms: int | None,
) -> CandidateFit:
    """Hang for every member (each worker's pid written first)."""
    hang(params)
    raise AssertionError("unreachable: a hanging fit is terminated")


def hang(params: Mapping[str, Any] | None) -> None:
    """Write this process's pid into ``params["pid_dir"]``, then sleep until terminated."""
    assert params is not None
    pid = os.getpid()
    folder = Path(params["pid_dir"])
    (folder / f"{pid}.tmp").write_text(str(pid))
    (folder / f"{pid}.tmp").rename(folder / f"{pid}.pid")  # whole, once the test sees it
    time.sleep(HANG_S)


def constant_fit(name: str, data: TrainingSet) -> CandidateFit:
    """Return a fit that says 0.5 for every validation row: quick, and nothing learned."""
    rows = len(data.y_valid)
    return CandidateFit(
        fit=FitResult(member=name, files={}, metrics={"rows_valid": float(rows)}),
        symbol=data.valid_symbol,
        ts_ms=data.valid_ts_ms,
        y=data.y_valid,
        p=np.full(rows, 0.5),
        champion_p=None,
        note="constant",
    )
