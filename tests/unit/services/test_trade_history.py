"""/trades, /profit and /daily say the same from the trades table as from the engine's memory,
at the edges of their windows too."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any

import pytest

from core.clock import SimClock
from core.domain.trades import ClosedTrade
from core.services.bus import EventBus
from core.services.commands import DAY_MS, CommandCore, CommandServices
from core.services.trade_history import closed_trades
from storage.memory import MemoryStorage
from tests.contract.test_trades_repo import trade

NOW = 1_704_240_000_000 + 5 * 3_600_000  # 2024-01-03 05:00 UTC
TODAY = NOW - NOW % DAY_MS


def history() -> list[ClosedTrade]:
    """Trades at the edges: the ms a /profit window opens and the one before, a day's first
    and the previous day's last ms, one in the future, two in the same ms."""
    at = [
        NOW - 3 * DAY_MS,
        TODAY - DAY_MS - 1,
        TODAY - DAY_MS,
        NOW - DAY_MS,
        NOW - DAY_MS + 1,
        TODAY,
        TODAY,
        NOW,
        TODAY + DAY_MS,  # tomorrow: a clock that jumped back after it
    ]
    pnls = ["5", "-2.5", "1.25", "-7", "3", "0", "10", "-1", "4"]
    return [trade(f"t{i}", ms, pnl=p) for i, (ms, p) in enumerate(zip(at, pnls, strict=True))]


async def cores() -> tuple[CommandCore, CommandCore]:
    """Return a command core over the engine's memory and one over the trades table, both
    holding ``history()``."""
    storage = MemoryStorage()
    trades = history()
    for t in trades:
        await storage.trades.add(t)
    clock = SimClock(NOW)

    def core(repo: Any) -> CommandCore:
        services: Any = dict.fromkeys(("exchange", "trading_state", "policy", "portfolio"))
        return CommandCore(
            CommandServices(
                clock=clock,
                bus=EventBus(),
                storage=storage,
                engine=SimpleNamespace(closed_trades=trades),  # type: ignore[arg-type]
                quote="USDT",
                mode_label="run",
                trades=repo,
                **services,
            )
        )

    return core(None), core(storage.trades)


async def test_the_table_and_the_memory_give_the_same_replies() -> None:
    memory, table = await cores()
    for n in (1, 2, 3, 9, 50):
        assert await table.trades(n) == await memory.trades(n), n
    for days in (None, 1, 2, 3, 4):
        assert await table.profit(days) == await memory.profit(days), days
    for n in (1, 2, 3, 5):
        assert await table.daily(n) == await memory.daily(n), n


async def test_profit_counts_what_closed_after_the_moment_the_window_opens() -> None:
    _, table = await cores()
    last_day = await table.profit(1)
    # NOW - DAY_MS + 1 up to NOW, and tomorrow's: t4, t5, t6, t7, t8 (3 + 0 + 10 - 1 + 4).
    assert last_day.title == "profit in the last 1 day(s): 16.00 USDT"
    assert last_day.lines[0].startswith("5 trades, 3 won")
    everything = await table.profit()
    assert everything.lines[0].startswith("9 trades")


async def test_daily_puts_a_trade_in_the_utc_day_of_its_close() -> None:
    _, table = await cores()
    rows = (await table.daily(3)).lines
    assert rows == (
        "2024-01-03: 9.00 USDT (3 trades)",  # t5, t6, t7; tomorrow's t8 is in no row
        "2024-01-02: -2.75 USDT (3 trades)",  # t2 at its first ms, t3, t4
        "2024-01-01: -2.50 USDT (1 trades)",  # t1 at its last ms; t0 is older still
    )


async def test_trades_shows_the_newest_first() -> None:
    _, table = await cores()
    reply = await table.trades(3)
    assert reply.title == "the 3 newest closed trade(s)"
    assert [line.split(" exit ")[0] for line in reply.lines] == [
        "2024-01-04 00:00 BTC/USDT short 4.00 (+1.23%)",  # t8
        "2024-01-03 05:00 BTC/USDT short -1.00 (+1.23%)",  # t7
        "2024-01-03 00:00 BTC/USDT short 10.00 (+1.23%)",  # t6, recorded after t5
    ]


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_limit_of_nothing_gives_nothing_from_either(limit: int) -> None:
    storage = MemoryStorage()
    trades = history()
    for t in trades:
        await storage.trades.add(t)
    assert await closed_trades(None, trades, limit=limit) == []
    assert await closed_trades(storage.trades, trades, limit=limit) == []


async def test_a_trade_recorded_twice_is_shown_once() -> None:
    storage = MemoryStorage()
    first = trade("t", NOW)
    await storage.trades.add(first)
    await storage.trades.add(replace(first, pnl=D(99)))  # a replay after a crash
    assert await closed_trades(storage.trades, []) == [first]
