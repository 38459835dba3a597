"""Discord's slash commands, the real discord.py command tree generated from the registry,
driven by calling each command's callback with a fake Interaction (offline: no gateway).

Behind the tree: the real dispatcher and command core on a hand-driven process (paper
exchange, memory storage, SimClock)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from rich.console import Console

from bot.brains import policy_store
from bot.chat.console_front import ConsoleCommands
from bot.chat.dispatch import REFUSAL, Access, Dispatcher
from bot.chat.registry import COMMANDS
from bot.discord_front.confirm_view import ConfirmView
from bot.discord_front.replies import CHART_NAME, MAX_CHARS, chunks
from bot.discord_front.tree import build_tree
from core.clock import SimClock
from core.domain.enums import TradingState
from core.services.bus import EventBus
from core.services.commands import CommandCore, CommandServices, Reply
from core.services.portfolio import PortfolioService
from core.services.trading_state import TradingStateService
from tests.unit.discord_front.fake_discord import FakeInteraction, http_error
from tests.unit.services.engine_harness import Harness, ScriptedProvider, clean_settings

ADMIN, OPERATOR, STRANGER = 111, 222, 666
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


class Wall:
    """The dispatcher's wall clock, moved by hand."""

    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


async def process_dispatcher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[Dispatcher, Harness]:
    """Return the real dispatcher and command core over a hand-driven process."""
    h = await Harness(clean_settings(monkeypatch, tmp_path), ScriptedProvider()).start()
    policy = policy_store(h.settings, h.storage, h.bus, h.clock)
    await policy.start()
    quote = h.settings.trading.quote_currency
    services = CommandServices(
        clock=h.clock,
        bus=h.bus,
        storage=h.storage,
        engine=h.engine,
        exchange=h.paper,
        trading_state=h.trading_state,
        policy=policy,
        portfolio=PortfolioService(
            exchange=h.paper,
            balances=h.storage.balances,
            bus=h.bus,
            clock=h.clock,
            quote=quote,
            prices=dict,
        ),
        quote=quote,
        mode_label="demo",
    )
    access = Access({f"discord:{ADMIN}": "admin", f"discord:{OPERATOR}": "operator"})
    dispatcher = Dispatcher(
        CommandCore(services), access, bus=h.bus, clock=h.clock, confirm_ttl_s=60, wall=Wall()
    )
    return dispatcher, h


def tree_of(dispatcher: Any) -> app_commands.CommandTree:
    return build_tree(discord.Client(intents=discord.Intents(guilds=True)), dispatcher)


async def slash(
    tree: app_commands.CommandTree, name: str, interaction: FakeInteraction, args: str | None = None
) -> FakeInteraction:
    """Run ``/name args`` as Discord would: the generated command's callback."""
    command = tree.get_command(name)
    assert isinstance(command, app_commands.Command)
    await command.callback(interaction, args)  # type: ignore[arg-type]
    return interaction


def test_discord_exposes_exactly_the_registry_commands_as_does_the_console() -> None:
    tree = tree_of(object())
    commands = tree.get_commands()
    assert [c.name for c in commands] == [c.name for c in COMMANDS]
    for generated, command in zip(commands, COMMANDS, strict=True):
        assert isinstance(generated, app_commands.Command)
        assert generated.description == command.summary[:100]
        [param] = generated.parameters  # one optional text: the words after the command
        assert (param.name, param.type, param.required) == (
            "args",
            discord.AppCommandOptionType.string,
            False,
        )
        assert command.usage in param.description
        assert generated.to_dict(tree)["name"] == command.name  # Discord accepts the payload


async def test_the_console_lists_the_same_registry() -> None:
    d = Dispatcher(
        object(),  # type: ignore[arg-type]  # /help runs no core method
        Access({"console:local": "admin"}),
        bus=EventBus(),
        clock=SimClock(0),
    )
    out = Console(file=io.StringIO(), width=300)
    reply = await ConsoleCommands(d, console=out).handle("/help")
    assert reply is not None
    listed = [line.split()[0].lstrip("/") for line in reply.lines]
    assert listed == [c.name for c in COMMANDS] == [c.name for c in tree_of(d).get_commands()]


async def test_status_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    d, _h = await process_dispatcher(monkeypatch, tmp_path)
    i = await slash(tree_of(d), "status", FakeInteraction(ADMIN))
    [sent] = i.sent
    assert sent.via == "response" and not sent.ephemeral
    assert sent.content.startswith("**[demo] status**\n")
    assert "trading state active" in sent.content
    assert sent.file is None and sent.view is None


async def test_halt_persists_halted_and_the_usage_goes_to_the_asker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    d, h = await process_dispatcher(monkeypatch, tmp_path)
    tree = tree_of(d)
    bad = await slash(tree, "halt", FakeInteraction(OPERATOR, "op"), "now")
    assert bad.sent[0].ephemeral and "usage: /halt [flatten]" in bad.sent[0].content
    assert await h.trading_state.current() is TradingState.ACTIVE
    i = await slash(tree, "halt", FakeInteraction(OPERATOR, "op"))
    assert i.sent[0].content.startswith("**HALTED**") and not i.sent[0].ephemeral
    # persisted: a fresh service on the same storage reads it back
    again = TradingStateService(h.storage.state, h.bus, h.clock)
    assert await again.current() is TradingState.HALTED


