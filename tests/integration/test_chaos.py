"""A reduced chaos run (``bench/chaos.py`` is the full one): the bot, ``qt run`` in live perp mode
as its own process, trading BTC/USDT and ETH/USDT on the same candles under a limit of one open
position, SIGKILLed 5 times and restarted on the same database against the chaos venue (its
own process too, owning the truth) while 20 % of the venue's signed calls fault. Every zero
target holds in each symbol, after each restart and at the end, naked time while the bot is up
stays within one sync interval, the venue never holds more positions than the limit, and the
process raised the venue-fault alert (``health: venue faults is bad``) while the venue
faulted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos_harness import SYNC_INTERVAL_S, ChaosConfig, run_chaos


@pytest.mark.slow
def test_five_kills_under_venue_faults_lose_nothing_and_double_nothing(tmp_path: Path) -> None:
    cfg = ChaosConfig(
        workdir=tmp_path / "chaos",
        kills=5,
        orders=40,
        seed=3,
        fault_rate=0.2,
        settle_s=1.5,
        max_wall_s=90,
        symbols=2,  # BTC/USDT and ETH/USDT on the same candles, one position allowed
    )
    result = run_chaos(cfg, say=lambda _line: None)
    notes = result.during.notes + result.final.notes
    assert result.kills == result.restarts == 5
    assert result.bot_exit_codes == [-9] * 5 + [0, 0]  # killed 5 times; stopped, restarted, stopped
    assert result.orders >= 20 and result.fills >= 6, result  # it traded between the kills
    assert result.faults_injected > 10 and result.retries > 0
    assert result.venue_fault_alerts >= 1  # said while it faulted, in the audit trail
    assert result.tp_fills >= 2, result  # exit-plan updates happened between the kills
    assert result.broken() == [], notes
    final = result.final
    assert (final.duplicates, final.lost_fills, final.double_fills) == (0, 0, 0)
    assert final.position_mismatches == final.audit_gaps == 0
    assert result.naked_up_wall_s <= SYNC_INTERVAL_S
    assert result.symbols == ("BTC/USDT", "ETH/USDT") and result.position_limit == 1
    assert 1 <= result.max_open_positions <= result.position_limit
    assert min(result.orders_by_symbol.values()) >= 2, result.orders_by_symbol  # both traded
    for symbol in result.symbols:  # each symbol compared on its own, and clean
        assert set(final.by_symbol[symbol].values()) == {0}, (symbol, notes)
