"""The chaos harness: the bot killed at random points against a venue that owns the truth.

``run_chaos`` starts the venue (``tests.chaos_venue``) and the bot (``tests.chaos_bot``: ``qt
run`` in live perp mode) as two processes, SIGKILLs the bot at ``kills`` points drawn from a
seeded generator and restarts it on the same database, and compares the bot's books with the
venue after every restart and at the end. The bot trades ``symbols`` symbols on the same candle
times (``tests.chaos_bot``'s cadence shifted per symbol), under a position limit below their
number, so entries of several symbols race for it. Half the kills land at a random instant of the
trading loop, half right after the venue booked a new order (the bot has sent it and may not
have recorded the answer yet). A start that gives up (the venue faulted on every try of a read
the start needs: the bot exits 1, fail closed) is started again, as a supervisor would, and
counted.

The comparisons, each a count that must be 0, made per symbol and summed:

- duplicates: a client id with more than one order at the venue that filled or is open (an
  order sent twice), which covers two entries for one signal (an entry's id is its candle's);
- lost fills / double-counted fills: per trade (its client ids share the entry's candle) and
  per side (entry, exits), what the venue filled against what the bot booked (its open trades
  in the database and its closed round trips);
- position mismatches: the venue's position against the bot's open trades (asked three times
  0.3 s apart before one counts, since a fill takes up to one sync interval to be heard of);
- audit-trail gaps: a filled quantity of one of our orders that the trail's ``order.filled``
  events do not hold, or an order of ours at the venue that no event of the trail names.

The venue-fault alert: while the venue faults, the process must say so (the health check's
``health: venue faults is bad``, an ``alert.raised`` event of the audit trail); the health job
runs every ``health_s`` wall seconds here (every wall minute in a real run: the bot lives
seconds between kills), and a session that injected faults with no such alert raised before
they were turned off is broken.

Naked time: the venue measures every span a position had no reduce-only stop covering it; the
spans the bot was down (from the kill until the restarted bot read the venue's positions) are
its own figure. The target is one sync interval of naked time while the bot is up.

Open positions: the venue keeps the most symbols that held a position at once (counted after
every fill, so at every instant a position changed); the target is the bot's limit
(``QT__RISK__MAX_OPEN_POSITIONS``), which the system we replace broke (17 open against 10).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.chaos_venue import CHAOS_SYMBOLS, market_id

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SYNC_INTERVAL_S = 10  # the venue_sync job's market interval (jobs.registry)
START_MS = 1_767_225_600_000  # 2026-01-01: the market time the session starts at
ZERO = Decimal(0)
TARGETS = ("duplicates", "lost_fills", "double_fills", "position_mismatches", "audit_gaps")
VENUE_FAULT_ALERT = "health: venue faults is bad"  # core.services.health's alert title
OUR_NAME = {market_id(symbol): symbol for symbol in CHAOS_SYMBOLS}


@dataclass
class ChaosConfig:
    """One session: how many kills, how many orders at least, faults, speed, where."""

    workdir: Path
    kills: int = 50
    orders: int = 500
    seed: int = 1
    fault_rate: float = 0.2
    timeframe: str = "1m"
    candles_per_s: float = 4.0
    every: int = 6  # an entry every so many candles
    timeout_ms: int = 1_000  # the bot's HTTP timeout (a venue timeout waits past it)
    min_up_s: float = 0.3  # a random kill lands this long after the bot is up, at least
    max_up_s: float = 2.5
    settle_s: float = 3.0  # faults off, then this long before the final comparison
    max_wall_s: float = 900.0
    end_market_ms: int | None = None  # run to this market time (the uninterrupted reference)
    bot_env: dict[str, str] = field(default_factory=dict)  # more of the bot's environment
    symbols: int = 1  # traded at once: the first ones of CHAOS_SYMBOLS
    max_open_positions: int | None = None  # the bot's limit (None: one less than symbols)
    health_s: float = 0.5  # the health job's wall interval (a wall minute in a real run)

    @property
    def symbol_names(self) -> tuple[str, ...]:
        if not 1 <= self.symbols <= len(CHAOS_SYMBOLS):
            raise ValueError(f"symbols must be 1 to {len(CHAOS_SYMBOLS)}, was {self.symbols}")
        return CHAOS_SYMBOLS[: self.symbols]

    @property
    def position_limit(self) -> int:
        """Return the bot's max open positions: below the symbols traded, so it binds."""
        if self.max_open_positions is not None:
            return self.max_open_positions
        return max(1, self.symbols - 1)

    @property
    def speed(self) -> float:
        tf_s = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}[self.timeframe]
        return self.candles_per_s * tf_s


