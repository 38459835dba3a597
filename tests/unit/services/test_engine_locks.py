"""The engine's lock helpers: ``all_of`` runs a sync's per-symbol work side by side, lets each
run to its end, raises the first error afterwards, and cancels them all when cancelled."""

from __future__ import annotations

import asyncio

import pytest

from core.services.engine_locks import SymbolLocks, acquire_even_if_cancelled, all_of


async def test_all_of_lets_every_one_end_before_it_raises_the_first_error() -> None:
    ended: list[str] = []

    async def fails() -> int:
        await asyncio.sleep(0)
        ended.append("fails")
        raise ValueError("one symbol's bug")

    async def slower() -> int:
        for _ in range(5):
            await asyncio.sleep(0)
        ended.append("slower")
        return 2

    with pytest.raises(ValueError, match="one symbol's bug"):
        await all_of([fails(), slower()])
    assert ended == ["fails", "slower"]  # the other symbol's work was not cut short
    assert await all_of([slower(), slower()]) == [2, 2]
    assert await all_of([]) == []


async def test_all_of_cancelled_cancels_them_all() -> None:
    started, cancelled = asyncio.Event(), []

    async def waits() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return 0

    task = asyncio.create_task(all_of([waits(), waits()]))
    await started.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == [True, True]


async def test_a_symbols_lock_is_its_own_and_kept() -> None:
    locks = SymbolLocks()
    assert locks.of("BTC/USDT") is locks.of("BTC/USDT")
    async with locks.of("BTC/USDT"):
        assert not locks.of("ETH/USDT").locked()


async def test_a_cancel_while_waiting_for_the_lock_is_raised_once_it_is_held() -> None:
    lock = asyncio.Lock()
    await lock.acquire()
    waiter = asyncio.create_task(acquire_even_if_cancelled(lock))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    assert not waiter.done()  # still waiting for the lock, the cancel kept
    lock.release()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert lock.locked()  # held by the cancelled waiter: its caller's `async with` frees it
