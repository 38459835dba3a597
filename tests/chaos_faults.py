"""The chaos harness's fault scenarios: a database that cannot be written, a feed that stops.

``run_faults`` starts the venue and the bot as ``run_chaos`` does (no kills, no venue faults),
lets it trade, then:

- Database faults (``db_faults`` episodes, their kinds in turn from ``db_kinds``) for
  ``db_fault_s`` while the bot trades: ``locked``, another process holds SQLite's write lock
  (``BEGIN EXCLUSIVE``), the bot's writes wait ``CHAOS_BUSY_TIMEOUT_MS`` and fail; ``full``,
  the disk is full (SQLite may not grow the file: SQLITE_FULL); ``readonly``, the database
  refuses writes (SQLITE_READONLY; both through ``tests.chaos_bot.faulty_begin``, SQLite's own
  errors). In the episodes of kind ``kill_during`` the bot is SIGKILLed once it halted in
  memory (before the halt could reach the database) and restarted after the fault: the new
  process must start HALTED. Then the fault goes, and for ``hold_s`` nobody resumes:
  trading must be HALTED on disk (fail closed, the halt written once the database takes
  writes), with its alert (the ``trading.state_changed`` event of actor ``storage`` in the
  audit trail, a CRITICAL line in the log), and no entry may reach the venue from the halt
  until the operator's resume. The operator then runs ``qt state resume`` (the CLI, as its own
  process, on the bot's database); an entry must follow. After each restore the bot's books
  are compared with the venue (the harness's comparison).
- A stale feed: the venue's klines stop at the candles closed by then for ``stale_s`` (orders
  still fill on the candles closing meanwhile); the health job (run every ``health_s`` wall
  seconds here) must raise its alert (``health: data <symbol> is bad``), no entry may be sent
  on a stale candle (one that closed more than ``STALE_CANDLES`` candles before the venue
  booked the entry: the health check's own rule), and once the feed returns an entry must
  follow.

The session ends with ``run_chaos``'s final comparison (settle, freeze, restart without
entries): duplicates, lost and double fills, position mismatches and audit-trail gaps.

With ``symbols`` above 1 the bot trades that many symbols on the same candles under a position
limit below their number (``run_chaos``'s setting), and every figure is also counted by symbol:
its orders and fills, entries while halted, on stale candles and while the feed stopped, its
health alert, the comparisons; the most positions open at once at the venue are checked
against the limit.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.halt_note import SUFFIX as HALT_NOTE_SUFFIX
from tests.chaos_harness import (
    OUR_NAME,
    PYTHON,
    ROOT,
    ChaosConfig,
    Check,
    Session,
    _env,
    _final_check,
    bot_database,
    compare,
    position_mismatches,
    read_venue,
)
from tests.chaos_venue import market_id

DB_KINDS = ("locked", "full", "readonly")
STALE_CANDLES = 3  # core.services.health.HealthConfig.stale_candles
ENTRY_TAG = "-e"
SYMBOL_FIGURES = (
    "orders",
    "fills",
    "entries_while_halted",
    "stale_entries",
    "entries_while_stale",
    "health_alerts",
)


@dataclass
class FaultConfig:
    """One fault session: where, how many database faults, how long each lasts."""

    workdir: Path
    db_faults: int = 1
    db_kinds: tuple[str, ...] = DB_KINDS  # the episodes' faults, in turn
    # the episodes of this kind SIGKILL the bot once it halted, restart it after the fault
    kill_during: str = "readonly"
    # the episodes of this kind SIGKILL the bot once it halted and restart it during the fault
    restart_during: str = "full"
    db_fault_s: float = 3.0  # the fault lasts this long (wall s)
    hold_s: float = 2.0  # after the lock went: nobody resumes yet
    stale_s: float = 3.0  # the feed stopped this long (wall s)
    warmup_s: float = 2.0  # trading before the first fault
    health_s: float = 0.5  # the health job's wall interval
    busy_timeout_ms: int = 500  # how long the bot's writes wait for the lock
    candles_per_s: float = 4.0
    seed: int = 1
    settle_s: float = 1.0
    # candles of delay between the bot's decision and the venue's booking not counted as
    # staleness: at 4 candles a wall second, a busy machine's second of latency is 4 of them
    # (the bench: 0, the strict rule; the test suite's parallel load: 2)
    latency_candles: float = 0.0
    symbols: int = 1  # traded at once: the first ones of CHAOS_SYMBOLS
    max_open_positions: int | None = None  # the bot's limit (None: one less than symbols)

    @property
    def fault_file(self) -> Path:
        """The file the bot reads its disk's state from (``full``, ``readonly``, or none)."""
        return self.workdir / "db_fault"

    def chaos(self) -> ChaosConfig:
        return ChaosConfig(
            workdir=self.workdir,
            kills=0,
            orders=0,
            seed=self.seed,
            fault_rate=0.0,
            candles_per_s=self.candles_per_s,
            settle_s=self.settle_s,
            max_wall_s=120.0,
            symbols=self.symbols,
            max_open_positions=self.max_open_positions,
            health_s=self.health_s,
            bot_env={
                "CHAOS_BUSY_TIMEOUT_MS": str(self.busy_timeout_ms),
                "CHAOS_DB_FAULT_FILE": str(self.fault_file),
            },
        )


