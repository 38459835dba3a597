"""The one command table: every chat and console command, its arguments, role and help.

Telegram's handlers, Discord's slash commands, the console and ``/help`` are all generated from
``COMMANDS``; adding a command touches this file and ``core.services.commands`` only. The
arguments of every command are parsed here, in one place (``parse``): a malformed one gets the
command's usage, never a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from core.domain.enums import Mode
from core.services.commands import CommandCore, Reply, duration_ms

MAX_REASON_CHARS = 500  # as the CLI's: the audit trail is not a notebook
MAX_LIST = 50  # /trades, /daily: a chat message stays readable


class Role(IntEnum):
    """Who may run what: each role may also run everything of the roles below it."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


class UsageError(ValueError):
    """A command's arguments do not parse; the message says why."""


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIST:
        raise UsageError(f"a count from 1 to {MAX_LIST}, received {text!r}")
    return int(text)


def _word(text: str) -> str:
    if len(text) > 64 or not text.isprintable():
        raise UsageError(f"one short word, received {text[:20]!r}")
    return text


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument: its name in the usage line, how it parses, whether it is needed."""

    name: str
    parse: Callable[[str], Any]
    required: bool = False
    help: str = ""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command, from where (``user_id`` as the platform states it)."""

    platform: str
    user_id: str
    name: str = ""
    role: Role | None = None  # set by the dispatcher from the allowlist

    @property
    def actor(self) -> str:
        """Return how the audit trail names the caller."""
        return f"{self.platform}:{self.user_id}" + (f" ({self.name})" if self.name else "")


