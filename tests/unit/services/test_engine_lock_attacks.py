"""Adversarial sequences against the per-symbol engine locks (``core.services.engine_locks``):
two tasks on the same trade at once, a flatten or a halt racing a venue sync, cancellation.

The venue is ``SlowReads``: ``SlowSymbol`` whose account reads (positions, balances) can be
made to wait until the test answers them, as a venue timing out on them does.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.domain.portfolio import Position
from tests.unit.services.engine_harness import SYMBOL
from tests.unit.services.test_engine_live_races import NO_CORRELATION
from tests.unit.services.test_engine_symbol_locks import (
    SlowSymbol,
    until,
)
from tests.unit.services.test_engine_venue_sync import ENTRY, STOP, Live, live


class SlowReads(SlowSymbol):
    """A positions read answers, while ``reads`` is set and not yet answered, what the venue
    held when it was asked, once the test answers it (a slow venue's late answer)."""

    reads: asyncio.Event | None = None
    reads_waiting = 0

    async def fetch_positions(self) -> list[Position]:
        held = await super().fetch_positions()
        if self.reads is not None and not self.reads.is_set():
            self.reads_waiting += 1
            try:
                await self.reads.wait()
            finally:
                self.reads_waiting -= 1
        await asyncio.sleep(0)
        return held

    def hang_reads(self) -> asyncio.Event:
        self.reads = asyncio.Event()
        return self.reads


async def protected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[Live, SlowReads]:
    """BTC's entry filled at 100 and its exits placed by a sync."""
    lv = await live(monkeypatch, tmp_path, venue_class=SlowReads, env=env or NO_CORRELATION)
    assert isinstance(lv.venue, SlowReads)
    lv.venue.script_fill(ENTRY, D(100))
    await lv.engine.sync_with_venue()
    assert STOP in lv.open_cids()
    return lv, lv.venue


async def test_a_flatten_sends_no_exit_for_a_position_its_stop_closed_while_the_account_was_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await protected(monkeypatch, tmp_path)
    answer = venue.hang_reads()
    flatten = asyncio.create_task(lv.engine.reduce_exposure(0.0, "test"))
    assert await until(lambda: venue.reads_waiting), "the flatten never read the account"
    # The flatten's positions read answered with BTC's 50 ... then its stop fills and a sync
    # books the close before the flatten goes on.
    venue.reads = None
    venue.script_fill(STOP, D(99))
    assert not venue.positions
    await lv.engine.sync_with_venue()
    assert SYMBOL not in lv.engine.trades  # closed and forgotten
    answer.set()
    cut = await flatten
    sent = [c.args[0] for c in venue.calls_to("create_order")]
    assert [r.tag for r in sent if r.symbol == SYMBOL and r.tag.startswith("EXIT")] == [], (
        "a market exit went out for a position already closed"
    )
    assert SYMBOL not in lv.engine.trades
    assert cut.not_closed == ()  # flat already: nothing left to close (counted as closed)
