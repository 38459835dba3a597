"""The chaos harness's fault scenarios, reduced (``bench/chaos.py --faults`` is the full one):
the bot, ``qt run`` in live perp mode as its own process against the chaos venue, while its
database fails for a while three times (another process holds the SQLite write lock; the disk
is full; the database is read-only), and then while the venue's feed stops (BTC/USDT only:
with two symbols under the suite's load a first entry once reached the venue 6.5 candles after
its candle, past the stale rule's 3 and the 2 of delivery allowed here; ``bench/chaos.py
--faults --symbols 2`` runs them on two).
Trading fails closed (HALTED on disk with its alert, no entry until the operator's ``qt state
resume``, then entries again), the stale feed enters nothing on a stale candle and raises the
health alert, and the books match the venue after the restore and at the end, in each symbol."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos_faults import DB_KINDS, FaultConfig, run_faults


@pytest.mark.slow
def test_a_locked_full_or_readonly_database_halts_until_resumed_a_stale_feed_enters_nothing(
    tmp_path: Path,
) -> None:
    result = run_faults(
        FaultConfig(
            workdir=tmp_path / "faults",
            db_faults=len(DB_KINDS),
            warmup_s=1.0,
            db_fault_s=2.0,
            hold_s=1.0,
            settle_s=0.5,
            latency_candles=2.0,  # the suite's parallel load delays orders (bench: strict)
        ),
        say=lambda _line: None,
    )
    notes = result.notes + result.during.notes + result.final.notes
    assert result.broken() == [], notes
    assert result.db_kinds == ["locked", "full", "readonly"]
    assert result.killed_in_fault == 2  # in the full disk (restarted in it) and the read-only one
    assert result.db_faults == result.halted == 3
    # one per episode at least; a killed process's own halt too when its keep held it before
    # the kill (the kill comes once its halt note is written: the event may not be kept yet)
    assert result.halt_alerts >= result.db_faults
    assert result.halt_log_lines >= 3  # the CRITICAL line of each
    assert result.entries_while_halted == result.resumed_by_itself == 0
    assert result.resumed_by_operator == 3
    assert result.stale_entries == result.entries_while_stale == 0
    assert result.health_alerts >= 1 and result.resumed_after_feed
    assert result.orders >= 10 and result.fills >= 4, result  # it traded around the faults
    final = result.final
    assert (final.duplicates, final.lost_fills, final.double_fills) == (0, 0, 0)
    assert final.position_mismatches == final.audit_gaps == 0
    assert result.symbols == ("BTC/USDT",) and result.position_limit == 1
    assert 1 <= result.max_open_positions <= result.position_limit
    for symbol in result.symbols:  # each symbol compared on its own, and clean
        assert set(final.by_symbol[symbol].values()) == {0}, (symbol, notes)
        mine = result.by_symbol[symbol]
        assert mine["entries_while_halted"] == mine["stale_entries"] == 0, (symbol, mine)
        assert mine["entries_while_stale"] == 0, (symbol, mine)
    assert sum(m["orders"] for m in result.by_symbol.values()) == result.orders