Run = Callable[[CommandCore, Caller, Mapping[str, Any]], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Command:
    """One command. ``confirm`` says, from its parsed arguments, whether it needs the
    asker's confirmation before it runs (destructive)."""

    name: str
    summary: str
    role: Role
    run: Run
    args: tuple[Arg, ...] = ()
    confirm: Callable[[Mapping[str, Any]], bool] = lambda _args: False
    # Parses the words itself (the /mode grammar); None: positional ``args``.
    parser: Callable[[Sequence[str]], dict[str, Any]] | None = None
    usage_text: str = ""
    confirms: str = ""  # when it asks for a confirmation, in words (the help table's)
    # Runs at once when a confirmation is asked (the part that must not wait: /halt flatten
    # halts now and asks only about the flatten).
    before_confirm: Run | None = None
    # The role its arguments need when more than ``role`` (/models rollback: an operator's),
    # checked before any confirmation is asked.
    role_for: Callable[[Mapping[str, Any]], Role] | None = None

    def needs(self, args: Mapping[str, Any]) -> Role:
        """Return the role running it with ``args`` needs."""
        return self.role if self.role_for is None else max(self.role, self.role_for(args))

    @property
    def usage(self) -> str:
        """Return ``/name <required> [optional]``."""
        if self.usage_text:
            return self.usage_text
        parts = [f"<{a.name}>" if a.required else f"[{a.name}]" for a in self.args]
        return " ".join((f"/{self.name}", *parts))


def parse(command: Command, words: Sequence[str]) -> dict[str, Any]:
    """Return ``command``'s arguments from the words after it; raise ``UsageError``."""
    if command.parser is not None:
        return command.parser(words)
    if len(words) > len(command.args):
        raise UsageError(f"too many arguments: {' '.join(words[len(command.args) :])[:40]!r}")
    out: dict[str, Any] = {}
    for i, arg in enumerate(command.args):
        if i < len(words):
            try:
                out[arg.name] = arg.parse(words[i])
            except ValueError as e:  # UsageError too
                raise UsageError(f"{arg.name}: {e}") from e
        elif arg.required:
            raise UsageError(f"{arg.name} is needed")
    return out


_MODE_NAMES = {m.value.lower(): m for m in Mode}


def _parse_mode(words: Sequence[str]) -> dict[str, Any]:
    """``[MODE|auto] [for DURATION] [reason…]``."""
    if not words:
        return {}
    name, rest = words[0].lower(), list(words[1:])
    if name == "auto":
        if rest:
            raise UsageError("/mode auto takes nothing after it")
        return {"auto": True}
    if name not in _MODE_NAMES:
        raise UsageError(f"unknown mode {words[0][:20]!r}: one of {', '.join(_MODE_NAMES)}, auto")
    out: dict[str, Any] = {"mode": _MODE_NAMES[name]}
    if rest and rest[0].lower() == "for":
        if len(rest) < 2:
            raise UsageError("for needs a duration, like 4h")
        try:
            out["for_ms"] = duration_ms(rest[1])
        except ValueError as e:
            raise UsageError(str(e)) from e
        rest = rest[2:]
    reason = " ".join(rest)
    if len(reason) > MAX_REASON_CHARS:
        raise UsageError(f"a reason of at most {MAX_REASON_CHARS} characters")
    out["reason"] = reason
    return out


def _parse_halt(words: Sequence[str]) -> dict[str, Any]:
    if not words:
        return {"flatten": False}
    if len(words) == 1 and words[0].lower() == "flatten":
        return {"flatten": True}
    raise UsageError("/halt takes nothing, or flatten (also close every position)")


async def _mode(core: CommandCore, caller: Caller, a: Mapping[str, Any]) -> Reply:
    if a.get("auto"):
        return await core.clear_mode(caller.actor)
    return await core.mode(caller.actor, a.get("mode"), a.get("for_ms"), a.get("reason", ""))


def _parse_models(words: Sequence[str]) -> dict[str, Any]:
    if not words:
        return {}
    if words[0].lower() != "rollback" or len(words) != 2:
        raise UsageError("/models, or /models rollback MEMBER (e.g. /models rollback xgb)")
    return {"rollback": _word(words[1])}


async def _models(core: CommandCore, caller: Caller, a: Mapping[str, Any]) -> Reply:
    if "rollback" not in a:
        return await core.models()
    return await core.rollback_model(caller.actor, a["rollback"])


CHART_DAYS = 30  # /chart equity|drawdown: the last month
CHART_CANDLES = 500  # /chart SYMBOL: its newest candles


def _parse_chart(words: Sequence[str]) -> dict[str, Any]:
    if len(words) > 1:
        raise UsageError("one of equity, drawdown or a symbol like BTC/USDT")
    what = words[0] if words else "equity"
    if what.lower() in ("equity", "drawdown"):
        return {"what": what.lower()}
    return {"what": "symbol", "symbol": _word(what).upper()}


async def _chart(core: CommandCore, caller: Caller, a: Mapping[str, Any]) -> Reply:
    from bot.chat.charts import draw, drawdown_of, line_png  # matplotlib: only when asked

    if a["what"] == "symbol":
        held = core.closes(a["symbol"], CHART_CANDLES)
        if held is None:
            return Reply(f"no candles of {a['symbol']} held", ok=False)
        ts, close = held
        png = await draw(line_png, a["symbol"], ts, close, "close")
        return Reply(f"{a['symbol']}: the newest {len(ts)} candles", photo=png)
    points = await core.equity_history(CHART_DAYS)
    if len(points) < 2:
        return Reply("no equity history yet (a snapshot every market hour)", ok=False)
    ts = [p.ts_ms for p in points]
    equity = [float(p.equity) for p in points]
    if a["what"] == "drawdown":
        png = await draw(line_png, "drawdown (%)", ts, drawdown_of(equity), "%")
        return Reply(f"drawdown, the last {CHART_DAYS} days", photo=png)
    png = await draw(line_png, "equity", ts, equity, core.s.quote)
    return Reply(f"equity, the last {CHART_DAYS} days: {equity[-1]:,.2f}", photo=png)


COMMANDS: tuple[Command, ...] = (
    Command("help", "list the commands you may run", Role.VIEWER, lambda c, u, a: _help(u)),
    Command("whoami", "your user id and role here", Role.VIEWER, lambda c, u, a: _whoami(u)),
    Command(
        "status",
        "mode, trading state, equity, open positions and their exits, last candles",
        Role.VIEWER,
        lambda c, u, a: c.status(),
    ),
    Command(
        "positions",
        "open positions, unrealised P&L, exit ladders",
        Role.VIEWER,
        lambda c, u, a: c.positions(),
    ),
    Command(
        "trades",
        "the newest closed trades",
        Role.VIEWER,
        lambda c, u, a: c.trades(a.get("n", 10)),
        (Arg("n", _count, help="how many (10)"),),
    ),
    Command(
        "profit",
        "realised P&L, win rate, profit factor (in the last N days, or since the start)",
        Role.VIEWER,
        lambda c, u, a: c.profit(a.get("days")),
        (Arg("days", _count),),
    ),
    Command(
        "daily",
        "realised P&L per UTC day",
        Role.VIEWER,
        lambda c, u, a: c.daily(a.get("n", 7)),
        (Arg("n", _count, help="days (7)"),),
    ),
    Command("balance", "equity and the assets held", Role.VIEWER, lambda c, u, a: c.balance()),
    Command(
        "risk",
        "the Risk Brain's latest assessment: score, level, VaR/ES, tail, drawdown, actions",
        Role.VIEWER,
        lambda c, u, a: c.risk(),
    ),
    Command("regime", "each symbol's market regime", Role.VIEWER, lambda c, u, a: c.regime()),
    Command(
        "models",
        "which provider and model versions trade, champions and shadows; or roll one back "
        "(operator)",
        Role.VIEWER,
        _models,
        parser=_parse_models,
        confirm=lambda a: "rollback" in a,
        role_for=lambda a: Role.OPERATOR if "rollback" in a else Role.VIEWER,
        usage_text="/models [rollback MEMBER]",
        confirms="a rollback",
    ),
    Command(
        "why",
        "why the bot entered a trade: members, weights, regime, features, exits",
        Role.VIEWER,
        lambda c, u, a: c.why(a.get("trade")),
        (Arg("trade", _word, help="symbol or trade id (the newest open one)"),),
    ),
    Command(
        "health",
        "the health checks: data freshness, venue, model age, loop lag, database, disk",
        Role.VIEWER,
        lambda c, u, a: c.health(),
    ),
    Command(
        "halt",
        "stop new exposure now (persistent); flatten: also close every position",
        Role.OPERATOR,
        lambda c, u, a: c.halt(u.actor, flatten=a["flatten"]),
        parser=_parse_halt,
        confirm=lambda a: bool(a.get("flatten")),
        usage_text="/halt [flatten]",
        confirms="flatten (the halt itself at once)",
        before_confirm=lambda c, u, a: c.halt(u.actor),
    ),
    Command(
        "resume",
        "allow new entries again (the brains' pause, if any, still holds)",
        Role.OPERATOR,
        lambda c, u, a: c.resume(u.actor),
        confirm=lambda a: True,
        confirms="always",
    ),
    Command(
        "mode",
        "show the mode, set it by hand (for a while), or auto: back to the CEO Brain",
        Role.OPERATOR,
        _mode,
        parser=_parse_mode,
        confirm=lambda a: bool(a),  # any change: out of EMERGENCY, into EXPANSION, auto...
        usage_text="/mode [MODE|auto] [for 4h] [reason]",
        confirms="a change (showing: never)",
    ),
    Command(
        "chart",
        "a chart: equity (default), drawdown, or a symbol's closes",
        Role.VIEWER,
        _chart,
        parser=_parse_chart,
        usage_text="/chart [equity|drawdown|SYMBOL]",
    ),
    Command(
        "retrain",
        "queue a training run of the models, or of one member (the report follows)",
        Role.OPERATOR,
        lambda c, u, a: c.retrain(u.actor, a.get("member")),
        (Arg("member", _word),),
    ),
)
BY_NAME: dict[str, Command] = {c.name: c for c in COMMANDS}


def allowed(role: Role) -> list[Command]:
    """Return the commands ``role`` may run."""
    return [c for c in COMMANDS if c.role <= role]


async def _help(caller: Caller) -> Reply:
    role = caller.role or Role.VIEWER
    return Reply(
        f"commands for {role.name.lower()}s",
        tuple(f"{c.usage} - {c.summary}" for c in allowed(role)),
    )


async def _whoami(caller: Caller) -> Reply:
    role = "not allowed" if caller.role is None else caller.role.name.lower()
    return Reply(f"{caller.actor}: {role}")


def markdown_table() -> str:
    """Return the command table as README markdown (a test keeps the README in sync)."""
    rows = ["| command | role | confirms | what |", "|---|---|---|---|"]
    for c in COMMANDS:
        usage = c.usage.replace("|", "\\|")
        rows.append(f"| `{usage}` | {c.role.name.lower()} | {c.confirms} | {c.summary} |")
    return "\n".join(rows)
