"""The one dispatcher every front end hands its messages to: who may run what, confirmations,
usage errors and the audit trail, the same for Telegram, Discord and the console.

- **Access**: an allowlist of ``platform:user id`` with a role (``QT__CHAT__USERS``). Anyone
  else gets one polite refusal per ``refusal_every_s`` and nothing else; nothing they send
  runs.
- **Confirmation**: a destructive command (``Command.confirm``) does not run; its reply
  carries a token the asker confirms (a button, or y/N on the console) before
  ``confirm_ttl_s``; only that same user can, once.
- **Audit**: every message received is a ``CommandHandled`` event (platform, user, command,
  outcome) on the bus, so it lands in the persisted audit trail.
- **Never a traceback**: bad arguments get the usage line; a command that fails is logged and
  answered with one line; the front end and the trading go on.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.chat.registry import BY_NAME, Caller, Command, Role, Run, UsageError, parse
from core.clock import Clock
from core.domain.events import CommandHandled
from core.services.bus import EventBus
from core.services.commands import CommandCore, Reply

log = logging.getLogger(__name__)

MAX_TEXT = 1_000  # a longer message is not a command: refused unread
MAX_REMEMBERED = 10_000  # unknown users whose refusal time is kept (a flood stays bounded)
REFUSAL = "Sorry, this bot only answers its owners."


@dataclass(frozen=True, slots=True)
class _Pending:
    caller: Caller
    command: Command
    args: Mapping[str, Any]
    expires_s: float  # on the wall clock


class Access:
    """The allowlist: ``platform:user id`` -> role."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._roles = {key: Role[role.upper()] for key, role in users.items()}

    def role_of(self, caller: Caller) -> Role | None:
        """Return the caller's role (None: not allowed)."""
        return self._roles.get(f"{caller.platform}:{caller.user_id}")


def split(text: str) -> tuple[str, list[str]]:
    """Return the command name (lower case, without ``/`` and a Telegram ``@botname``) and
    its words."""
    words = text.strip().split()
    if not words:
        return "", []
    head = words[0].lstrip("/").split("@", 1)[0].lower()
    return head, words[1:]