@dataclass
class FaultResult:
    """What a fault session measured."""

    db_faults: int = 0
    db_kinds: list[str] = field(default_factory=list)  # each episode's fault
    killed_in_fault: int = 0  # episodes whose bot was killed during the fault
    starts_refused: int = 0  # starts during a fault that gave up (the database not writable)
    started_in_fault: int = 0  # starts during a fault that came up (they must stay HALTED)
    halted: int = 0  # episodes after which the database said HALTED (fail closed)
    halt_alerts: int = 0  # trading.state_changed events of actor "storage" in the trail
    halt_log_lines: int = 0  # CRITICAL "trading HALTED" lines in the bot's log
    entries_while_halted: int = 0
    resumed_by_itself: int = 0  # episodes whose state was not HALTED before the operator
    resumed_by_operator: int = 0  # episodes followed by an entry after the operator's resume
    stale_entries: int = 0  # entries booked more than STALE_CANDLES after their candle closed
    entries_while_stale: int = 0  # entries booked while the feed was stopped
    health_alerts: int = 0  # "health: data <symbol> is bad" alerts
    resumed_after_feed: bool = False  # an entry on a fresh candle after the feed returned
    orders: int = 0
    fills: int = 0
    during: Check = field(default_factory=Check)  # the comparisons after each restore
    final: Check = field(default_factory=Check)
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    symbols: tuple[str, ...] = ()
    position_limit: int = 0  # the bot's QT__RISK__MAX_OPEN_POSITIONS
    max_open_positions: int = 0  # the most symbols holding a position at once at the venue
    max_open_symbols: list[str] = field(default_factory=list)  # which, when it first happened
    # per symbol: orders, fills, entries_while_halted, stale_entries, entries_while_stale,
    # health_alerts
    by_symbol: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, symbol: str, name: str, n: int = 1) -> None:
        """Count ``n`` of figure ``name`` in ``symbol``'s figures."""
        mine = self.by_symbol.setdefault(symbol, dict.fromkeys(SYMBOL_FIGURES, 0))
        mine[name] += n

    def broken(self) -> list[str]:
        """Return what this session broke."""
        out = self._db_broken()
        if self.stale_entries or self.entries_while_stale:
            out.append("entries on stale candles")
        if not self.health_alerts:
            out.append("no health alert")
        if not self.resumed_after_feed:
            out.append("no trading after the feed returned")
        for name in ("duplicates", "lost_fills", "double_fills", "position_mismatches"):
            if getattr(self.final, name) or getattr(self.during, name):
                out.append(name)
        if self.final.audit_gaps:
            out.append("audit_gaps")
        if self.max_open_positions > self.position_limit:
            out.append("max_open_positions")
        return out

    def _db_broken(self) -> list[str]:
        """Return what the database faults broke."""
        out = []
        if self.halted < self.db_faults:
            out.append("not halted")
        if self.halt_alerts < self.db_faults or not self.halt_log_lines:
            out.append("no halt alert")
        if self.entries_while_halted:
            out.append("entries while halted")
        if self.resumed_by_itself:
            out.append("resumed by itself")
        if self.resumed_by_operator < self.db_faults:
            out.append("no trading after the operator's resume")
        return out


def _candle_ms(cid: str) -> int:
    """Return the open time of the candle an entry's client id was decided on."""
    return int(cid.split("-")[-2], 36) * 1000


