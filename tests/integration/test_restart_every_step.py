"""The last state is recoverable from the database alone: one trade's whole life (the entry
sent, filled in two parts, its exit plan placed, candles managing it, two take-profits, the
stop) with the process's memory thrown away (a restart on the same database and venue) after
each step in turn, and after every step at once, ends with the same books as the run that
never restarted: the same closed trade to the last digit, every fill counted once in the
audit trail, nothing open at the venue, no client order id sent twice.

The venue is the test suite's FakeExchange (it owns the truth: orders, fills, positions);
each restart is a new engine from ``bot.trading.build_engine`` on the same storage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.domain.enums import OrderStatus
from storage.memory import MemoryStorage
from tests.fakes import FakeExchange
from tests.unit.services.engine_harness import SYMBOL, T0_MS, at
from tests.unit.services.test_closed_trades_recorded import ENTRY0, Rig, rig
from tests.unit.services.test_engine_venue_sync import quiet

Step = Callable[[Rig], Awaitable[None]]


def candle(i: int) -> Step:
    async def step(r: Rig) -> None:
        r.clock.advance_to(at(i + 1))
        await r.engine.on_candle(SYMBOL, quiet(i))

    step.__name__ = f"candle {i}"
    return step


def fill(name: str, share: D | None = None) -> Step:
    """Fill the working order ``name`` at its own price (``share`` of it, else the rest)."""

    async def step(r: Rig) -> None:
        trade = r.engine.trades[SYMBOL]
        cid = trade.entry_cid if name == "entry" else trade.working[name]
        order = r.venue.orders[cid]
        price = order.request.price or order.request.stop_price or D(100)
        amount = order.remaining if share is None else order.request.amount * share
        amount = amount.quantize(D("0.00001"))
        fee = (amount * price * D("0.0004")).quantize(D("0.00000001"))  # a taker's fee
        r.venue.script_fill(cid, price, amount, fee)
        await r.engine.sync_with_venue()

    step.__name__ = f"fill {name}" + (f" {share}" if share is not None else "")
    return step


LIFE: list[Step] = [
    candle(0),  # the entry decided and sent
    fill("entry", D("0.4")),  # a part of it
    fill("entry"),  # the rest: the exit plan goes out
    candle(1),
    fill("TP1"),
    candle(2),
    fill("TP2"),
    fill("SL"),  # the stop takes the rest: closed
    candle(3),
]


async def live(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, restart_after: set[int]
) -> tuple[Rig, MemoryStorage]:
    tmp_path.mkdir()
    storage = MemoryStorage()
    venue = FakeExchange(balances={"USDT": D(10_000)}, track_positions=True)
    venue.clock.advance_to(T0_MS)
    r = rig(monkeypatch, tmp_path, storage, storage.trades, venue=venue)
    await r.engine.start()
    for i, step in enumerate(LIFE):
        await step(r)
        if i in restart_after:  # the memory gone: a new engine on the same database
            r = rig(monkeypatch, tmp_path, storage, storage.trades, venue=venue)
            await r.engine.start()
    return r, storage


async def books(r: Rig, storage: MemoryStorage) -> dict[str, object]:
    closed = await storage.trades.list_closed()
    trail = Counter[str]()
    for e in await storage.events.list_events("order.filled"):
        trail[e.payload["client_order_id"]] += D(str(e.payload["amount"]))
    at_venue = {cid: o.filled for cid, o in r.venue.orders.items() if o.filled > 0}
    sent = [c.args[0].client_order_id for c in r.venue.calls_to("create_order")]
    assert len(sent) == len(set(sent)), f"a client order id sent twice: {sent}"
    assert dict(trail) == at_venue, "the audit trail's fills differ from the venue's"
    assert [o for o in r.venue.orders.values() if o.status is OrderStatus.OPEN] == []
    assert r.venue.positions == [] and SYMBOL not in r.engine.trades
    return {"closed": closed, "fills": at_venue}


@pytest.mark.parametrize(
    "restart_after",
    [{i} for i in range(len(LIFE))] + [set(range(len(LIFE)))],
    ids=[f"after {s.__name__}" for s in LIFE] + ["after every step"],
)
async def test_a_restart_at_any_step_of_a_trade_ends_with_the_same_books(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, restart_after: set[int]
) -> None:
    reference = await books(*await live(monkeypatch, tmp_path / "ref", set()))
    [trade] = reference["closed"]  # type: ignore[misc]
    assert trade.trade_id == ENTRY0 and trade.exit_reason == "TSL"  # the stop moved up
    assert len(trade.legs) >= 3  # two take-profits and the stop
    again = await books(*await live(monkeypatch, tmp_path / "again", restart_after))
    assert again == reference