@dataclass
class Check:
    """One comparison of the bot with the venue: the totals, and each target by symbol."""

    duplicates: int = 0
    lost_fills: int = 0
    double_fills: int = 0
    position_mismatches: int = 0
    audit_gaps: int = 0
    notes: list[str] = field(default_factory=list)
    by_symbol: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, name: str, symbol: str, note: str, n: int = 1) -> None:
        """Count ``n`` of target ``name`` in ``symbol`` (in the total and the symbol's)."""
        setattr(self, name, getattr(self, name) + n)
        mine = self.by_symbol.setdefault(symbol, dict.fromkeys(TARGETS, 0))
        mine[name] += n
        self.notes.append(note)

    def clear(self, *names: str) -> None:
        """Forget the counts of ``names`` (and their notes are the caller's to drop)."""
        for name in names:
            setattr(self, name, 0)
            for mine in self.by_symbol.values():
                mine[name] = 0

    def add(self, other: Check) -> None:
        self.duplicates += other.duplicates
        self.lost_fills += other.lost_fills
        self.double_fills += other.double_fills
        self.position_mismatches += other.position_mismatches
        self.audit_gaps += other.audit_gaps
        self.notes.extend(other.notes)
        for symbol, theirs in other.by_symbol.items():
            mine = self.by_symbol.setdefault(symbol, dict.fromkeys(TARGETS, 0))
            for name, n in theirs.items():
                mine[name] += n


@dataclass
class ChaosResult:
    """What a session measured."""

    kills: int = 0
    restarts: int = 0
    orders: int = 0
    fills: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    final: Check = field(default_factory=Check)
    during: Check = field(default_factory=Check)
    naked_up_market_s: float = 0.0
    naked_up_wall_s: float = 0.0
    naked_down_market_s: float = 0.0  # the longest span that overlapped the bot being down
    naked_up_by_symbol: dict[str, float] = field(default_factory=dict)  # market s, bot up
    max_open_positions: int = 0  # the most symbols holding a position at once at the venue
    max_open_symbols: list[str] = field(default_factory=list)  # which, when it first happened
    position_limit: int = 0  # the bot's QT__RISK__MAX_OPEN_POSITIONS
    symbols: tuple[str, ...] = ()
    limit_denials: int = 0  # entries the position limit denied (risk.order_denied events)
    orders_by_symbol: dict[str, int] = field(default_factory=dict)  # orders and algo orders
    fills_by_symbol: dict[str, int] = field(default_factory=dict)
    end_market_ms: int = 0
    equity: Decimal = ZERO
    wall_s: float = 0.0
    bot_exit_codes: list[int] = field(default_factory=list)
    failed_starts: int = 0  # starts that gave up on a faulting venue (started again)
    venue_fault_alerts: int = 0  # VENUE_FAULT_ALERT events raised while the venue faulted
    tp_fills: int = 0  # take-profit orders that filled (all or part)
    stop_moves: int = 0  # stops placed after a trade's first (its plan moved the stop)

    @property
    def faults_injected(self) -> int:
        return sum(self.faults.values())

    def broken(self) -> list[str]:
        """Return the targets this session broke."""
        out = []
        for name in (
            "duplicates",
            "lost_fills",
            "double_fills",
            "position_mismatches",
            "audit_gaps",
        ):
            if getattr(self.final, name) or getattr(self.during, name):
                out.append(name)
        if self.naked_up_wall_s > SYNC_INTERVAL_S:
            out.append("naked_time")
        if self.max_open_positions > self.position_limit:
            out.append("max_open_positions")
        if self.faults_injected and not self.venue_fault_alerts:
            out.append("no venue-fault alert")
        return out


# --- the venue's truth and the bot's books ---------------------------------------------------


def bot_database(workdir: Path) -> Path:
    """Return the bot's database in a session's ``workdir`` (its data folder's live one)."""
    return workdir / "ud" / "quantum_trader_live.sqlite"


def read_venue(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "venue.json").read_text())


def _group(cid: str) -> tuple[str, str]:
    """Return (trade id, tag) of one of our client ids (the trade id is the entry's id)."""
    head, _, tag = cid.rpartition("-")
    return f"{head}-e", tag


def venue_symbols(venue: dict[str, Any]) -> list[str]:
    """Return the symbols the venue trades, by our names (``BTC/USDT``)."""
    return [OUR_NAME[mid] for mid in venue["symbols"]]


def venue_fills(venue: dict[str, Any], symbol: str | None = None) -> dict[str, Decimal]:
    """Return the filled quantity at the venue by our client id (a triggered stop's by the
    stop's id), of ``symbol``'s trades only when given."""
    mid = None if symbol is None else market_id(symbol)
    by_order = {o["orderId"]: o["clientOrderId"] for o in venue["orders"]}
    for a in venue["algos"]:
        if a.get("actualOrderId"):
            by_order[int(a["actualOrderId"])] = a["clientAlgoId"]
    out: dict[str, Decimal] = defaultdict(Decimal)
    for t in venue["trades"]:
        if mid is None or t["symbol"] == mid:
            out[by_order.get(t["orderId"], f"order{t['orderId']}")] += Decimal(t["qty"])
    return dict(out)


