"""The chaos harness's kills during a training run: the bot SIGKILLed while its learning
manager's workers fit models.

The bot (``tests.chaos_bot``) runs with the learning manager on (the ensemble's members, XGBoost
and LightGBM, retrained every few wall seconds on the stored candles, in the worker pool
``bot.model_training`` keeps) while it trades the cadence, as in ``run_chaos``. The harness
waits until a worker of the bot is computing (its CPU time grows), lets the fit go on for a
random moment, and kills the bot. Then: every training worker must be gone within
``ORPHAN_S`` (a worker that outlives its process fits on for nobody, holding a core and memory
the restarted process needs: ``bot.orphan_guard``); the restarted bot's books must match the
venue as after any kill; and at the end, after a training that finished, every version in the
model registry must verify (its files whole, their sha256 as recorded: ``qt models list``), so
no kill left a half-written artifact that a later start would serve.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos_harness import (
    PYTHON,
    ROOT,
    ChaosConfig,
    Check,
    Session,
    _env,
    _final_check,
    bot_books,
    bot_database,
    check_after_restart,
    read_venue,
)

ORPHAN_S = 1.0  # a training worker alive this long after its process was killed: an orphan
STARTING_S = 10.0  # how long a worker killed while starting is waited for
TRAINING_WAIT_S = 60.0  # a training must start within this long of the bot being up
# The learning manager on, due every few wall seconds at 4 one-minute candles a second: a due
# check every 3 market minutes (0.75 wall s), a training once 6 new candles closed; small
# trees keep each fit to a second or two. Candidates are gated, then shadowed for 0 hours.
TRAINING_ENV = {
    "QT__STRATEGY__PROVIDER": "ensemble",
    "QT__LEARNING__ENABLED": "true",
    "QT__LEARNING__CHECK_EVERY_HOURS": "0.05",
    "QT__LEARNING__EVERY_HOURS": "0.1",
    "QT__LEARNING__MIN_NEW_CANDLES": "6",
    "QT__LEARNING__SHADOW_HOURS": "0",
    "QT__LEARNING__BACKTEST_VALIDATION": "false",
    "QT__MODELS__MEMBERS": '["xgb", "lgbm"]',
    "QT__MODELS__TREES": "40",
    "QT__MODELS__WINDOW_DAYS": "0",
}


@dataclass
class TrainingResult:
    """What a session of kills during training measured."""

    kills: int = 0
    kills_in_training: int = 0  # kills while a worker of the bot was computing
    workers_killed_with: int = 0  # the started workers alive at those kills
    orphans: int = 0  # started workers still alive ORPHAN_S after their process was killed
    worker_exit_s: float = 0.0  # the longest a started worker outlived its killed process
    # Workers killed while still starting (importing their modules, before their guard is
    # set): each ends once started, as it finds its parent gone
    starting_killed: int = 0
    starting_exit_s: float = 0.0
    trainings: int = 0  # model.trained events in the trail
    training_failures: int = 0  # model.training_failed events
    versions: int = 0  # versions in the registry at the end
    versions_refused: int = 0  # of them, those whose files do not verify
    orders: int = 0
    fills: int = 0
    during: Check = field(default_factory=Check)
    final: Check = field(default_factory=Check)
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def broken(self) -> list[str]:
        """Return the targets this session broke."""
        out = [
            name
            for name in ("duplicates", "lost_fills", "double_fills", "position_mismatches")
            if getattr(self.final, name) or getattr(self.during, name)
        ]
        if self.final.audit_gaps:
            out.append("audit_gaps")
        if self.kills_in_training < self.kills:
            out.append("kills_outside_training")
        if self.orphans or self.starting_exit_s >= STARTING_S:
            out.append("orphan_workers")
        if not self.trainings:
            out.append("no_training_finished")
        if self.versions_refused:
            out.append("registry_refused")
        return out


def descendants(pid: int) -> list[int]:
    """Return the processes below ``pid`` (children, theirs, ...), from ``/proc``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)] = int(stat[1])
    out: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        out.extend(children)
        frontier.extend(children)
    return out


def _stat(pid: int) -> list[str] | None:
    """Return the fields of ``/proc/<pid>/stat`` after the command name (state first), or
    None for a process that is gone (or a zombie: it computes nothing any more)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields


def cpu_ticks(pids: list[int]) -> int:
    """Return the CPU time (user + system, clock ticks) of the live ones of ``pids``."""
    total = 0
    for pid in pids:
        stat = _stat(pid)
        if stat is not None:
            total += int(stat[11]) + int(stat[12])  # utime, stime
    return total


def training_workers(bot_pid: int) -> list[int]:
    """Return the bot's pool workers (spawned interpreters; not multiprocessing's resource
    tracker, which ends once they did)."""
    out = []
    for pid in descendants(bot_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            out.append(pid)
    return out


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def started_workers(pids: list[int]) -> list[int]:
    """Return the workers of ``pids`` that started: their guard's thread runs beside the main
    one and the queue's (3 threads at least; a worker still importing its modules has 2)."""
    return [p for p in pids if _threads(p) >= 3]


