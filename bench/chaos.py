"""Crash and fault safety, measured: the bot SIGKILLed at random points against a faulty venue.

The venue is its own process (``tests/chaos_venue.py``: the fake Binance USD-M server of the
tests, extended to own and persist orders, fills, balances and positions, fill them against
replayed synthetic candles and serve those candles to the bot). The bot is ``qt run`` in live
perp mode (``tests/chaos_bot.py``), pointed at it on an accelerated clock (4 one-minute candles
per wall second), with a signal cadence that opens a trade every 6 candles, long and short in
turn, and exits half way. ``tests/chaos_harness.py`` kills the bot with SIGKILL at ``--kills``
seeded points (half at a random instant, half right after the venue booked a new order),
restarts it on the same database, and compares the bot with the venue after every restart and
at the end, until ``--orders`` orders went to the venue. Venue faults at ``--fault-rate`` of the
signed calls: a timeout after carrying the request out, 429 with Retry-After, 503, a cut
answer after carrying the request out, an order answered as accepted and never booked.

Then the same candles run again without kills or faults to the same market time (unless
``--no-reference``): the equity difference is what the kills and faults changed (entries
skipped while the bot was down, fills at other candles).

With ``--symbols N`` (1 to 4: BTC/USDT, ETH/USDT, SOL/USDT, BNB/USDT) the bot trades N symbols
on the same candle times, each one's cadence shifted so entries sometimes coincide on one
candle and sometimes not, under a position limit of N - 1 (``--max-open``), so they race for
it.

Prints kills, restarts, orders, fills, duplicates, lost and double-counted fills, position
mismatches, audit-trail gaps, the longest naked time (a position without a venue stop) while
the bot was up and the longest across a kill, the most positions open at once at the venue
against the limit, faults injected, retries, and the equity difference; then each target by
symbol; and the venue-fault alerts (the health check's ``health: venue faults is bad`` in the
bot's audit trail while the venue faulted; the health job runs every 0.5 wall s here). Exits 1
when a target is broken: 0 duplicates, 0 lost or double fills, 0 position mismatches, 0 audit
gaps, naked time while up within one sync interval (10 s), never more positions open at the
venue than the limit, at least one venue-fault alert when faults were injected.

With ``--faults``, the fault scenarios instead (``tests/chaos_faults.py``): ``--db-faults``
times another process holds SQLite's write lock while the bot trades (trading must go HALTED
with an alert, send no entry, stay halted after the lock goes until ``qt state resume``, then
trade again, its books matching the venue), then the venue's feed stops for a while (no entry
on a stale candle, the health alert, trading again once the feed is back). ``--symbols N``
and ``--max-open`` as for the kills (figures also by symbol, the most positions open at once
against the limit). Prints those figures; exits 1 when one is broken.

With ``--training``, kills during a training run instead (``tests/chaos_training.py``): the
bot's learning manager retrains XGBoost and LightGBM every few wall seconds in its worker
pool, and each of ``--kills`` kills lands while a worker fits (the harness waits for one to
compute). Prints the workers killed with it and how long they outlived it (an orphan: alive
1 s after), those killed while still starting, the trainings finished and the registry's
versions that verify, and the books' figures; exits 1 when a worker outlived its process by
a second, a version does not verify, no training finished after the kills, or a book's
target is broken.

Usage: .venv/bin/python bench/chaos.py [--kills 50] [--orders 500] [--seed 1] [--fault-rate 0.2]
                                      [--symbols 1] [--max-open N-1]
       .venv/bin/python bench/chaos.py --faults [--db-faults 3] [--seed 1] [--symbols 1]
       .venv/bin/python bench/chaos.py --training [--kills 10] [--fault-rate 0] [--seed 1]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chaos_faults import STALE_CANDLES, FaultConfig, FaultResult, run_faults  # noqa: E402
from tests.chaos_harness import (  # noqa: E402
    SYNC_INTERVAL_S,
    TARGETS,
    VENUE_FAULT_ALERT,
    ChaosConfig,
    ChaosResult,
    Check,
    run_chaos,
)
from tests.chaos_training import ORPHAN_S, TrainingResult, run_training_kills  # noqa: E402


def book_lines(f: Check, d: Check, after: str) -> list[str]:
    """Return the books' figures of the final comparison ``f`` and those after each restore or
    restart (``d``), one per line."""
    return [
        f"duplicates            {f.duplicates} (after {after}: {d.duplicates})",
        f"lost fills            {f.lost_fills}",
        f"double-counted fills  {f.double_fills} (after {after}: {d.double_fills})",
        f"position mismatches   {f.position_mismatches} (after {after}: {d.position_mismatches})",
        f"audit-trail gaps      {f.audit_gaps}",
    ]


def finish(report: str, broken: list[str]) -> int:
    """Print a session's figures and its verdict; return the exit status (1: a target broke)."""
    print(report)
    if broken:
        print(f"BROKEN: {', '.join(broken)}")
        return 1
    print("all targets met")
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def fault_report(r: FaultResult) -> str:
    """Return the fault session's figures, one per line."""
    f, d = r.final, r.during
    lines = [
        f"db faults             {r.db_faults} ({', '.join(r.db_kinds)}: the write lock held "
        "by another process, the disk full, the database read-only; "
        f"{r.killed_in_fault} with the bot killed during the fault; restarted during it: "
        f"{r.starts_refused} refused to start, {r.started_in_fault} came up)",
        f"halted                {_yes(r.halted == r.db_faults)} ({r.halted} of {r.db_faults} "
        f"stored HALTED; {r.halt_alerts} halt events of actor storage, "
        f"{r.halt_log_lines} CRITICAL log lines)",
        f"entries while halted  {r.entries_while_halted}",
        f"resumed by itself     {r.resumed_by_itself}",
        f"resumed by operator   {_yes(r.resumed_by_operator == r.db_faults)} "
        f"({r.resumed_by_operator} of {r.db_faults} traded again after qt state resume)",
        f"stale feed            entries on stale candles {r.stale_entries} (booked more than "
        f"{STALE_CANDLES} candles after their close), entries while stopped "
        f"{r.entries_while_stale}, health alert: {_yes(r.health_alerts > 0)} "
        f"({r.health_alerts}), trading after: {_yes(r.resumed_after_feed)}",
        f"orders at the venue   {r.orders}",
        f"fills at the venue    {r.fills}",
        *book_lines(f, d, "restores"),
        f"max open positions    {r.max_open_positions} at the venue (limit {r.position_limit}; "
        f"{', '.join(r.max_open_symbols) or 'none'})",
        f"wall time             {r.wall_s:.0f} s",
    ]
    if len(r.symbols) > 1:
        lines.append(f"by symbol ({len(r.symbols)}: {', '.join(r.symbols)})")
        lines.extend(f"  {line}" for line in fault_symbol_lines(r))
    lines.extend(f"  {note}" for note in (r.notes + d.notes + f.notes)[:20])
    return "\n".join(lines)


def fault_symbol_lines(r: FaultResult) -> list[str]:
    """Return each symbol's orders, fills, entries while halted or on a stale feed, health
    alerts and comparison targets (final/after restores), one a line."""
    out = []
    for symbol in r.symbols:
        mine = r.by_symbol.get(symbol, {})
        final = r.final.by_symbol.get(symbol, {})
        during = r.during.by_symbol.get(symbol, {})
        counts = ", ".join(
            f"{name.replace('_', ' ')} {final.get(name, 0)}/{during.get(name, 0)}"
            for name in TARGETS
        )
        out.append(
            f"{symbol:<9} {mine.get('orders', 0)} orders, {mine.get('fills', 0)} fills; "
            f"entries while halted {mine.get('entries_while_halted', 0)}, on stale candles "
            f"{mine.get('stale_entries', 0)}, while the feed stopped "
            f"{mine.get('entries_while_stale', 0)}; stale-data alerts "
            f"{mine.get('health_alerts', 0)}; {counts}"
        )
    return out


def faults_main(args: argparse.Namespace, base: Path) -> int:
    print(f"fault session in {base}", flush=True)
    result = run_faults(
        FaultConfig(
            workdir=base / "faults",
            db_faults=args.db_faults,
            seed=args.seed,
            symbols=args.symbols,
            max_open_positions=args.max_open,
        ),
        say=lambda line: print(line, flush=True),
    )
    return finish(fault_report(result), result.broken())


def training_report(r: TrainingResult) -> str:
    """Return the training session's figures, one per line."""
    f, d = r.final, r.during
    lines = [
        f"kills                 {r.kills} ({r.kills_in_training} while a worker fitted)",
        f"workers killed with   {r.workers_killed_with} fitting: the longest outlived its "
        f"process by {r.worker_exit_s:.2f} s; orphans (alive {ORPHAN_S:.0f} s after) "
        f"{r.orphans}",
        f"workers starting      {r.starting_killed} killed while importing their modules: "
        f"gone {r.starting_exit_s:.2f} s after at most (once started, they find the parent "
        "gone)",
        f"trainings finished    {r.trainings} ({r.training_failures} failed)",
        f"registry              {r.versions} versions, {r.versions_refused} refused "
        "(qt models list: files and sha256)",
        f"orders at the venue   {r.orders}",
        f"fills at the venue    {r.fills}",
        *book_lines(f, d, "restarts"),
        f"wall time             {r.wall_s:.0f} s",
    ]
    lines.extend(f"  {note}" for note in (r.notes + d.notes + f.notes)[:20])
    return "\n".join(lines)


def training_main(args: argparse.Namespace, base: Path) -> int:
    print(f"training session in {base}", flush=True)
    result = run_training_kills(
        ChaosConfig(
            workdir=base / "training",
            kills=args.kills,
            seed=args.seed,
            fault_rate=args.fault_rate,
            max_wall_s=args.max_wall_s,
        ),
        say=lambda line: print(line, flush=True),
    )
    return finish(training_report(result), result.broken())


def report(result: ChaosResult, reference: ChaosResult | None) -> str:
    """Return the session's figures, one per line."""
    f, d = result.final, result.during
    faults = ", ".join(f"{k} {v}" for k, v in result.faults.items())
    lines = [
        f"kills                 {result.kills}",
        f"restarts              {result.restarts} ({result.failed_starts} starts gave up on the "
        "faulting venue and were started again)",
        f"orders at the venue   {result.orders}",
        f"fills at the venue    {result.fills}",
        *book_lines(f, d, "restarts"),
        f"max naked, bot up     {result.naked_up_market_s:.1f} market s, "
        f"{result.naked_up_wall_s:.3f} wall s (target: {SYNC_INTERVAL_S} s)",
        f"max naked, over kill  {result.naked_down_market_s:.1f} market s",
        f"max open positions    {result.max_open_positions} at the venue (limit "
        f"{result.position_limit}; {', '.join(result.max_open_symbols) or 'none'}); "
        f"{result.limit_denials} entries the limit denied",
        f"exit-plan work        {result.tp_fills} take-profit fills, {result.stop_moves} stops "
        "moved (break-even after the first take-profit)",
        f"faults injected       {result.faults_injected} ({faults})",
        f"retries               {result.retries}",
        f"venue-fault alerts    {result.venue_fault_alerts} ('{VENUE_FAULT_ALERT}' in the audit "
        "trail while the venue faulted)",
        f"final equity          {result.equity:.2f}",
        f"wall time             {result.wall_s:.0f} s",
    ]
    if reference is not None:
        diff = result.equity - reference.equity
        lines.append(
            f"uninterrupted run     {reference.equity:.2f} ({reference.orders} orders, "
            f"{reference.fills} fills): difference {diff:+.2f}"
        )
    if len(result.symbols) > 1:
        lines.append(f"by symbol ({len(result.symbols)}: {', '.join(result.symbols)})")
        lines.extend(f"  {line}" for line in symbol_lines(result))
    for note in (d.notes + f.notes)[:20]:
        lines.append(f"  {note}")
    return "\n".join(lines)


def symbol_lines(result: ChaosResult) -> list[str]:
    """Return each symbol's orders, fills, targets (final/after restarts) and naked time, one
    a line."""
    out = []
    for symbol in result.symbols:
        final = result.final.by_symbol.get(symbol, {})
        during = result.during.by_symbol.get(symbol, {})
        counts = ", ".join(
            f"{name.replace('_', ' ')} {final.get(name, 0)}/{during.get(name, 0)}"
            for name in TARGETS
        )
        naked = result.naked_up_by_symbol.get(symbol, 0.0)
        out.append(
            f"{symbol:<9} {result.orders_by_symbol.get(symbol, 0)} orders, "
            f"{result.fills_by_symbol.get(symbol, 0)} fills; {counts}; "
            f"naked up {naked:.1f} market s"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--max-wall-s", type=float, default=1_800)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--faults", action="store_true", help="the fault scenarios instead")
    parser.add_argument("--db-faults", type=int, default=3)
    parser.add_argument("--training", action="store_true", help="kills during trainings")
    parser.add_argument("--symbols", type=int, default=1, help="traded at once (1 to 4)")
    parser.add_argument("--max-open", type=int, default=None, help="default: symbols - 1")
    args = parser.parse_args()
    # A SIGTERM ends the harness through its cleanup: the venue and the bot go with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = args.workdir or Path(tempfile.mkdtemp(prefix="qt-chaos-"))
    if args.faults:
        return faults_main(args, base)
    if args.training:
        return training_main(args, base)
    cfg = ChaosConfig(
        workdir=base / "chaos",
        kills=args.kills,
        orders=args.orders,
        seed=args.seed,
        fault_rate=args.fault_rate,
        max_wall_s=args.max_wall_s,
        symbols=args.symbols,
        max_open_positions=args.max_open,
    )
    print(f"chaos session in {base}", flush=True)
    result = run_chaos(cfg, say=lambda line: print(line, flush=True))
    reference = None
    if not args.no_reference:
        print("the uninterrupted run, no faults, to the same market time", flush=True)
        reference = run_chaos(
            ChaosConfig(
                workdir=base / "reference",
                kills=0,
                orders=0,
                seed=args.seed,
                fault_rate=0.0,
                candles_per_s=8.0,  # no kills to wait for: the same market time, sooner
                max_wall_s=args.max_wall_s,
                end_market_ms=result.end_market_ms,
                symbols=args.symbols,
                max_open_positions=args.max_open,
            )
        )
    return finish(report(result, reference), result.broken())


if __name__ == "__main__":
    sys.exit(main())
