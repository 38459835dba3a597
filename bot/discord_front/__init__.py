"""The Discord front end: slash commands generated from the registry, confirm buttons, push
alerts to a channel. Named ``discord_front``: a package named ``discord`` would shadow the
discord.py library it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.chat.dispatch import Dispatcher
from bot.discord_front.front import DiscordFront

if TYPE_CHECKING:
    from core.config import ChatSettings

__all__ = ["DiscordFront", "discord_front"]


def discord_front(chat: ChatSettings, dispatcher: Dispatcher) -> DiscordFront:
    """Return the Discord front end of the chat settings (their token is set)."""
    return DiscordFront(
        dispatcher,
        token=chat.discord_token.get_secret_value(),
        guild_id=chat.discord_guild_id,
        channel_id=chat.discord_channel_id,
    )