def wait_for_training(bot_pid: int, timeout_s: float) -> list[int]:
    """Return the bot's workers once one of them fits: started and computing (its CPU time
    grows over 0.1 s); [] when none did within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        workers = training_workers(bot_pid)
        fitting = started_workers(workers)
        if fitting:
            before = cpu_ticks(fitting)
            time.sleep(0.1)
            if cpu_ticks(fitting) > before:
                return workers
        else:
            time.sleep(0.05)
    return []


def wait_gone(pids: list[int], timeout_s: float) -> tuple[float, int]:
    """Return how long until every one of ``pids`` ended (``timeout_s`` at most) and how many
    are still alive then."""
    started = time.monotonic()
    while True:
        alive = [p for p in pids if _stat(p) is not None]
        waited = time.monotonic() - started
        if not alive or waited >= timeout_s:
            return waited, len(alive)
        time.sleep(0.02)


def registry_check(env: dict[str, str]) -> tuple[int, int, str]:
    """Return (versions, refused, the listing) from ``qt models list`` on the bot's database."""
    done = subprocess.run(  # noqa: S603 - our own CLI
        [PYTHON, "-c", "from bot.cli import app; app()", "models", "list"],
        cwd=ROOT,
        env={**env, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"qt models list failed: {done.stdout}{done.stderr}")
    rows = [line for line in done.stdout.splitlines() if "verified" in line or "refused" in line]
    refused = sum(1 for line in rows if "refused" in line)
    return len(rows), refused, done.stdout


def _trained(db: Path) -> tuple[int, int]:
    _trades, events = bot_books(db)
    topics = [topic for topic, _ in events]
    return topics.count("model.trained"), topics.count("model.training_failed")


def run_training_kills(cfg: ChaosConfig, *, say: Any = print) -> TrainingResult:
    """Run one session of ``cfg.kills`` kills, each during a training; return its figures."""
    cfg.bot_env.update(TRAINING_ENV)
    rng = random.Random(cfg.seed)
    result = TrainingResult()
    started = time.monotonic()
    session = Session(cfg)
    db = bot_database(cfg.workdir)
    try:
        session.start_until_up()
        while result.kills < cfg.kills and time.monotonic() - started < cfg.max_wall_s:
            assert session.bot is not None
            workers = wait_for_training(session.bot.pid, TRAINING_WAIT_S)
            time.sleep(rng.uniform(0.0, 0.4))  # somewhere inside the fit
            fitting = started_workers(workers)
            session.kill_bot()
            result.kills += 1
            if workers:
                result.kills_in_training += 1
                result.workers_killed_with += len(fitting)
                waited, alive = wait_gone(fitting, ORPHAN_S)
                result.worker_exit_s = max(result.worker_exit_s, waited)
                result.orphans += alive
                starting = [p for p in workers if p not in fitting]
                result.starting_killed += len(starting)
                waited, _ = wait_gone(starting, STARTING_S)
                result.starting_exit_s = max(result.starting_exit_s, waited)
                for pid in workers:  # not left to burn the next session's cores
                    _kill_quietly(pid)
            else:
                result.notes.append(f"kill {result.kills}: no training seen within the wait")
            session.start_until_up()
            check, _ = check_after_restart(cfg, db, f"after kill {result.kills}")
            result.during.add(check)
            say(
                f"kill {result.kills}: {'during a training, ' if workers else ''}"
                f"{len(workers)} worker(s), gone after {result.worker_exit_s:.2f} s at most; "
                f"duplicates {check.duplicates}, double fills {check.double_fills}"
            )
        # A training that finishes after the last restart: what the kills left, a start serves.
        before, _ = _trained(db)
        deadline = time.monotonic() + TRAINING_WAIT_S
        while _trained(db)[0] <= before and time.monotonic() < deadline:
            time.sleep(0.5)
        result.final = _final_check(session, db)
    finally:
        session.close()
    result.trainings, result.training_failures = _trained(db)
    env = _env(cfg, session.url, session.anchor)
    result.versions, result.versions_refused, listing = registry_check(env)
    if result.versions_refused:
        result.notes.append(listing)
    venue = read_venue(cfg.workdir)
    result.orders = len(venue["orders"]) + len(venue["algos"])
    result.fills = len(venue["trades"])
    result.wall_s = time.monotonic() - started
    return result


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass
