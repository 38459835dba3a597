"""Adversarial tests of the Telegram reconnect on a refused token (issue 13's review): the
real PTB application against the fake Bot API, revoked, restored and revoked again, stopped
while reconnecting, and a command sent while the token was refused. These held up."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.fakes_telegram import failure, message
from tests.unit.telegram.test_front import ADMIN, connected, rig

REFUSED = [failure(401, "Unauthorized")]


async def test_revoked_restored_and_revoked_again_is_said_twice_and_serves_each_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        async with rig(connect_retry_s=(0.01, 0.02)) as r:
            await connected(r)
            for round_ in (1, 2):
                r.api.errors["getMe"] = REFUSED * 2
                r.api.errors["getUpdates"] = list(REFUSED)
                await r.api.wait_for("getMe", 1 + 3 * round_, timeout_s=8)
                await asyncio.wait_for(r.front.connected.wait(), 8)
                await r.api.send(message(ADMIN, "/status", message_id=round_))
                await r.api.wait_for("sendMessage", round_, timeout_s=8)
    refused = [x for x in caplog.records if "refused the bot token" in x.getMessage()]
    assert len(refused) == 2  # once per revocation, not once per retry
    assert caplog.text.count("accepted again") == 2


async def test_a_stop_while_reconnecting_after_a_revocation_returns_at_once() -> None:
    async with rig(connect_retry_s=(0.01, 0.05)) as r:
        await connected(r)
        r.api.errors["getMe"] = REFUSED * 10_000  # revoked for good
        r.api.errors["getUpdates"] = list(REFUSED)
        await r.api.wait_for("getMe", 3, timeout_s=8)
        started = time.monotonic()
        await r.front.stop()
        assert time.monotonic() - started < 2 and not r.front.connected.is_set()
        calls = len(r.api.of("getMe"))
        await asyncio.sleep(0.2)
        assert len(r.api.of("getMe")) == calls  # no reconnect left running after stop()


async def test_a_command_sent_while_the_token_was_refused_is_answered_once_it_is_accepted() -> None:
    async with rig(connect_retry_s=(0.01, 0.02)) as r:
        await connected(r)
        r.api.errors["getMe"] = REFUSED * 3
        r.api.errors["getUpdates"] = list(REFUSED)
        await r.api.wait_for("getMe", 2, timeout_s=8)
        await r.api.send(message(ADMIN, "/status"))  # queued at Telegram meanwhile
        [answer] = await r.api.wait_for("sendMessage", timeout_s=8)
        assert "all is well" in answer.params["text"]
        await asyncio.sleep(0.2)
        assert len(r.api.of("sendMessage")) == 1  # answered once, not again per reconnect