def venue_entries(venue: dict[str, Any]) -> list[dict[str, Any]]:
    """Return our entry orders at the venue (the entry's id is its candle's: ``...-e``)."""
    return [
        o
        for o in venue["orders"]
        if o["clientOrderId"].startswith("qt-") and o["clientOrderId"].endswith(ENTRY_TAG)
    ]


def _entries_between(venue: dict[str, Any], from_ms: int, to_ms: int) -> list[str]:
    return [o["clientOrderId"] for o in venue_entries(venue) if from_ms <= o["time"] < to_ms]


def _symbol_of(venue: dict[str, Any], cid: str) -> str:
    """Return our name of the symbol of our order ``cid`` at the venue."""
    mid = next(o["symbol"] for o in venue["orders"] if o["clientOrderId"] == cid)
    return OUR_NAME[mid]


def stale_entries(venue: dict[str, Any], tf_ms: int, latency_candles: float = 0.0) -> list[str]:
    """Return the entries the venue booked more than ``STALE_CANDLES`` (plus
    ``latency_candles`` of delivery) after their candle's close (decided on a candle the health
    check calls stale)."""
    limit = (STALE_CANDLES + latency_candles) * tf_ms
    return [
        f"{o['clientOrderId']} {(o['time'] - _candle_ms(o['clientOrderId']) - tf_ms) / tf_ms:.1f}"
        " candles late"
        for o in venue_entries(venue)
        if o["time"] - _candle_ms(o["clientOrderId"]) - tf_ms > limit
    ]


def stored_state(db: Path) -> str:
    """Return the trading state stored in the bot's database ("" when never set)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute("select value from kv_state where key = 'trading_state'").fetchone()
    finally:
        con.close()
    return str(row[0]) if row else ""


def halt_time(db: Path, since_ms: int) -> int | None:
    """Return when the bot failed closed (its first storage halt at or after ``since_ms``, by
    the event's market time: the event waited in memory for the lock to go)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "select ts_ms, payload from events where topic = ? and ts_ms >= ?",
            ("trading.state_changed", since_ms),
        ).fetchall()
    finally:
        con.close()
    times = [int(ts) for ts, payload in rows if json.loads(payload).get("actor") == "storage"]
    return min(times, default=None)


