"""The order gate: orders pass it side by side, a change of the trading state passes alone.

Each order holds it (``hold``) from its gate check to the venue's answer, beside the other
orders: one symbol's order retried against a slow venue holds up no other symbol's. A halt or
reduce being written holds it alone (``hold_alone``): it waits for the orders under way (checked
before it, they go out before it is acknowledged), and every order that comes after it waits
for it (checked after, it sees the new state). An order's gate check may itself halt trading
(the daily loss limit): its task then holds the gate alone waiting only for the other orders,
never for its own (nor for another order doing the same meanwhile: both are still in their
checks, which read the state afterwards).

Plain async context managers, not generator-based ones: every order takes the gate, and
``contextlib.asynccontextmanager`` costs several times more to enter and leave.
"""

from __future__ import annotations

import asyncio

_NOBODY = object()  # who holds the gate alone when nobody does (a task may be None)


class OrderGate:
    """See the module docstring."""

    def __init__(self) -> None:
        self._orders: dict[object, int] = {}  # by task: how many order holds it has
        self._alone: object = _NOBODY  # the task holding it alone
        self._depth = 0  # how many times that task took it alone
        self._queued = 0  # state changes waiting to hold it alone: later orders wait
        self._upgrading: set[object] = set()  # tasks holding it for an order, queued alone
        self._waiters: list[asyncio.Future[None]] = []

    def hold(self) -> _OrderHold:
        """Hold the gate for an order, beside the others: ``async with gate.hold()``."""
        return _OrderHold(self)

    def hold_alone(self) -> _AloneHold:
        """Hold the gate alone (a change of the trading state): ``async with ...``."""
        return _AloneHold(self)

    async def _wait(self) -> None:
        """Wait until the gate changes hands."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:  # cancelled before it was woken
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _others_ordering(self) -> bool:
        """Return True while an order is under way whose task is not queued to hold it alone."""
        return any(task not in self._upgrading for task in self._orders)


class _OrderHold:
    __slots__ = ("_gate", "_task")

    def __init__(self, gate: OrderGate) -> None:
        self._gate = gate
        self._task: object = None

    async def __aenter__(self) -> None:
        gate = self._gate
        task = self._task = asyncio.current_task()
        if task not in gate._orders and gate._alone is not task:
            # not a re-entry: after every state change that came first
            while gate._alone is not _NOBODY or gate._queued:
                await gate._wait()
        gate._orders[task] = gate._orders.get(task, 0) + 1

    async def __aexit__(self, *_exc: object) -> None:
        gate, task = self._gate, self._task
        left = gate._orders[task] - 1
        if left:
            gate._orders[task] = left
            return
        del gate._orders[task]
        if gate._waiters:
            gate._wake()


class _AloneHold:
    __slots__ = ("_gate",)

    def __init__(self, gate: OrderGate) -> None:
        self._gate = gate

    async def __aenter__(self) -> None:
        gate = self._gate
        task = asyncio.current_task()
        if gate._alone is task:
            gate._depth += 1
            return
        gate._queued += 1
        if task in gate._orders:
            gate._upgrading.add(task)
        try:
            while gate._alone is not _NOBODY or gate._others_ordering():
                await gate._wait()
        except BaseException:  # cancelled while queued: the orders behind it go on
            gate._queued -= 1
            gate._upgrading.discard(task)
            gate._wake()
            raise
        gate._queued -= 1
        gate._upgrading.discard(task)
        gate._alone, gate._depth = task, 1

    async def __aexit__(self, *_exc: object) -> None:
        gate = self._gate
        gate._depth -= 1
        if gate._depth:
            return
        gate._alone = _NOBODY
        gate._wake()
