"""retry(): only TemporaryError is retried, with growing jittered waits, up to ``attempts``."""

from __future__ import annotations

import random

import pytest

from core.errors import DataError, DependencyError, OrderRejected, RateLimited, TemporaryError
from core.retry import backoff_delay_s, retry
from tests.fakes import Sleeps


class Script:
    """Raise the scripted errors in turn, then return ``result``."""

    def __init__(self, *errors: Exception, result: str = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


async def test_retries_temporary_errors_then_returns() -> None:
    fn, sleeps = Script(TemporaryError("net"), RateLimited("429")), Sleeps()
    result = await retry(
        fn, attempts=5, base_delay_s=1.0, max_delay_s=30.0, sleep=sleeps, rng=random.Random(1)
    )
    assert result == "ok"
    assert fn.calls == 3
    assert len(sleeps.delays) == 2
    assert 0.5 <= sleeps.delays[0] <= 1.0  # first cap is base_delay_s, jittered in its upper half
    assert sleeps.delays[1] == 2.0  # a rate limit waits the full (doubled) cap


@pytest.mark.parametrize(
    "error", [DataError("bad"), OrderRejected("no"), DependencyError("skip"), ValueError("bug")]
)
async def test_other_errors_propagate_at_once(error: Exception) -> None:
    fn, sleeps = Script(error), Sleeps()
    with pytest.raises(type(error)):
        await retry(
            fn, attempts=5, base_delay_s=1, max_delay_s=5, sleep=sleeps, rng=random.Random()
        )
    assert fn.calls == 1
    assert sleeps.delays == []


async def test_stops_after_attempts_and_reraises_the_last_error() -> None:
    errors = [TemporaryError(f"try {i}") for i in range(10)]
    fn, sleeps = Script(*errors), Sleeps()
    with pytest.raises(TemporaryError, match="try 2"):
        await retry(
            fn, attempts=3, base_delay_s=1, max_delay_s=5, sleep=sleeps, rng=random.Random()
        )
    assert fn.calls == 3
    assert len(sleeps.delays) == 2


def test_backoff_grows_exponentially_and_is_capped() -> None:
    rng = random.Random(0)
    for failures, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 10.0), (30, 10.0)]:
        delays = [
            backoff_delay_s(failures, base_delay_s=0.5, max_delay_s=10.0, rng=rng)
            for _ in range(50)
        ]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(set(delays)) > 1  # jittered


async def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        await retry(Script(), attempts=0)