def bot_books(db: Path) -> tuple[dict[str, dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """Return the bot's trades by id ({symbol, side, amount, exited, open}) and its audit
    trail."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        trades: dict[str, dict[str, Any]] = {}
        row = con.execute("select value from kv_state where key = 'engine_trades'").fetchone()
        if row:
            for t in json.loads(row[0])["trades"]:
                exited = sum((Decimal(leg["amount"]) for leg in t["legs"]), ZERO)
                trades[t["trade_id"]] = {
                    "symbol": t["symbol"],
                    "side": t["side"],
                    "amount": Decimal(t["amount"]),
                    "exited": exited,
                    "open": not t.get("finished"),
                }
        for trade_id, symbol, side, amount, legs in con.execute(
            "select trade_id, symbol, side, amount, legs from trades"
        ):
            exited = sum((Decimal(leg["amount"]) for leg in json.loads(legs)), ZERO)
            trades[trade_id] = {
                "symbol": symbol,
                "side": side,
                "amount": Decimal(amount),
                "exited": exited,
                "open": False,
            }
        events = [
            (topic, json.loads(payload))
            for topic, payload in con.execute("select topic, payload from events order by id")
        ]
    finally:
        con.close()
    return trades, events


def alerts_until(db: Path, title: str, until_ms: int) -> int:
    """Return how many ``alert.raised`` events titled ``title`` the bot's audit trail holds
    from before market time ``until_ms``."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "select payload from events where topic = 'alert.raised' and ts_ms <= ?", (until_ms,)
        ).fetchall()
    finally:
        con.close()
    return sum(1 for (payload,) in rows if json.loads(payload).get("title") == title)


def compare(venue: dict[str, Any], db: Path) -> Check:
    """Compare the bot's books with the venue's truth (one reading of each), symbol by
    symbol."""
    check = Check()
    trades, events = bot_books(db)
    for symbol in venue_symbols(venue):
        mid = market_id(symbol)
        algos = [a for a in venue["algos"] if a["symbol"] == mid]
        ours = [
            o
            for o in venue["orders"]
            if o["clientOrderId"].startswith("qt-") and o["symbol"] == mid
        ]
        ours += [
            {**a, "clientOrderId": a["clientAlgoId"], "status": a["algoStatus"]}
            for a in algos
            if a["clientAlgoId"].startswith("qt-")
        ]
        fills = venue_fills(venue, symbol)
        mine = {k: t for k, t in trades.items() if t["symbol"] == symbol}
        check.by_symbol[symbol] = dict.fromkeys(TARGETS, 0)  # a clean symbol says so too
        _duplicates(check, symbol, ours, algos, fills)
        _fills(check, symbol, fills, mine)
        _trail(check, symbol, ours, fills, events)
    return check


def _duplicates(
    check: Check,
    symbol: str,
    ours: list[dict[str, Any]],
    algos: list[dict[str, Any]],
    fills: dict[str, Decimal],
) -> None:
    """One client id, more than one order that filled or is working: sent twice."""
    live: dict[str, int] = defaultdict(int)
    for o in ours:
        working = o["status"] in ("NEW", "PARTIALLY_FILLED")
        if working or Decimal(o.get("executedQty") or 0) > 0:
            live[o["clientOrderId"]] += 1
    for a in algos:  # a triggered stop filled: its fills are its order's
        if a["clientAlgoId"] in fills and a["algoStatus"] != "NEW":
            live[a["clientAlgoId"]] += 1
    for cid, n in live.items():
        if n > 1:
            check.count("duplicates", symbol, f"duplicate: {cid} x{n}", n - 1)


def _fills(
    check: Check, symbol: str, fills: dict[str, Decimal], trades: dict[str, dict[str, Any]]
) -> None:
    """What the venue filled against what the bot booked, per trade and side."""
    venue_side: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for cid, qty in fills.items():
        if cid.startswith("qt-"):
            trade_id, tag = _group(cid)
            venue_side[(trade_id, "entry" if tag == "e" else "exit")] += qty
    keys = set(venue_side) | {(t, s) for t in trades for s in ("entry", "exit")}
    for trade_id, side in sorted(keys):
        at_venue = venue_side.get((trade_id, side), ZERO)
        t = trades.get(trade_id)
        booked = ZERO if t is None else (t["amount"] if side == "entry" else t["exited"])
        if at_venue == booked:
            continue
        kind = "lost fill" if at_venue > booked else "double fill"
        check.count(
            "lost_fills" if at_venue > booked else "double_fills",
            symbol,
            f"{kind}: {trade_id} {side} venue {at_venue} bot {booked}",
        )


def _trail(
    check: Check,
    symbol: str,
    ours: list[dict[str, Any]],
    fills: dict[str, Decimal],
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """Fills of ours the trail's order.filled events do not hold; orders no event names."""
    trail: dict[str, Decimal] = defaultdict(Decimal)
    named: set[str] = set()
    for topic, payload in events:
        cid = payload.get("client_order_id")
        if cid:
            named.add(cid)
            if topic == "order.filled":
                trail[cid] += Decimal(str(payload["amount"]))
    for cid, qty in fills.items():
        said = trail.get(cid, ZERO)
        if cid.startswith("qt-") and said < qty:
            check.count(
                "audit_gaps", symbol, f"audit gap: {cid} filled {qty}, the trail says {said}"
            )
    for o in ours:
        if o["clientOrderId"] not in named:
            check.count(
                "audit_gaps", symbol, f"audit gap: {o['clientOrderId']} at the venue, in no event"
            )


def bot_positions(db: Path) -> dict[str, Decimal]:
    """Return the bot's net position by symbol (its open trades: long +, short -)."""
    trades, _ = bot_books(db)
    out: dict[str, Decimal] = defaultdict(Decimal)
    for t in trades.values():
        if t["open"]:
            held = t["amount"] - t["exited"]
            out[t["symbol"]] += held if t["side"] == "long" else -held
    return dict(out)


def position_mismatches(workdir: Path, db: Path, *, within_s: float = 5.0) -> dict[str, str]:
    """Return {} once the venue's position in every symbol equals the bot's, asked every
    0.25 s for ``within_s`` (a fill takes a sync interval to be heard of, more while the venue
    faults and the bot backs off), else what differed by symbol."""
    deadline = time.monotonic() + within_s
    while True:
        venue = read_venue(workdir)
        booked = bot_positions(db)
        differ = {}
        for symbol in venue_symbols(venue):
            at_venue = Decimal(venue["position"].get(market_id(symbol), "0"))
            bot = booked.get(symbol, ZERO)
            if at_venue != bot:
                differ[symbol] = f"position {symbol}: venue {at_venue} bot {bot}"
        if not differ or time.monotonic() > deadline:
            return differ
        time.sleep(0.25)


def position_mismatch(workdir: Path, db: Path, *, within_s: float = 5.0) -> str:
    """Return "" once every symbol's position agrees (``position_mismatches``), else what
    differed."""
    return "; ".join(position_mismatches(workdir, db, within_s=within_s).values())


# --- processes -------------------------------------------------------------------------------


# A ladder the replayed one-minute candles reach (a median 3-candle move is 0.055 %): the
# take-profits fill, the stop moves to break-even after the first, so kills land during
# exit-plan updates too (the default ladder, +1.95 % first, is never reached in 3 candles).
CHAOS_LADDER = {
    "QT__EXITS__TP_PCTS": "[0.04, 0.08, 0.15]",
    "QT__EXITS__STOP_PCT": "0.12",
    "QT__EXITS__BREAK_EVEN_BUFFER_PCT": "0.01",
}


def _exit_work(venue: dict[str, Any]) -> tuple[int, int]:
    """Return how many of our take-profits filled, and how many stops a plan moved (placed
    after the trade's first, s0: tags s1, s2, ...), across the venue's books."""
    tps = sum(1 for cid in venue_fills(venue) if cid.startswith("qt-") and _tag(cid)[0] == "t")
    stops = [_tag(a["clientAlgoId"]) for a in venue["algos"] if a["clientAlgoId"].startswith("qt-")]
    return tps, sum(1 for tag in stops if tag[0] == "s" and tag != "s0")


def _tag(cid: str) -> str:
    return _group(cid)[1] or "?"


def _env(cfg: ChaosConfig, url: str, anchor: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT__")}
    env.update(
        PYTHONPATH=str(ROOT),
        QT__APP__DATA_DIR=str(cfg.workdir / "ud"),
        QT__TRADING__MODE="live",
        QT__EXCHANGE__MARKET_TYPE="perp",
        QT__EXCHANGE__API_KEY="k",
        QT__EXCHANGE__API_SECRET="s",
        QT__TRADING__LIVE_CONFIRMATION="I accept real-money risk",
        QT__TRADING__SYMBOLS=json.dumps(list(cfg.symbol_names)),
        QT__RISK__MAX_OPEN_POSITIONS=str(cfg.position_limit),
        # The position limit is what binds across symbols, not the exposure cap
        QT__RISK__MAX_TOTAL_EXPOSURE_PCT=str(cfg.symbols),
        QT__TRADING__TIMEFRAME=cfg.timeframe,
        QT__EXCHANGE__TIMEOUT_MS=str(cfg.timeout_ms),
        QT__RISK__ALLOW_SHORT="true",
        QT__RISK__SYMBOL_COOLDOWN_S="0",
        QT__RISK__MAX_ENTRIES_PER_HOUR="0",
        QT__RISK__LOSS_STREAK_LIMIT="0",
        QT__RISK__DAILY_LOSS_LIMIT_PCT="0",
        QT__BRAINS__ENABLED="false",
        CHAOS_VENUE_URL=url,
        CHAOS_START_MS=str(START_MS),
        CHAOS_ANCHOR_WALL_MS=str(anchor),
        CHAOS_SPEED=str(cfg.speed),
        CHAOS_EVERY=str(cfg.every),
        CHAOS_HEALTH_S=str(cfg.health_s),
    )
    env.update(CHAOS_LADDER)
    env.update(cfg.bot_env)
    return env


class BotExitedAtStart(RuntimeError):
    """The bot process ended before it was up."""


class Session:
    """The two processes of one session."""

    def __init__(self, cfg: ChaosConfig) -> None:
        self.cfg = cfg
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        self.anchor = time.time_ns() // 1_000_000 + 1_500
        replay = int(cfg.max_wall_s * cfg.candles_per_s) + 100
        self._venue_log = open(cfg.workdir / "venue.log", "ab")
        self.venue = subprocess.Popen(  # noqa: S603 - our own module
            [
                PYTHON,
                "-m",
                "tests.chaos_venue",
                "--port",
                "0",
                "--state",
                str(cfg.workdir / "venue.json"),
                "--symbols",
                ",".join(cfg.symbol_names),
                "--timeframe",
                cfg.timeframe,
                "--candles",
                str(replay),
                "--start-ms",
                str(START_MS),
                "--anchor-wall-ms",
                str(self.anchor),
                "--speed",
                str(cfg.speed),
                "--fault-rate",
                str(cfg.fault_rate),
                "--fault-seed",
                str(cfg.seed),
                "--timeout-s",
                str(cfg.timeout_ms / 1000),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=self._venue_log,
            text=True,
        )
        assert self.venue.stdout is not None
        line = self.venue.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"the venue did not start: {line!r}")
        self.url = line.split()[1]
        self.bot: subprocess.Popen[bytes] | None = None
        self.bot_log = open(cfg.workdir / "bot.log", "ab")
        self.exit_codes: list[int] = []
        self.failed_starts: list[int] = []  # exit codes of starts that gave up
        self.faults_off_ms: int | None = None  # market time the venue's faults were turned off

    def control(self, **body: Any) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - the venue on loopback
            f"{self.url}/chaos/control",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return dict(json.loads(answer.read()))

    def start_bot(self, *, entries: bool = True) -> None:
        """Start the bot (``entries``: False, it opens nothing new: the final incarnation)."""
        self.control(down=True)  # up again once the bot reads the venue's positions
        env = _env(self.cfg, self.url, self.anchor)
        if not entries:
            env["CHAOS_EVERY"] = "0"
        self.bot = subprocess.Popen(  # noqa: S603 - our own module
            [PYTHON, "-m", "tests.chaos_bot"],
            cwd=self.cfg.workdir,
            env=env,
            stdout=self.bot_log,
            stderr=self.bot_log,
        )

    def start_until_up(self, *, entries: bool = True, tries: int = 3) -> None:
        """Start the bot and wait until it is up; a start that gave up (the venue faulted on
        every try of a read the start needs: the bot exits 1, fail closed) is started again,
        as a supervisor would, and counted in ``failed_starts``."""
        for attempt in range(1, tries + 1):
            self.start_bot(entries=entries)
            try:
                self.wait_up()
                return
            except BotExitedAtStart:
                assert self.bot is not None
                self.failed_starts.append(self.bot.returncode)
                if attempt == tries:
                    raise

    def wait_up(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = read_venue(self.cfg.workdir)
            if len(state["down_spans"]) >= len(self.exit_codes) + 1:
                return
            if self.bot is not None and self.bot.poll() is not None:
                raise BotExitedAtStart(
                    f"the bot exited with {self.bot.returncode} at start: see bot.log"
                )
            time.sleep(0.05)
        raise RuntimeError("the bot did not come up")

    def kill_bot(self) -> None:
        assert self.bot is not None
        self.bot.send_signal(signal.SIGKILL)
        self.exit_codes.append(self.bot.wait())

    def stop_bot(self) -> None:
        assert self.bot is not None
        self.bot.send_signal(signal.SIGTERM)
        try:
            self.exit_codes.append(self.bot.wait(timeout=60))
        except subprocess.TimeoutExpired:
            self.bot.kill()
            self.exit_codes.append(self.bot.wait())

    def close(self) -> None:
        try:
            self._end_processes()
        finally:
            if self.venue.stdout is not None:
                self.venue.stdout.close()
            self.bot_log.close()
            self._venue_log.close()

    def _end_processes(self) -> None:
        if self.bot is not None and self.bot.poll() is None:
            self.bot.kill()
            self.bot.wait()
        if self.venue.poll() is None:
            self.venue.send_signal(signal.SIGTERM)
            try:
                self.venue.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.venue.kill()
                self.venue.wait()


def _wait_for_new_order(workdir: Path, seen: int, until: float) -> None:
    """Return once the venue booked more than ``seen`` orders (or at ``until``)."""
    while time.monotonic() < until:
        try:
            state = read_venue(workdir)
        except (OSError, ValueError):
            continue
        if len(state["orders"]) + len(state["algos"]) > seen:
            return
        time.sleep(0.002)


def _naked(venue: dict[str, Any]) -> tuple[float, float, float, dict[str, float]]:
    """Return the longest naked span while the bot was up (market s, wall s), the longest one
    that overlapped a span the bot was down (market s), and by symbol the longest while up
    (market s)."""
    down = [tuple(s) for s in venue["down_spans"]]
    spans = list(venue["naked_spans"])
    spans += [{**s, "wall_ms": 0, "to_wall": 2**62} for s in venue["naked_open"]]
    up_market = up_wall = down_market = 0.0
    by_symbol = dict.fromkeys(venue_symbols(venue), 0.0)
    for s in spans:
        overlaps = any(s["from_wall"] < b and a < s["to_wall"] for a, b in down)
        if overlaps:
            down_market = max(down_market, s["market_ms"] / 1000)
        else:
            up_market = max(up_market, s["market_ms"] / 1000)
            up_wall = max(up_wall, s["wall_ms"] / 1000)
            symbol = OUR_NAME[s["symbol"]]
            by_symbol[symbol] = max(by_symbol[symbol], s["market_ms"] / 1000)
    return up_market, up_wall, down_market, by_symbol


def _limit_denials(db: Path) -> int:
    """Return how many entries the bot's position limit denied (its audit trail's word)."""
    _, events = bot_books(db)
    return sum(
        1
        for topic, payload in events
        if topic == "risk.order_denied" and payload.get("reason") == "max_open_positions"
    )


def _retries(log: Path) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("retrying in")


def _final_check(session: Session, db: Path) -> Check:
    """The end: faults off for a while, then the venue's matching frozen (no order fills on a
    candle any more), the bot stopped and started once more without entries (its start reads
    the venue: what filled after its last sync is heard of then), stopped again; then the
    books against the venue."""
    cfg = session.cfg
    session.faults_off_ms = int(session.control(fault_rate=0.0)["now_ms"])
    time.sleep(cfg.settle_s)
    session.control(freeze=True)
    session.stop_bot()
    session.start_until_up(entries=False)
    position_mismatch(cfg.workdir, db, within_s=10.0)  # its sync has run
    time.sleep(0.5)
    session.stop_bot()
    final = compare(read_venue(cfg.workdir), db)
    for symbol, mismatch in position_mismatches(cfg.workdir, db).items():
        final.count("position_mismatches", symbol, f"final: {mismatch}")
    return final


def check_after_restart(cfg: ChaosConfig, db: Path, when: str) -> tuple[Check, dict[str, str]]:
    """Compare the books with the venue a few sync intervals after a restart; return the
    check and the positions that differed, by symbol. Fills and their events may still be on
    their way (the final comparison counts those); a duplicate or a fill counted twice is
    never on its way."""
    time.sleep(0.5)  # a few sync intervals: what the venue did meanwhile is heard of
    mismatches = position_mismatches(cfg.workdir, db)
    check = compare(read_venue(cfg.workdir), db)
    check.clear("lost_fills", "audit_gaps")
    check.notes = [n for n in check.notes if n.startswith(("duplicate", "double"))]
    for symbol, mismatch in mismatches.items():
        check.count("position_mismatches", symbol, f"{when}: {mismatch}")
    return check, mismatches


def run_chaos(cfg: ChaosConfig, *, say: Any = print) -> ChaosResult:
    """Run one session; return its figures."""
    rng = random.Random(cfg.seed)
    result = ChaosResult()
    started = time.monotonic()
    session = Session(cfg)
    db = bot_database(cfg.workdir)
    try:
        session.start_until_up()
        while True:
            state = read_venue(cfg.workdir)
            orders = len(state["orders"]) + len(state["algos"])
            if cfg.end_market_ms is not None:
                if session.control()["now_ms"] >= cfg.end_market_ms:
                    break
                time.sleep(0.1)
                continue
            if result.kills >= cfg.kills and orders >= cfg.orders:
                break
            if time.monotonic() - started > cfg.max_wall_s:
                say("wall-time budget spent: ending the session")
                break
            if result.kills >= cfg.kills:
                time.sleep(0.2)
                continue
            up_for = rng.uniform(cfg.min_up_s, cfg.max_up_s)
            if rng.random() < 0.5:
                time.sleep(up_for)  # a random instant of the loop
            else:  # right after the venue booked an order the bot sent
                time.sleep(cfg.min_up_s)
                _wait_for_new_order(cfg.workdir, orders, time.monotonic() + up_for * 3)
            session.kill_bot()
            result.kills += 1
            session.start_until_up()
            result.restarts += 1
            check, mismatches = check_after_restart(cfg, db, f"after restart {result.restarts}")
            result.during.add(check)
            said = "; ".join(mismatches.values()) or "ok"
            say(
                f"kill {result.kills}: {orders} orders so far; duplicates {check.duplicates}, "
                f"double fills {check.double_fills}, positions {said}"
            )
        result.final = _final_check(session, db)
    finally:
        session.close()
    venue = read_venue(cfg.workdir)
    result.orders = len(venue["orders"]) + len(venue["algos"])
    result.fills = len(venue["trades"])
    result.faults = dict(venue["faults"])
    (
        result.naked_up_market_s,
        result.naked_up_wall_s,
        result.naked_down_market_s,
        result.naked_up_by_symbol,
    ) = _naked(venue)
    result.symbols = tuple(venue_symbols(venue))
    for symbol in result.symbols:
        mid = market_id(symbol)
        result.orders_by_symbol[symbol] = sum(
            o["symbol"] == mid for o in venue["orders"] + venue["algos"]
        )
        result.fills_by_symbol[symbol] = sum(t["symbol"] == mid for t in venue["trades"])
    result.max_open_positions = int(venue["max_open"]["count"])
    result.max_open_symbols = [OUR_NAME[mid] for mid in venue["max_open"]["symbols"]]
    result.position_limit = cfg.position_limit
    result.limit_denials = _limit_denials(db)
    faults_off = session.faults_off_ms if session.faults_off_ms is not None else 2**62
    result.venue_fault_alerts = alerts_until(db, VENUE_FAULT_ALERT, faults_off)
    result.end_market_ms = int(venue["now_ms"])
    result.equity = Decimal(venue["equity"])
    result.retries = _retries(cfg.workdir / "bot.log")
    result.tp_fills, result.stop_moves = _exit_work(venue)
    result.wall_s = time.monotonic() - started
    result.bot_exit_codes = session.exit_codes
    result.failed_starts = len(session.failed_starts)
    return result
