"""Train the RL sizer off the trading process, for the learning manager's ``rl_sizer`` lane.

A training run is ``qt evaluate --sizing`` on the stored candles of the last
``QT__SIZING__TRAIN_DAYS`` (0: all of them): the ensemble walked forward, its trades the
candidates, RL against the simple sizers out of sample, the policy of every candidate saved
with the gate's verdict. It runs in a process of its own (``python -m bot.sizer_training``:
the walk-forward spawns its own workers, which a pool worker could not), given the process's
settings through a pipe as JSON (its secrets never touch the disk), killed with its workers at
``QT__LEARNING__TIMEOUT_MINUTES``. What it wrote is read back as a ``TrainedSizer``; its
output goes to ``train.log`` beside, kept when it failed (the ``KEEP_FAILED`` newest).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import uuid
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.orphan_guard import end_with_parent
from core.clock import Clock
from core.config import Settings
from core.errors import DataError, DependencyError
from core.ml.rl.sizer_versions import SIZER
from core.ml.versions import MODELS_DIR
from core.services.sizer_learning import TrainedSizer

DAY_MS = 86_400_000
RESULT = "result.json"
LOG = "train.log"
KEEP_FAILED = 3  # the newest failed runs' staging folders (their logs) kept


async def train_sizer(settings: Settings, *, data_dir: Path, clock: Clock) -> TrainedSizer:
    """Run one training in its own process and return what it trained (see module)."""
    root = data_dir / MODELS_DIR / SIZER
    _drop_old_runs(root)
    staging = root / f".train-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    now = clock.now_ms()
    days = settings.sizing.train_days
    request = {
        "settings": settings_document(settings),
        "out": str(staging),
        "start_ms": now - round(days * DAY_MS) if days else None,
        "end_ms": now,
        "parent_pid": os.getpid(),  # it ends with this process (bot.orphan_guard)
    }
    timeout_s = settings.learning.timeout_minutes * 60
    with (staging / LOG).open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.sizer_training",
            stdin=asyncio.subprocess.PIPE,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own group: a kill takes the walk-forward's workers
        )
        try:
            await asyncio.wait_for(proc.communicate(json.dumps(request).encode()), timeout_s)
        except BaseException as exc:
            _kill(proc.pid)
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise DependencyError(
                    f"the {SIZER} training timed out after {timeout_s / 60:g} minutes "
                    f"(QT__LEARNING__TIMEOUT_MINUTES); its log: {staging / LOG}"
                ) from None
            raise
    if proc.returncode != 0:
        raise DataError(
            f"the {SIZER} training failed (exit {proc.returncode}): {_last_line(staging / LOG)}"
            f" (its log: {staging / LOG})"
        )
    try:
        doc = json.loads((staging / RESULT).read_text())
        # out of the staging folder (then removed) into one registration moves
        folder = root / f".trained-{uuid.uuid4().hex[:8]}"
        os.replace(doc["policy"], folder)
        trained = TrainedSizer(
            folder=folder,
            train_start_ms=int(doc["train_start_ms"]),
            symbols=tuple(str(s) for s in doc["symbols"]),
            lines=tuple(str(line) for line in doc["lines"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"the {SIZER} training wrote no usable result in {staging}: {exc}") from exc
    shutil.rmtree(staging, ignore_errors=True)
    return trained


def settings_document(settings: Settings) -> dict[str, Any]:
    """Return ``settings`` as JSON data with the secrets' values (for the pipe only: the
    training process validates it back into the same settings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [plain(v) for v in value]
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, Decimal | Path):
            return str(value)
        return value

    return {k: plain(v) for k, v in dict(settings.model_dump(mode="python")).items()}


def _drop_old_runs(root: Path) -> None:
    """Remove failed runs' staging folders (left for their logs, or by a killed process) but
    the ``KEEP_FAILED - 1`` newest: the run starting now may add one more."""
    if not root.is_dir():
        return
    failed = sorted(root.glob(".train-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in failed[KEEP_FAILED - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip()[:300] if lines else "no output"


# --- the training process ------------------------------------------------------------------


async def _train(settings: Settings, out: str, start_ms: int | None, end_ms: int) -> None:
    from bot.cli_backtest import RunFiles, ensemble_for, load_run
    from bot.evaluate import evaluate
    from bot.sizing_comparison import compare_sizing, walk_sizes_config
    from bot.sizing_report import LABELS, write_policy
    from bot.trials import ledger_path

    folder = Path(out)
    run = await load_run(settings, RunFiles([], [], []))
    provider, trainer = ensemble_for(settings)
    ev = await evaluate(
        settings,
        run,
        provider,
        trainer,
        start_ms=start_ms,
        end_ms=end_ms,
        full=False,
        run_name=SIZER,
        ledger=ledger_path(settings),
    )
    s = settings.sizing
    cmp = await compare_sizing(ev.result, walk_sizes_config(s), margin=s.gate_margin)
    where, _sha = write_policy(cmp, folder, SIZER)
    lines = [
        f"{len(cmp.trades.candidates)} walk-forward trades, {cmp.out_of_sample} sized out of "
        f"sample in {len(cmp.folds)} folds; PPO trained in {cmp.train_s:.0f} s"
    ]
    for score in cmp.scores:
        sharpe = "-" if score.sharpe is None else f"{score.sharpe:.2f}"
        lines.append(
            f"{LABELS.get(score.method, score.method)}: final equity "
            f"{score.final_equity:.3f}, Sharpe {sharpe}, max drawdown "
            f"{score.max_drawdown_pct:.1f} %"
        )
    lines.append(f"gate: {'passed' if cmp.gate.passed else 'not passed'}: {cmp.gate.reason}")
    starts = [int(series.ts_ms[0]) for series in run.series.values() if len(series)]
    doc: dict[str, Any] = {
        "policy": str(where),
        "train_start_ms": max(min(starts), start_ms or 0) if starts else start_ms or 0,
        "symbols": sorted(run.series),
        "lines": lines,
    }
    (folder / RESULT).write_text(json.dumps(doc, indent=2))


def main() -> int:
    """The training process: read the request from stdin, train, write the result."""
    request = json.loads(sys.stdin.buffer.read())
    end_with_parent(int(request["parent_pid"]))  # killed, the bot takes its training along
    settings = Settings.model_validate(request["settings"])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_train(settings, request["out"], request["start_ms"], request["end_ms"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
