"""Confirm / Cancel buttons under a destructive command's question.

A press hands the presser to ``Dispatcher.confirm``, which decides: only the asker's press
runs anything, once, in time. The view only tidies up: once the asker has pressed, or the
confirmation has expired, the buttons come off the message.
"""

from __future__ import annotations

import contextlib
import logging

import discord

from bot.chat.dispatch import Dispatcher
from bot.discord_front.replies import caller_of, send_reply

log = logging.getLogger(__name__)


class ConfirmView(discord.ui.View):
    """The buttons answering one confirmation token (they live as long as it does)."""

    def __init__(self, dispatcher: Dispatcher, token: str, asker_id: str) -> None:
        super().__init__(timeout=dispatcher.confirm_ttl_s)
        self._dispatcher = dispatcher
        self._token = token
        self._asker_id = asker_id
        self.message: discord.Message | None = None  # set once sent: where the buttons are

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.danger)
    async def confirm_button(
        self, interaction: discord.Interaction, _button: discord.ui.Button[ConfirmView]
    ) -> None:
        """Run the command (if the presser is its asker, in time)."""
        await self._press(interaction, yes=True)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel_button(
        self, interaction: discord.Interaction, _button: discord.ui.Button[ConfirmView]
    ) -> None:
        """Drop the command (if the presser is its asker)."""
        await self._press(interaction, yes=False)

    async def _press(self, interaction: discord.Interaction, *, yes: bool) -> None:
        presser = caller_of(interaction)
        reply = await self._dispatcher.confirm(presser, self._token, yes)
        try:
            if presser.user_id == self._asker_id:
                # The asker's press settles the token either way: no more buttons.
                self.stop()
                await interaction.response.edit_message(view=None)
            if reply is not None:  # None: an unknown user, told already
                await send_reply(interaction, reply)  # someone else's: refused, to them only
        except discord.HTTPException as e:
            log.warning("discord: the answer to a button press was not sent: %s", e)

    async def on_timeout(self) -> None:
        """Take the expired buttons off the message (a press would only hear "expired")."""
        if self.message is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.message.edit(view=None)
