"""The Discord front end's lifecycle and its push alerts.

``start`` returns at once: the client runs as a task on the process's loop
(``await client.start(token)``, never ``client.run``). A failed login (a revoked token, no
network) is logged and tried again with backoff, for as long as the process runs; once
connected, discord.py reconnects on its own. Nothing here can stop the trading: the task
only ever logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import discord
from discord import app_commands

from bot.chat.dispatch import Dispatcher
from bot.discord_front.replies import send_pieces
from bot.discord_front.tree import build_tree
from core.errors import TemporaryError
from core.retry import Sleep, backoff_delay_s

log = logging.getLogger(__name__)

RETRY_BASE_S = 5.0
RETRY_MAX_S = 300.0
LOGIN_REFUSED_MAX_S = 3_600.0  # a refused token needs a person: try again rarely
# discord.py waits out a rate limit shorter than this; a longer one raises RateLimited,
# so the notifier backs off instead of a push hanging (30 s is discord.py's minimum).
MAX_RATELIMIT_WAIT_S = 30.0


class QuantumClient(discord.Client):
    """A discord.py client whose command tree is generated from the registry, synced as it
    logs in."""

    def __init__(self, dispatcher: Dispatcher, guild_id: int | None) -> None:
        # No voice here: discord.py's warning that its voice libraries are missing is noise.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        # Slash commands need no privileged intent; guilds: to find the alert channel.
        super().__init__(
            intents=discord.Intents(guilds=True), max_ratelimit_timeout=MAX_RATELIMIT_WAIT_S
        )
        self.tree: app_commands.CommandTree = build_tree(self, dispatcher)
        self._guild_id = guild_id
        self.was_ready = False  # connected at least once (the retry backoff starts over)

    async def setup_hook(self) -> None:
        """Publish the slash commands: to the guild at once, else globally (Discord takes up
        to an hour). A failed sync is logged: the last synced commands still work."""
        try:
            if self._guild_id is not None:
                guild = discord.Object(id=self._guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                where = f"guild {self._guild_id}"
            else:
                synced = await self.tree.sync()
                where = "every server and DM (global: up to an hour to show)"
            log.info("discord: %d slash commands synced to %s", len(synced), where)
        except discord.HTTPException as e:
            log.warning("discord: the slash commands were not synced: %s", e)

    async def on_ready(self) -> None:
        """Note the connection."""
        self.was_ready = True
        log.info("discord: connected as %s", self.user)


ClientFactory = Callable[[], QuantumClient]


class DiscordFront:
    """Serve the chat commands as Discord slash commands; push alerts to one channel."""

    name = "discord"

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        token: str,
        guild_id: int | None = None,
        channel_id: int | None = None,
        client_factory: ClientFactory | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._token = token
        self._channel_id = channel_id
        self._new_client = client_factory or (lambda: QuantumClient(dispatcher, guild_id))
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client: QuantumClient | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pushes(self) -> bool:
        """Return whether an alert channel is configured."""
        return self._channel_id is not None

    async def start(self) -> None:
        """Begin connecting, in the background."""
        self._task = asyncio.create_task(self._serve(), name="discord")

    async def _serve(self) -> None:
        failures = 0
        while True:
            client: QuantumClient | None = None
            refused = False
            try:
                client = self._client = self._new_client()
                await client.start(self._token)
                log.warning("discord: the connection ended; connecting again")
            except discord.LoginFailure as e:
                refused = True
                log.error("discord: the token was refused (%s); check QT__CHAT__DISCORD_TOKEN", e)
            except Exception as e:  # noqa: BLE001 - no network, a 5xx, a gateway error: try again
                log.warning("discord: the client stopped: %s: %s", type(e).__name__, e)
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.close()
            # A connection that worked starts the backoff over.
            failures = 1 if client is not None and client.was_ready else failures + 1
            delay_s = backoff_delay_s(
                failures,
                base_delay_s=RETRY_BASE_S,
                max_delay_s=LOGIN_REFUSED_MAX_S if refused else RETRY_MAX_S,
                rng=self._rng,
            )
            log.info("discord: trying again in %.0f s", delay_s)
            await self._sleep(delay_s)

    async def push(self, text: str, *, silent: bool = False, photo: bytes | None = None) -> None:
        """Post ``text`` (and a PNG) to the alert channel; raise if it cannot be sent (not
        connected, no such channel, an HTTP error or a long rate limit)."""
        client = self._client
        if self._channel_id is None:
            raise TemporaryError("discord: no alert channel (QT__CHAT__DISCORD_CHANNEL_ID)")
        if client is None or not client.is_ready():
            raise TemporaryError("discord: not connected")
        channel = client.get_channel(self._channel_id)
        if channel is None:
            channel = await client.fetch_channel(self._channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise TemporaryError(f"discord: channel {self._channel_id} takes no messages")
        await send_pieces(channel.send, text, silent=silent, photo=photo)

    async def stop(self) -> None:
        """Disconnect and stop trying."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None
