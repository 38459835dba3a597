"""Discord's slash commands, generated from the registry: one per command in ``COMMANDS``.

Each takes one optional text option, ``args``: the words after the command, parsed by the
dispatcher like a typed message (``/trades args:5`` is ``/trades 5``). So adding a command to
the registry adds it here with no change to this module, and access control, usage errors,
confirmations and the audit trail stay the dispatcher's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord
from discord import app_commands

from bot.chat.dispatch import Dispatcher
from bot.chat.registry import COMMANDS, Command
from bot.discord_front.confirm_view import ConfirmView
from bot.discord_front.replies import caller_of, send_reply
from core.services.commands import Reply

log = logging.getLogger(__name__)

MAX_DESCRIPTION = 100  # Discord's limit for a command's and an option's description
# Discord drops an interaction unanswered for 3 s; a slower command is deferred first
# ("thinking…") and answered when done.
DEFER_AFTER_S = 2.0


def build_tree(client: discord.Client, dispatcher: Dispatcher) -> app_commands.CommandTree:
    """Return ``client``'s command tree: a slash command for each registry command."""
    tree: app_commands.CommandTree = app_commands.CommandTree(client)
    for command in COMMANDS:
        tree.add_command(slash_command(command, dispatcher))
    tree.on_error = _log_error  # type: ignore[method-assign]
    return tree


def slash_command(command: Command, dispatcher: Dispatcher) -> app_commands.Command:  # type: ignore[type-arg]
    """Return the slash command that hands ``/name args`` to the dispatcher."""

    async def run(interaction: discord.Interaction, args: str | None = None) -> None:
        text = f"/{command.name} {args or ''}".strip()
        await answer(interaction, dispatcher, text)

    described = app_commands.describe(args=f"usage: {command.usage}"[:MAX_DESCRIPTION])(run)
    return app_commands.Command(
        name=command.name, description=command.summary[:MAX_DESCRIPTION], callback=described
    )


async def answer(interaction: discord.Interaction, dispatcher: Dispatcher, text: str) -> None:
    """Hand ``text`` to the dispatcher as the interaction's user and send what it answers."""
    caller = caller_of(interaction)
    work = asyncio.ensure_future(dispatcher.handle(caller, text))
    try:
        done, _ = await asyncio.wait({work}, timeout=DEFER_AFTER_S)
        if not done:
            await interaction.response.defer(thinking=True)
        reply = await work
        if reply is None:  # an unknown user, already told once: say nothing
            if interaction.response.is_done():
                with contextlib.suppress(discord.HTTPException):
                    await interaction.delete_original_response()
            return
        await _send(interaction, dispatcher, caller.user_id, reply)
    except discord.HTTPException as e:
        # The command ran (or was refused) all the same; only its answer is lost.
        log.warning("discord: the answer to %r was not sent: %s", text[:40], e)


async def _send(
    interaction: discord.Interaction, dispatcher: Dispatcher, asker_id: str, reply: Reply
) -> None:
    if reply.confirm is None:
        await send_reply(interaction, reply)
        return
    view = ConfirmView(dispatcher, reply.confirm, asker_id)
    view.message = await send_reply(interaction, reply, view)


async def _log_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """Log what went wrong in a slash command on our logger (discord.py's default prints to
    stderr); the client and the trading go on."""
    name = interaction.command.name if interaction.command else "?"
    log.error("discord: /%s failed: %s", name, error, exc_info=error)
