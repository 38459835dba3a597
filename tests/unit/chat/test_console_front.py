"""The console front end: every registry command reaches the dispatcher as the local admin,
a confirmation is answered by the next line, and what is not a command is said so."""

from __future__ import annotations

import io

from rich.console import Console

from bot.chat.console_front import ConsoleCommands
from bot.chat.registry import COMMANDS
from tests.unit.chat.test_dispatch import dispatcher


def front() -> tuple[ConsoleCommands, Console]:
    d, _core, _seen, _ = dispatcher()
    d.access._roles["console:local"] = max(d.access._roles.values())  # the local admin
    out = Console(file=io.StringIO(), width=120, force_terminal=False)
    return ConsoleCommands(d, console=out, stdin=io.StringIO("")), out


async def test_the_console_exposes_exactly_the_registry_s_commands() -> None:
    console, _ = front()
    for c in COMMANDS:
        reply = await console.handle(f"/{c.name}")
        assert reply is not None and "I don't know" not in reply.title, c.name
        if reply.confirm is not None:
            await console.handle("n")  # leave nothing waiting
    unknown = await console.handle("/nope")
    assert unknown is not None and "I don't know /nope" in unknown.title


async def test_a_confirmation_is_the_next_line_and_plain_text_is_not_a_command() -> None:
    console, out = front()
    ask = await console.handle("/halt flatten")
    assert ask is not None and ask.confirm is not None
    done = await console.handle("y")
    assert done is not None and done.title == "halt"
    printed = out.file.getvalue()  # type: ignore[attr-defined]
    assert "confirm? [y/N]" in printed
    plain = await console.handle("status please")
    assert plain is not None and "commands start with /" in plain.title
