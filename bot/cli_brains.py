"""``qt mode``, ``qt policy`` and ``qt risk show``: what the brains decided, and an operator's
manual mode.

``qt mode set PRESERVATION --for 4h --reason "FOMC"`` writes the manual mode (the CEO honours it
until it expires or ``qt mode auto``) and a policy version with the mode's levers at once; a
running process adopts it within seconds (the ``policy_refresh`` job) and recombines it with
the Risk Brain's actions at once: a manual mode never loosens what risk enforces.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from bot.cli_common import (
    DemoOpt,
    EnvFileOpt,
    console,
    database_url_for,
    load_or_exit,
    run_or_exit,
)
from core.domain.enums import Mode

if TYPE_CHECKING:
    from core.config import Settings

mode_app = typer.Typer(
    help="Show the CEO's operating mode, or set one by hand.", no_args_is_help=True
)
policy_app = typer.Typer(help="Show the policy in force and its history.", no_args_is_help=True)

MAX_REASON_CHARS = 500  # as the Strategy Brain's reasons: the audit trail is not a notebook


def _short_reason(value: str) -> str:
    if len(value) > MAX_REASON_CHARS:
        raise typer.BadParameter(
            f"at most {MAX_REASON_CHARS} characters, received {len(value)}", param_hint="--reason"
        )
    return value


ReasonOpt = Annotated[
    str, typer.Option(help="Why (kept in the audit trail).", callback=_short_reason)
]


def parse_duration_ms(value: str) -> int:
    """Parse ``30m``, ``4h`` or ``2d`` into milliseconds (> 0, at most a year)."""
    from core.services.commands import duration_ms  # the command core: only when needed

    try:
        return duration_ms(value)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--for") from e


def _when(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, OverflowError, OSError):  # a hand-edited row: say it as it is
        return f"{ts_ms} ms"


async def _with_storage(url: str, work: Any) -> Any:
    from storage import open_storage

    storage = open_storage(url)
    await storage.start()
    try:
        return await work(storage)
    finally:
        await storage.stop()


def _store(settings: Settings, storage: Any, clock: Any) -> Any:
    from bot.brains import policy_store
    from core.services.bus import EventBus

    return policy_store(settings, storage, EventBus(sink=storage.events.append), clock)


async def _market_clock(storage: Any, demo: bool) -> Any:
    """Return the clock the process on this database runs on: the wall clock, or for the
    demo (market time from 2024, accelerated) a clock standing at the newest time its brains
    wrote (an expiry or a dwell on the wall clock would lie years ahead of the demo's)."""
    from core.clock import LiveClock, SimClock

    if not demo:
        return LiveClock()
    assessed = await storage.decisions.list_assessments(1)
    written = await storage.decisions.list_policies(1)
    seen = [r.ts_ms for r in (*assessed, *written)]
    return SimClock(max(seen)) if seen else LiveClock()


async def _set_mode(
    settings: Settings,
    url: str,
    mode: Mode | None,
    for_ms: int | None,
    reason: str,
    demo: bool = False,
) -> tuple[int, str]:
    """Write (or, ``mode`` None, clear) the manual mode; return the policy version and mode."""
    from core.services.commands import clear_manual_mode, set_manual_mode

    async def work(storage: Any) -> tuple[int, str]:
        clock = await _market_clock(storage, demo)
        store = _store(settings, storage, clock)
        await store.start()
        await store.announce()
        if mode is None:
            event = await clear_manual_mode(storage, store, clock, reason, "cli")
        else:
            event = await set_manual_mode(storage, store, clock, mode, for_ms, reason, "cli")
        await storage.events.append(event)
        return store.current().version, event.current

    result: tuple[int, str] = await _with_storage(url, work)
    return result


@mode_app.command("set")
def mode_set(
    mode: Annotated[str, typer.Argument(help="EXPANSION, OPTIMIZATION, PRESERVATION, EMERGENCY")],
    for_: Annotated[
        str | None,
        typer.Option("--for", help="How long, like 30m, 4h or 2d (default: until unset)."),
    ] = None,
    reason: ReasonOpt = "by hand",
    demo: DemoOpt = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Set the operating mode by hand (the CEO honours it until it expires)."""
    try:
        chosen = Mode(mode.upper())
    except ValueError:
        raise typer.BadParameter(
            f"unknown mode {mode!r}; one of {', '.join(m.value for m in Mode)}", param_hint="MODE"
        ) from None
    for_ms = None if for_ is None else parse_duration_ms(for_)
    settings = load_or_exit(env_file)
    if not settings.brains.enabled:
        # No CEO would ever expire it: the policy store would hold it for good.
        raise typer.BadParameter(
            "the brains are off (QT__BRAINS__ENABLED=false): no CEO honours or expires a "
            "manual mode; turn them on, or use qt state to pause or halt",
            param_hint="MODE",
        )
    url = database_url_for(settings, demo)
    version, _ = run_or_exit(lambda: _set_mode(settings, url, chosen, for_ms, reason, demo))
    until = "until unset (qt mode auto)" if for_ms is None else f"for {for_}"
    console.print(
        f"mode now [bold]{chosen.value}[/bold] by hand {until} (policy version {version}); "
        "a running process adopts it within seconds, the Risk Brain's actions still apply"
    )
    console.print(f"database: {escape(url)}")


@mode_app.command("auto")
def mode_auto(
    reason: ReasonOpt = "by hand",
    demo: DemoOpt = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Clear a manual mode: the CEO Brain decides again from its next review."""
    settings = load_or_exit(env_file)
    url = database_url_for(settings, demo)
    _, current = run_or_exit(lambda: _set_mode(settings, url, None, None, reason, demo))
    console.print(f"manual mode cleared; the CEO decides from its next review (now {current})")


async def _read(url: str) -> dict[str, Any]:
    from core.ports import StateKey

    async def work(storage: Any) -> dict[str, Any]:
        return {
            "policies": await storage.decisions.list_policies(20),
            "assessments": await storage.decisions.list_assessments(1),
            "decisions": await storage.decisions.list_decisions("ceo", 5),
            "manual": await storage.state.get(StateKey.MANUAL_MODE),
        }

    result: dict[str, Any] = await _with_storage(url, work)
    return result


@mode_app.command("show")
def mode_show(demo: DemoOpt = False, env_file: EnvFileOpt = None) -> None:
    """Print the mode in force, why, an operator's manual mode and the latest risk level."""
    from core.services.ceo_service import parse_manual

    settings = load_or_exit(env_file)
    url = database_url_for(settings, demo)
    found = run_or_exit(lambda: _read(url))
    if not found["policies"]:
        console.print("no policy written yet: the settings' policy, mode OPTIMIZATION")
    else:
        latest = found["policies"][0]
        console.print(
            f"mode [bold]{latest.policy.mode.value}[/bold] (policy version {latest.version}, "
            f"{latest.source}, {_when(latest.ts_ms)}): {escape(latest.reason)}"
        )
    manual = parse_manual(found["manual"])
    if manual is not None:
        until = "until unset" if manual.until_ms is None else f"until {_when(manual.until_ms)}"
        console.print(f"manual mode {manual.mode.value} {until}: {escape(manual.reason)}")
    if found["assessments"]:
        a = found["assessments"][0]
        console.print(f"risk {a.level} {a.score:.0f}/100 ({_when(a.ts_ms)})")
    for d in found["decisions"]:
        console.print(f"  {_when(d.ts_ms)}  {escape(d.summary)}")
    console.print(f"database: {escape(url)}")


@policy_app.command("show")
def policy_show(demo: DemoOpt = False, env_file: EnvFileOpt = None) -> None:
    """Print every field of the policy in force."""
    from bot.report import table  # the report module: only when printing one
    from bot.trading import policy_from
    from core.domain.policy import policy_to_dict

    settings = load_or_exit(env_file)
    url = database_url_for(settings, demo)
    found = run_or_exit(lambda: _read(url))
    if found["policies"]:
        latest = found["policies"][0]
        title = f"policy version {latest.version} ({latest.source}, {_when(latest.ts_ms)})"
        policy = latest.policy
    else:
        title, policy = "the settings' policy (no version written yet)", policy_from(settings)
    rows = [[k, str(v)] for k, v in policy_to_dict(policy).items()]
    console.print(table(title, ["field", "value"], rows))


@policy_app.command("history")
def policy_history(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many versions.")] = 20,
    demo: DemoOpt = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Print the newest policy versions: who wrote each, when and why."""
    from bot.report import table  # the report module: only when printing one

    settings = load_or_exit(env_file)
    url = database_url_for(settings, demo)

    async def read() -> list[Any]:
        async def work(storage: Any) -> list[Any]:
            result: list[Any] = await storage.decisions.list_policies(limit)
            return result

        return list(await _with_storage(url, work))

    versions = run_or_exit(read)
    rows = [
        [
            str(v.version),
            _when(v.ts_ms),
            v.policy.mode.value,
            v.policy.state.value,
            f"{v.policy.size_multiplier}",
            f"{v.policy.stop_tighten}",
            v.source,
            escape(v.reason[:80]),
        ]
        for v in versions
    ]
    headers = ["version", "written", "mode", "state", "size x", "stops x", "by", "why"]
    console.print(table(f"policy versions ({len(rows)} newest)", headers, rows))


def _fig(value: Any, spec: str) -> str:
    """Format a stored figure; one JSON could not hold (``"nan"``, ``"inf"``) as it is."""
    return format(value, spec) if isinstance(value, int | float) else escape(str(value))


def risk_show(demo: bool, env_file: Path | None) -> None:
    """Print the latest risk assessment (``qt risk show``)."""
    from bot.report import table  # the report module: only when printing one

    settings = load_or_exit(env_file)
    url = database_url_for(settings, demo)
    found = run_or_exit(lambda: _read(url))
    if not found["assessments"]:
        console.print("no risk assessment yet (the risk_assessment job runs every market hour)")
        raise typer.Exit(0)
    a = found["assessments"][0]
    body = json.loads(a.body)
    console.print(
        f"risk [bold]{a.level}[/bold] {_fig(a.score, '.1f')}/100 at {_when(a.ts_ms)}: drawdown "
        f"{_fig(body['drawdown'], '.2%')} (tier {body['tier']}), exposure "
        f"{_fig(body['exposure_pct'], '.2f')}x "
        f"equity, concentration {_fig(body['concentration'], '.2f')}, correlation "
        f"{_fig(body['correlation'], '.2f')}"
    )
    console.print(
        table(
            "score components (0-100)",
            ["component", "score"],
            [[name, _fig(value, ".1f")] for name, value in body["components"]],
        )
    )
    for horizon in ("var_daily", "var_horizon"):
        rows = [
            [e["method"], _fig(e["level"], ".0%"), _fig(e["var"], ".3%"), _fig(e["es"], ".3%")]
            for e in body[horizon]
        ]
        if rows:
            title = "daily VaR / ES" if horizon == "var_daily" else "VaR / ES per candle"
            console.print(table(title, ["method", "level", "VaR", "ES"], rows))
    tail = body.get("tail")
    if tail:
        hill = "-" if tail["hill_index"] is None else _fig(tail["hill_index"], ".2f")
        console.print(
            f"tail: skew {_fig(tail['skew'], '.2f')}, excess kurtosis "
            f"{_fig(tail['excess_kurtosis'], '.2f')}, "
            f"Hill {hill} (k {tail['hill_k']}), fat {tail['fat_tail']}, score "
            f"{_fig(tail['score'], '.0f')}"
        )
    for m in body["measures"]:
        console.print(f"action: {m['kind']} {_fig(m['value'], 'g')} ({escape(m['reason'])})")
    for note in body["notes"]:
        console.print(f"note: {escape(note)}")
    console.print(f"database: {escape(url)}")
