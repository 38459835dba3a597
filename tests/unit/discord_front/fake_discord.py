"""A stand-in for what discord.py hands a slash command: an Interaction with a user, a
response that records what was sent (or fails as told) and a followup webhook."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import discord
from discord.utils import MISSING


def http_error(status: int = 429, reason: str = "Too Many Requests") -> discord.HTTPException:
    """Return the error discord.py raises for an HTTP failure."""
    return discord.HTTPException(SimpleNamespace(status=status, reason=reason), "slow down")


def _given(value: Any) -> Any:
    return None if value is MISSING else value


@dataclass
class Sent:
    """One message sent: its text, whether only the user sees it, a file, buttons."""

    content: str
    ephemeral: bool
    file: discord.File | None
    view: discord.ui.View | None
    via: str  # "response" or "followup"


class FakeMessage:
    def __init__(self) -> None:
        self.edits: list[dict[str, Any]] = []

    async def edit(self, **kwargs: Any) -> None:
        self.edits.append(kwargs)


@dataclass
class FakeResponse:
    """``interaction.response``: one answer, then ``is_done``."""

    sent: list[Sent]
    fail: Exception | None = None
    done: bool = False
    edited: list[dict[str, Any]] = field(default_factory=list)
    deferred: bool = False

    def is_done(self) -> bool:
        return self.done

    async def send_message(
        self,
        content: str,
        *,
        ephemeral: bool = False,
        file: Any = MISSING,
        view: Any = MISSING,
    ) -> None:
        assert not self.done, "an interaction is answered once"
        if self.fail is not None:
            raise self.fail
        self.done = True
        self.sent.append(Sent(content, ephemeral, _given(file), _given(view), "response"))

    async def defer(self, *, thinking: bool = False) -> None:
        self.done = self.deferred = True

    async def edit_message(self, **kwargs: Any) -> None:
        assert not self.done
        self.done = True
        self.edited.append(kwargs)


@dataclass
class FakeFollowup:
    sent: list[Sent]
    messages: list[FakeMessage] = field(default_factory=list)

    async def send(
        self,
        content: str,
        *,
        ephemeral: bool = False,
        file: Any = MISSING,
        view: Any = MISSING,
        wait: bool = False,
    ) -> FakeMessage:
        self.sent.append(Sent(content, ephemeral, _given(file), _given(view), "followup"))
        self.messages.append(FakeMessage())
        return self.messages[-1]


class FakeInteraction:
    """What a slash command or a button press receives from one Discord user."""

    def __init__(self, user_id: int, name: str = "ann", *, fail: Exception | None = None) -> None:
        self.user = SimpleNamespace(id=user_id, name=name)
        self.sent: list[Sent] = []
        self.response = FakeResponse(self.sent, fail=fail)
        self.followup = FakeFollowup(self.sent)
        self.original = FakeMessage()
        self.deleted = False
        self.command = None

    async def original_response(self) -> FakeMessage:
        return self.original

    async def delete_original_response(self) -> None:
        self.deleted = True
