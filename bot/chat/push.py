"""Where push alerts go: each chat front end that can send on its own is a ``PushTarget``.

The notifier (``bot.chat.notifier``) renders bus events to text, batches and rate-limits them,
and hands each message to every target; a target that fails is logged and retried by the
notifier, never by the trading.
"""

from __future__ import annotations

from typing import Protocol


class PushTarget(Protocol):
    """A front end that can send a message to its operators unasked."""

    name: str  # "telegram", "discord", "console"

    async def push(self, text: str, *, silent: bool = False, photo: bytes | None = None) -> None:
        """Send ``text`` (and ``photo``, a PNG) to the configured operators' chats; raise on
        failure (the notifier retries with backoff). ``silent``: no notification sound."""
        ...