class Dispatcher:
    """Check, run and audit commands (see module docstring)."""

    def __init__(
        self,
        core: CommandCore,
        access: Access,
        *,
        bus: EventBus,
        clock: Clock,
        confirm_ttl_s: float = 60.0,
        refusal_every_s: float = 3600.0,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.access = access
        self._bus = bus
        self._clock = clock  # the process's (market time in the demo): the events' time
        # Expiries and rate limits are a person's: wall time, even in an accelerated demo.
        self._wall = wall
        self._ttl_s = confirm_ttl_s
        self._refusal_s = refusal_every_s
        # unknown caller -> when last told, and how many messages since
        self._refused: dict[tuple[str, str], tuple[float, int]] = {}
        self._pending: dict[str, _Pending] = {}  # token -> what waits for its confirmation

    @property
    def confirm_ttl_s(self) -> float:
        """Return how long a confirmation waits (a front end's buttons live as long)."""
        return self._ttl_s

    async def handle(self, caller: Caller, text: str) -> Reply | None:
        """Answer one message; None: say nothing (an unknown user already told)."""
        name, words = split(text[:MAX_TEXT]) if len(text) <= MAX_TEXT else ("", [])
        role = self.access.role_of(caller)
        if role is None:
            return await self._refuse(caller, name or "-")
        caller = dataclasses.replace(caller, role=role)
        command = BY_NAME.get(name)
        if command is None:
            await self._audit(caller, name[:32] or "-", "unknown")
            what = f"/{name[:32]}" if name else "that"
            return Reply(f"I don't know {what}; /help lists the commands", ok=False)
        if command.role > role:
            await self._audit(caller, name, "refused", f"needs {command.role.name.lower()}")
            return Reply(
                f"/{name} needs the {command.role.name.lower()} role; you are {role.name.lower()}",
                ok=False,
            )
        try:
            args = parse(command, words)
        except UsageError as e:
            await self._audit(caller, name, "usage", str(e))
            return Reply(f"usage: {command.usage}", (str(e),), ok=False)
        needed = command.needs(args)
        if needed > role:  # what these arguments do needs more (/models rollback)
            await self._audit(caller, name, "refused", f"needs {needed.name.lower()}")
            return Reply(
                f"/{' '.join([name, *words])[:60]} needs the {needed.name.lower()} role; "
                f"you are {role.name.lower()}",
                ok=False,
            )
        if command.confirm(args):
            first = None
            if command.before_confirm is not None:  # what must not wait for the answer
                first = await self._run(caller, command, args, "ok", command.before_confirm)
            token = secrets.token_hex(6)
            self._drop_expired()
            self._pending[token] = _Pending(caller, command, args, self._wall() + self._ttl_s)
            await self._audit(caller, name, "confirm")
            done = () if first is None else (f"done at once: {first.title}",)
            return Reply(
                f"confirm {' '.join(['/' + name, *words])[:200]}?",
                (*done, f"it expires in {self._ttl_s:.0f} s"),
                confirm=token,
            )
        return await self._run(caller, command, args, "ok")

    async def confirm(self, caller: Caller, token: str, yes: bool = True) -> Reply | None:
        """Run (``yes``) or drop what waits for ``token``; only its asker can, in time.
        None: say nothing (an unknown user, told already)."""
        if self.access.role_of(caller) is None:
            return await self._refuse(caller, "confirm")
        pending = self._pending.get(token)
        if pending is None or (pending.caller.platform, pending.caller.user_id) != (
            caller.platform,
            caller.user_id,
        ):
            # Someone else's button, or one used already: nothing runs.
            await self._audit(caller, "confirm", "refused", "not yours or not waiting")
            return Reply("nothing of yours waits for a confirmation", ok=False)
        del self._pending[token]
        name = pending.command.name
        if self._wall() > pending.expires_s:
            await self._audit(caller, name, "expired")
            return Reply(f"/{name} expired unconfirmed: send it again", ok=False)
        if not yes:
            await self._audit(caller, name, "declined")
            return Reply(f"/{name} not done")
        return await self._run(pending.caller, pending.command, pending.args, "confirmed")

    async def _run(
        self,
        caller: Caller,
        command: Command,
        args: Mapping[str, Any],
        outcome: str,
        run: Run | None = None,
    ) -> Reply:
        try:
            reply = await (run or command.run)(self.core, caller, args)
        except Exception as e:
            log.exception("/%s by %s failed", command.name, caller.actor)
            await self._audit(caller, command.name, "failed", f"{type(e).__name__}: {e}")
            return Reply(f"/{command.name} failed: {type(e).__name__}: {e}"[:300], ok=False)
        await self._audit(caller, command.name, outcome if reply.ok else "failed", reply.title)
        return reply

    async def _refuse(self, caller: Caller, command: str) -> Reply | None:
        """Refuse an unknown user: once per ``refusal_every_s`` a polite line and an audit row
        (counting what was sent since); otherwise nothing, so a flood writes nothing."""
        key, now = (caller.platform, caller.user_id), self._wall()
        last = self._refused.get(key)
        if last is not None and now - last[0] < self._refusal_s:
            self._refused[key] = (last[0], last[1] + 1)
            return None
        if len(self._refused) >= MAX_REMEMBERED:
            self._refused.clear()  # at worst some hear the refusal once more
        unheard = 0 if last is None else last[1]
        self._refused[key] = (now, 0)
        detail = f"{unheard} more message(s) since the last refusal" if unheard else ""
        await self._audit(caller, command, "refused", detail)
        return Reply(REFUSAL, ok=False)

    def _drop_expired(self) -> None:
        now = self._wall()
        for token in [t for t, p in self._pending.items() if now > p.expires_s + self._ttl_s]:
            del self._pending[token]  # long expired: told "expired" for one more TTL

    async def _audit(self, caller: Caller, command: str, outcome: str, detail: str = "") -> None:
        await self._bus.publish(
            CommandHandled(
                ts_ms=self._clock.now_ms(),
                platform=caller.platform,
                user_id=caller.user_id[:64],
                command=command[:32],
                outcome=outcome,
                detail=detail[:300],
            )
        )
