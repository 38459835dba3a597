"""The ledger of evaluations: how many configurations were tried on the same data.

The Deflated Sharpe Ratio needs the number of configurations tried and how their Sharpe ratios
varied, recorded rather than guessed. Every ``qt evaluate`` appends one JSON line to
``<data_dir>/evaluations/trials.jsonl`` (not under ``--out``: the count cannot be reset by
writing the report elsewhere): the data it ran on (symbols, timeframe, market, the traded
range), the hash of its configuration (everything that changes the predictions or the trades:
the members, the retrain, the ensemble, the label's horizon, the exits, risk, fees and
slippage) and the resulting per-period (daily) Sharpe. ``trials_on`` counts the distinct
configurations recorded on the same data; the newest line of a configuration speaks for it.
A shuffled-label run is recorded as a control and never counted.

One line is one ``write`` on a file opened for appending, so two evaluations at once cannot
interleave their lines; a line that does not parse (a crash mid-write, a hand edit of the
wrong types) is skipped and counted, and a record after a line cut off without its newline
starts a line of its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python

from core.config import Settings
from core.errors import OperationalError

LEDGER = "trials.jsonl"


def ledger_path(settings: Settings) -> Path:
    """Return the ledger of ``settings``' data folder."""
    return settings.app.data_dir / "evaluations" / LEDGER


def digest(value: Mapping[str, Any]) -> str:
    """Return the sha256 (hex) of ``value`` as canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def configuration(settings: Settings, *, horizon: int, feature_set_hash: str) -> dict[str, Any]:
    """Return what makes one evaluation's configuration (its hash is the trial's identity)."""
    data = to_jsonable_python(_canonical(settings.model_dump(mode="python")))
    strategy = {k: v for k, v in data["strategy"].items() if k.startswith("ensemble_")}
    return {
        "models": data["models"],
        "strategy": strategy,
        "horizon": horizon,
        "feature_set": feature_set_hash,
        "exits": data["exits"],
        "risk": data["risk"],
        "paper": data["paper"],
        "margin": data["margin"],
        "universe": data["universe"],
        "max_leverage": data["trading"]["max_leverage"],
    }


def _canonical(value: Any) -> Any:
    """Return ``value`` with each Decimal as its shortest plain string: 2 and 2.0 are one
    configuration, not two trials."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, Mapping):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Trial:
    """One recorded evaluation."""

    data_key: str
    config_hash: str
    daily_sharpe: float | None  # None: a flat equity curve (no trade), counted as 0
    days: int
    control: bool  # a shuffled-label run: recorded, never counted
    run_name: str
    recorded_utc: str
    data: Mapping[str, Any]
    config: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialCount:
    """The distinct configurations evaluated on one data key, each with its newest Sharpe."""

    path: Path
    sharpes: dict[str, float]  # config hash -> daily Sharpe (a flat curve's as 0)
    controls: int  # shuffled-label runs on the same data, not counted
    unreadable: int  # lines that did not parse, skipped

    @property
    def trials(self) -> int:
        """Return the number of distinct configurations."""
        return len(self.sharpes)


def record(path: Path, trial: Trial) -> None:
    """Append ``trial`` to the ledger as one line (an ``OperationalError`` if it cannot)."""
    line = json.dumps(
        {
            "recorded_utc": trial.recorded_utc,
            "run_name": trial.run_name,
            "data_key": trial.data_key,
            "config_hash": trial.config_hash,
            "daily_sharpe": trial.daily_sharpe,
            "days": trial.days,
            "control": trial.control,
            "data": trial.data,
            "config": trial.config,
        },
        sort_keys=True,
        allow_nan=False,
    )
    payload = (line + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            payload = _after_a_cut_line(fd) + payload
            written = os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OperationalError(
            f"cannot record the evaluation in {path}: {exc.strerror or exc}"
        ) from exc
    if written != len(payload):
        raise OperationalError(f"cannot record the evaluation in {path}: a short write")


def _after_a_cut_line(fd: int) -> bytes:
    """Return a newline when the ledger's last line lacks its own (a crash mid-write): the
    next record would be glued to it and lost with it."""
    size = os.fstat(fd).st_size
    return b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""


def _parse(line: str) -> tuple[str, str, bool, float]:
    """Return a ledger line's data key, config hash, control flag and Sharpe (``ValueError``
    unless each has its type, the Sharpe finite)."""
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not an object")
    key, config, control, sharpe = (
        row["data_key"], row["config_hash"], row["control"], row["daily_sharpe"]
    )  # fmt: skip
    if not isinstance(key, str) or not isinstance(config, str) or not isinstance(control, bool):
        raise ValueError("a field of the wrong type")
    value = 0.0 if sharpe is None else float(sharpe)
    if not math.isfinite(value):  # NaN would make the variance, SR0 and DSR NaN
        raise ValueError("a Sharpe that is not finite")
    return key, config, control, value


def trials_on(path: Path, data_key: str) -> TrialCount:
    """Return the distinct configurations recorded on ``data_key`` (none without a ledger)."""
    sharpes: dict[str, float] = {}
    controls = unreadable = 0
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise OperationalError(f"cannot read the ledger {path}: {exc.strerror or exc}") from exc
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            key, config, control, value = _parse(line)
        except (ValueError, KeyError, TypeError):
            unreadable += 1
            continue
        if key != data_key:
            continue
        if control:
            controls += 1
        else:
            sharpes.pop(config, None)
            sharpes[config] = value  # the newest line of a configuration speaks for it
    return TrialCount(path=path, sharpes=sharpes, controls=controls, unreadable=unreadable)
