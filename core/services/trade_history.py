"""The closed trades a command reads: the stored record when one is wired, else memory.

A running process wires its ``TradeRepo``, which holds the trades closed before a restart too;
without one (a backtest, a test) the engine's own list, in closing order, is the whole history.
Both answer the same questions the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.domain.trades import ClosedTrade
from core.ports import TradeRepo


async def closed_trades(
    repo: TradeRepo | None,
    in_memory: Sequence[ClosedTrade],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int | None = None,
) -> list[ClosedTrade]:
    """Return the trades closed at ``since_ms <= closed_ms < until_ms``, oldest first; with
    ``limit``, only the newest ``limit`` of them (0 or less: none)."""
    if repo is not None:
        return await repo.list_closed(since_ms=since_ms, until_ms=until_ms, limit=limit)
    found = [
        t
        for t in in_memory
        if (since_ms is None or t.closed_ms >= since_ms)
        and (until_ms is None or t.closed_ms < until_ms)
    ]
    if limit is not None:
        found = found[-limit:] if limit > 0 else []
    return found
