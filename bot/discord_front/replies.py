"""A neutral ``Reply`` as Discord messages: markdown-escaped text cut to Discord's 2,000
characters, a chart as an attached PNG, refusals seen by the asker only (ephemeral)."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable

import discord
from discord.utils import MISSING, escape_markdown

from bot.chat.registry import Caller
from bot.chat.render import chunks as split_text
from core.services.commands import Reply

MAX_CHARS = 2_000  # Discord's limit for one message's content
PLATFORM = "discord"
CHART_NAME = "chart.png"

# Builds the confirm/cancel buttons for a reply's confirmation token (None: no buttons).
ViewFor = Callable[[Reply], discord.ui.View | None]


def caller_of(interaction: discord.Interaction) -> Caller:
    """Return who sent ``interaction``, as the dispatcher names callers."""
    user = interaction.user
    return Caller(platform=PLATFORM, user_id=str(user.id), name=user.name)


def render(reply: Reply) -> str:
    """Return the reply as Discord markdown: the title in bold, then its lines."""
    title = f"**{escape_markdown(reply.title)}**"
    return "\n".join((title, *(escape_markdown(line) for line in reply.lines)))


def chunks(text: str, limit: int = MAX_CHARS) -> list[str]:
    """Return ``text`` in pieces of at most ``limit`` characters (Discord's 2,000)."""
    return split_text(text, limit)


def chart_file(photo: bytes) -> discord.File:
    """Return a PNG as an attachment."""
    return discord.File(io.BytesIO(photo), filename=CHART_NAME)


async def send_reply(
    interaction: discord.Interaction,
    reply: Reply,
    view: discord.ui.View | None = None,
) -> discord.Message | None:
    """Answer ``interaction`` with ``reply``; return the message carrying ``view`` (when
    Discord names it), so its buttons can be taken off later.

    The first piece answers the interaction (unless it was answered or deferred already),
    the others follow; the chart and the buttons go with the last piece, under the text.
    """
    pieces = chunks(render(reply))
    ephemeral = not reply.ok  # a refusal or a usage error: the asker's business only
    sent: discord.Message | None = None
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        file = chart_file(reply.photo) if last and reply.photo is not None else MISSING
        buttons = view if last and view is not None else MISSING
        if not interaction.response.is_done():
            await interaction.response.send_message(
                piece, ephemeral=ephemeral, file=file, view=buttons
            )
            if last and view is not None:
                sent = await interaction.original_response()
        else:
            sent = await interaction.followup.send(
                piece, ephemeral=ephemeral, file=file, view=buttons, wait=True
            )
    return sent if view is not None else None


async def send_pieces(
    send: Callable[..., Awaitable[object]], text: str, *, silent: bool, photo: bytes | None
) -> None:
    """Send ``text`` (escaped, cut to Discord's limit) through a channel's ``send``; the PNG
    goes with the last piece."""
    pieces = chunks(escape_markdown(text))
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        file = chart_file(photo) if last and photo is not None else MISSING
        await send(piece, silent=silent, file=file)
