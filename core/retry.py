"""Retry with exponential backoff and jitter: only for TemporaryError (incl. RateLimited).

Every other error propagates at once: a rejected order or bad data does not get better by
asking again. The sleep function is injected so tests never wait for real.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from core.errors import RateLimited, TemporaryError

T = TypeVar("T")
log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]


def backoff_delay_s(
    failures: int, *, base_delay_s: float, max_delay_s: float, rng: random.Random
) -> float:
    """Return the wait after the ``failures``-th consecutive failure (1-based).

    The cap doubles each time (base, 2*base, 4*base ... up to max); the wait is drawn from the
    upper half of the cap ("equal jitter") so that many clients spread out without any of them
    hammering the venue again after a near-zero wait.
    """
    cap = float(min(max_delay_s, base_delay_s * 2 ** (failures - 1)))
    return cap / 2 + rng.uniform(0, cap / 2)


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    base_delay_s: float = 0.5,
    max_delay_s: float = 30.0,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    what: str = "",
    on_failure: Callable[[TemporaryError], object] | None = None,
) -> T:
    """Call ``fn`` up to ``attempts`` times, sleeping between TemporaryErrors.

    Rate limits wait at least one full cap, since the venue asked explicitly. The last
    TemporaryError is re-raised unchanged once ``attempts`` are used up. ``on_failure`` hears
    every TemporaryError, the last one too (a count of the venue's faults for the health
    check).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, was {attempts}")
    rng = rng or random.Random()
    failures = 0
    while True:
        try:
            return await fn()
        except TemporaryError as exc:
            failures += 1
            if on_failure is not None:
                on_failure(exc)
            if failures >= attempts:
                raise
            delay_s = backoff_delay_s(
                failures, base_delay_s=base_delay_s, max_delay_s=max_delay_s, rng=rng
            )
            if isinstance(exc, RateLimited):
                delay_s = max(delay_s, min(max_delay_s, base_delay_s * 2 ** (failures - 1)))
            log.warning(
                "%s failed (%s: %s); attempt %d of %d, retrying in %.2f s",
                what or getattr(fn, "__name__", "call"),
                type(exc).__name__,
                exc,
                failures,
                attempts,
                delay_s,
            )
            await sleep(delay_s)