async def test_a_confirmation_runs_only_on_the_askers_press(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    d, h = await process_dispatcher(monkeypatch, tmp_path)
    tree = tree_of(d)
    await slash(tree, "halt", FakeInteraction(ADMIN))
    asked = await slash(tree, "resume", FakeInteraction(ADMIN))
    [question] = asked.sent
    assert question.content.startswith("**confirm /resume?**")
    view = question.view
    assert isinstance(view, ConfirmView) and view.timeout == d.confirm_ttl_s
    assert view.message is asked.original  # where the buttons are taken off later
    confirm, cancel = view.children
    assert isinstance(confirm, discord.ui.Button) and confirm.label == "Confirm"
    assert isinstance(cancel, discord.ui.Button) and cancel.label == "Cancel"

    other = FakeInteraction(OPERATOR, "op")
    await confirm.callback(other)  # type: ignore[arg-type]
    assert other.sent[0].ephemeral and "nothing of yours" in other.sent[0].content
    assert other.response.edited == [] and not view.is_finished()  # still the asker's
    assert await h.trading_state.current() is TradingState.HALTED

    asker = FakeInteraction(ADMIN)
    await confirm.callback(asker)  # type: ignore[arg-type]
    assert asker.response.edited == [{"view": None}]  # the buttons go
    assert asker.sent[0].via == "followup" and asker.sent[0].content.startswith("**ACTIVE**")
    assert await h.trading_state.current() is TradingState.ACTIVE
    assert view.is_finished()

    late = FakeInteraction(ADMIN)
    await confirm.callback(late)  # type: ignore[arg-type]  # used once: nothing runs again
    assert "nothing of yours" in late.sent[0].content

    await view.on_timeout()
    assert asked.original.edits == [{"view": None}]


async def test_cancel_drops_the_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    d, h = await process_dispatcher(monkeypatch, tmp_path)
    tree = tree_of(d)
    await slash(tree, "halt", FakeInteraction(ADMIN))
    view = (await slash(tree, "resume", FakeInteraction(ADMIN))).sent[0].view
    assert isinstance(view, ConfirmView)
    pressed = FakeInteraction(ADMIN)
    await view.children[1].callback(pressed)  # type: ignore[arg-type]
    assert "/resume not done" in pressed.sent[0].content
    assert await h.trading_state.current() is TradingState.HALTED


async def test_an_unknown_user_is_refused_to_them_only_then_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    d, h = await process_dispatcher(monkeypatch, tmp_path)
    tree = tree_of(d)
    first = await slash(tree, "halt", FakeInteraction(STRANGER, "eve"))
    [refusal] = first.sent
    assert refusal.ephemeral and REFUSAL in refusal.content
    second = await slash(tree, "halt", FakeInteraction(STRANGER, "eve"))
    assert second.sent == []  # told once: silence
    assert await h.trading_state.current() is TradingState.ACTIVE


async def test_a_failing_send_is_survived_and_the_command_still_ran(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d, h = await process_dispatcher(monkeypatch, tmp_path)
    tree = tree_of(d)
    await slash(tree, "halt", FakeInteraction(ADMIN, fail=http_error(429)))
    assert "was not sent" in caplog.text and "429" in caplog.text
    assert await h.trading_state.current() is TradingState.HALTED
    after = await slash(tree, "status", FakeInteraction(ADMIN))  # the front end goes on
    assert "trading state halted" in after.sent[0].content


class OneReply:
    """A dispatcher that answers every message with one reply."""

    confirm_ttl_s = 60.0

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.texts: list[str] = []

    async def handle(self, _caller: object, text: str) -> Reply:
        self.texts.append(text)
        return self.reply


async def test_a_photo_becomes_a_file_and_args_reach_the_dispatcher() -> None:
    d = OneReply(Reply("equity", ("since the start",), photo=PNG))
    i = await slash(tree_of(d), "trades", FakeInteraction(ADMIN), "5")
    assert d.texts == ["/trades 5"]
    [sent] = i.sent
    assert isinstance(sent.file, discord.File) and sent.file.filename == CHART_NAME
    assert sent.file.fp.read() == PNG


async def test_a_long_reply_is_split_below_discords_limit() -> None:
    lines = tuple(f"line {n:04d} " + "x" * 90 for n in range(60))  # ~6,000 characters
    d = OneReply(Reply("long", lines, photo=PNG))
    i = await slash(tree_of(d), "trades", FakeInteraction(ADMIN))
    assert len(i.sent) == 4
    assert [s.via for s in i.sent] == ["response", "followup", "followup", "followup"]
    assert all(len(s.content) <= MAX_CHARS for s in i.sent)
    assert "\n".join(s.content for s in i.sent).count("line ") == 60  # cut between lines
    assert [s.file is not None for s in i.sent] == [False, False, False, True]


def test_chunks_cut_an_overlong_line_and_keep_everything() -> None:
    text = "a\n" + "b" * 4_500 + "\nc"
    pieces = chunks(text)
    assert all(len(p) <= MAX_CHARS for p in pieces)
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")
    assert chunks("short") == ["short"]