def trail(db: Path, topic: str) -> list[dict[str, Any]]:
    """Return the payloads of the audit trail's events of ``topic``."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("select payload from events where topic = ?", (topic,)).fetchall()
    finally:
        con.close()
    return [json.loads(r[0]) for r in rows]


def _wait_entry_after(session: Session, from_ms: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        venue = read_venue(session.cfg.workdir)
        if _entries_between(venue, from_ms, 2**62):
            return True
        time.sleep(0.1)
    return False


def operator_resume(session: Session) -> str:
    """Run ``qt state resume`` as the operator would, on the bot's database; return its output."""
    env = _env(session.cfg, session.url, session.anchor)
    done = subprocess.run(  # noqa: S603 - our own CLI
        [PYTHON, "-c", "from bot.cli import app; app()", "state", "resume", "--reason", "db back"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"qt state resume failed: {done.stdout}{done.stderr}")
    return done.stdout


def _check_books(session: Session, db: Path, when: str) -> Check:
    """After a restore: positions agree and nothing is doubled, symbol by symbol (fills on
    their way may not be booked yet: the final comparison counts those)."""
    mismatches = position_mismatches(session.cfg.workdir, db)
    check = compare(read_venue(session.cfg.workdir), db)
    check.clear("lost_fills", "audit_gaps")
    check.notes = [n for n in check.notes if n.startswith(("duplicate", "double"))]
    for symbol, mismatch in mismatches.items():
        check.count("position_mismatches", symbol, f"{when}: {mismatch}")
    return check


def _hold_db_fault(db: Path, kind: str, fc: FaultConfig, during: Any = None) -> None:
    """Make the bot's database fail as ``kind`` says for ``fc.db_fault_s``, then recover;
    ``during()`` runs while it fails (the fault lasts its time at least)."""
    if kind not in DB_KINDS:
        raise ValueError(f"unknown database fault {kind!r}: one of {', '.join(DB_KINDS)}")
    lock = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        if kind == "locked":
            lock.execute("BEGIN EXCLUSIVE")  # every write of the bot waits, then fails
        else:
            fc.fault_file.write_text(kind)
        ends = time.monotonic() + fc.db_fault_s
        if during is not None:
            during()
        time.sleep(max(0.0, ends - time.monotonic()))
    finally:
        if kind == "locked":
            lock.execute("ROLLBACK")
        else:
            fc.fault_file.unlink()  # space freed, permission back
        lock.close()


def _start_in_fault(session: Session, result: FaultResult) -> None:
    """Start the bot while its database cannot be written: it must not trade (it refuses to
    start, or starts HALTED); whichever it did is counted."""
    workdir = session.cfg.workdir
    spans = len(read_venue(workdir)["down_spans"])
    session.start_bot()
    bot = session.bot
    assert bot is not None
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        code = bot.poll()
        if code is not None:
            if len(read_venue(workdir)["down_spans"]) > spans:
                session.exit_codes.append(code)  # it read the venue's book before it gave up
            result.starts_refused += 1
            return
        if len(read_venue(workdir)["down_spans"]) > spans:
            result.started_in_fault += 1
            return
        time.sleep(0.05)
    raise RuntimeError("the bot neither started nor gave up on a database it cannot write")


def _kill_once_halted(session: Session, db: Path, fc: FaultConfig, result: FaultResult) -> None:
    """SIGKILL the bot as soon as it halted in memory (its halt kept beside the database, not
    in it yet); the fault lasts until then (a full disk fails only the writes that need a new
    page: the first may take a while), 10 s at most."""
    note = db.with_name(db.name + HALT_NOTE_SUFFIX)
    deadline = time.monotonic() + max(fc.db_fault_s, 10.0)
    while not note.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not note.exists():
        result.notes.append("kill during the fault: the bot had not halted yet")
    session.kill_bot()
    result.killed_in_fault += 1


def _db_fault(session: Session, db: Path, result: FaultResult, fc: FaultConfig, say: Any) -> None:
    """One episode: the fault, its end, nobody resumes for a while, then the operator does."""
    kind = fc.db_kinds[result.db_faults % len(fc.db_kinds)]
    started = session.control()["now_ms"]
    if kind == fc.kill_during:  # killed mid-outage, restarted once the database is back
        _hold_db_fault(db, kind, fc, lambda: _kill_once_halted(session, db, fc, result))
        session.start_bot()
        session.wait_up()
    elif kind == fc.restart_during:  # killed mid-outage, restarted while it lasts

        def kill_and_restart() -> None:
            _kill_once_halted(session, db, fc, result)
            _start_in_fault(session, result)

        _hold_db_fault(db, kind, fc, kill_and_restart)
        if session.bot is None or session.bot.poll() is not None:
            session.start_bot()  # it refused to start: started again once the fault went
            session.wait_up()
    else:
        _hold_db_fault(db, kind, fc)
    result.db_faults += 1
    result.db_kinds.append(kind)
    # Nobody resumes: the halt goes to disk with the first read of the state after the lock
    # (an order's gate, the status console's poll every few seconds), and stays. Watched for
    # ``hold_s`` at least, and until it is on disk (10 s more at most).
    released = time.monotonic()
    state, seen = "", False
    while True:
        state = stored_state(db)
        seen = seen or state == "halted"
        if seen and state != "halted":
            break  # left the halt with nobody resuming
        waited = time.monotonic() - released
        if (seen and waited >= fc.hold_s) or waited >= fc.hold_s + 10.0:
            break
        time.sleep(0.05)
    result.halted += seen
    if state != "halted":
        result.resumed_by_itself += seen
        result.notes.append(
            f"db fault {result.db_faults} ({kind}): stored state {state!r} before resume"
        )
    result.during.add(_check_books(session, db, f"after db fault {result.db_faults}"))
    # Before the command: the bot may trade again the moment the resume is stored, before
    # the command returns (an entry 40 ms after it was once counted as one while halted)
    resumed = session.control()["now_ms"]
    operator_resume(session)
    venue = read_venue(session.cfg.workdir)
    # From the halt on, not from the lock: an entry whose write-ahead save went through just
    # before the lock is sent (rightly) before any write fails, and so before any halt.
    halted_at = halt_time(db, since_ms=started)
    halted_entries = _entries_between(venue, halted_at or started, resumed)
    result.entries_while_halted += len(halted_entries)
    for cid in halted_entries:
        result.count(_symbol_of(venue, cid), "entries_while_halted")
    result.notes.extend(f"entry while halted: {cid}" for cid in halted_entries)
    if _wait_entry_after(session, resumed, within_s=10.0):
        result.resumed_by_operator += 1
    say(
        f"db fault {result.db_faults} ({kind}"
        f"{', the bot killed during it' if kind in (fc.kill_during, fc.restart_during) else ''}"
        f"{', restarted during it' if kind == fc.restart_during else ''}): "
        f"stored state {state or 'active'}, "
        f"{len(halted_entries)} entries while halted, resumed by the operator"
    )


def _flat_after_next_entry(session: Session, within_s: float = 10.0) -> None:
    """Return once a new entry came and every symbol is flat again at the venue: the feed
    then stops between two trades, and the first entry signal lies inside the stopped span
    (the hard case: a catch-up that enters on a candle the feed was late with)."""
    workdir = session.cfg.workdir
    seen = len(venue_entries(read_venue(workdir)))
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        venue = read_venue(workdir)
        held = [float(v) for v in venue["position"].values()]
        if len(venue_entries(venue)) > seen and not any(held):
            return
        time.sleep(0.02)


def _stale_feed(session: Session, db: Path, result: FaultResult, fc: FaultConfig) -> None:
    _flat_after_next_entry(session)
    stopped = session.control(feed=False)["now_ms"]
    time.sleep(fc.stale_s)
    back = session.control(feed=True)["now_ms"]
    venue = read_venue(session.cfg.workdir)
    while_stale = _entries_between(venue, stopped, back)
    result.entries_while_stale = len(while_stale)
    for cid in while_stale:
        result.count(_symbol_of(venue, cid), "entries_while_stale")
    result.resumed_after_feed = _wait_entry_after(session, back, within_s=10.0)
    time.sleep(fc.health_s)  # an alert raised as the feed came back is in the trail
    alerts = [
        a["title"]
        for a in trail(db, "alert.raised")
        if a.get("title", "").startswith("health: data ") and a["title"].endswith(" is bad")
    ]
    result.health_alerts = len(alerts)
    for title in alerts:
        result.count(title.removeprefix("health: data ").removesuffix(" is bad"), "health_alerts")


def run_faults(fc: FaultConfig, *, say: Any = print) -> FaultResult:
    """Run one fault session; return its figures."""
    cfg = fc.chaos()
    result = FaultResult()
    started = time.monotonic()
    session = Session(cfg)
    db = bot_database(cfg.workdir)
    tf_ms = 60_000
    try:
        session.start_bot()
        session.wait_up()
        time.sleep(fc.warmup_s)
        for _ in range(fc.db_faults):
            _db_fault(session, db, result, fc, say)
        _stale_feed(session, db, result, fc)
        say(
            f"stale feed: {result.entries_while_stale} entries while stopped, "
            f"{result.health_alerts} health alert(s)"
        )
        result.final = _final_check(session, db)
    finally:
        session.close()
    venue = read_venue(cfg.workdir)
    late = stale_entries(venue, tf_ms, fc.latency_candles)
    result.stale_entries = len(late)
    result.notes.extend(f"stale entry: {x}" for x in late)
    for x in late:
        result.count(_symbol_of(venue, x.split()[0]), "stale_entries")
    result.orders = len(venue["orders"]) + len(venue["algos"])
    result.fills = len(venue["trades"])
    result.symbols = cfg.symbol_names
    for symbol in result.symbols:
        mid = market_id(symbol)
        result.count(symbol, "orders", sum(o["symbol"] == mid for o in venue["orders"]))
        result.count(symbol, "orders", sum(a["symbol"] == mid for a in venue["algos"]))
        result.count(symbol, "fills", sum(t["symbol"] == mid for t in venue["trades"]))
    result.position_limit = cfg.position_limit
    result.max_open_positions = int(venue["max_open"]["count"])
    result.max_open_symbols = [OUR_NAME[mid] for mid in venue["max_open"]["symbols"]]
    result.halt_alerts = sum(
        1 for e in trail(db, "trading.state_changed") if e["actor"] == "storage"
    )
    log = (cfg.workdir / "bot.log").read_text(errors="replace")
    result.halt_log_lines = log.count("the database cannot be written: trading HALTED")
    result.wall_s = time.monotonic() - started
    return result
