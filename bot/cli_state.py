"""``qt state``: show or change the trading state of the bot's database.

The state is read from the database for every order, so ``qt state halt`` stops a running
``qt run`` (or, with ``--demo``, a running ``qt demo``: each demo starts on a fresh database)
before its next order, and survives restarts.
The change and its reason are written to the audit trail (``trading.state_changed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bot.cli_common import DemoOpt, EnvFileOpt, console, database_url_for, load_or_exit, run_or_exit
from core.domain.enums import TradingState

state_app = typer.Typer(
    help="Show or change the trading state: active, reducing (exits only) or halted.",
    no_args_is_help=True,
)

ReasonOpt = Annotated[str, typer.Option(help="Why (kept in the audit trail).")]

_MEANING = {
    TradingState.ACTIVE: "orders allowed",
    TradingState.REDUCING: "only orders that reduce exposure (exits) are allowed",
    TradingState.HALTED: (
        "no new exposure and no take-profits; stops and exits at market still go, so no "
        "position is left bare; entries not yet filled are canceled"
    ),
}


async def _apply(
    url: str, new: TradingState | None, reason: str
) -> tuple[TradingState, str, bool, str]:
    """Set the state (None: only read it); return (state, reason, changed, the stored resume
    mark: "" none)."""
    from core.clock import LiveClock
    from core.ports import StateKey
    from core.services.bus import EventBus
    from core.services.trading_state import TradingStateService
    from storage import open_storage

    storage = open_storage(url)
    await storage.start()
    try:
        service = TradingStateService(
            storage.state, EventBus(sink=storage.events.append), LiveClock()
        )
        changed = False
        if new is not None:
            changed = await service.set(new, reason=reason, actor="cli")
        state, why = await service.current(), await service.reason()
        return state, why, changed, await storage.state.get(StateKey.RESUMED_MS) or ""
    finally:
        await storage.stop()


def _run(new: TradingState | None, reason: str, demo: bool, env_file: Path | None) -> None:
    settings = load_or_exit(env_file)
    url = database_url_for(settings, demo)
    state, why, changed, resume_mark = run_or_exit(lambda: _apply(url, new, reason))
    verb = "now" if changed else ("already" if new is not None else "is")
    console.print(f"trading state {verb} [bold]{state.value.upper()}[/bold]: {_MEANING[state]}")
    if why:
        console.print(f"reason: {escape(why)}")
    # Say where: a halt only reaches the process that uses this database (live has its own).
    console.print(f"database: {escape(url)}")
    _say_kept_halt(url, new, resume_mark)


def _say_kept_halt(url: str, new: TradingState | None, resume_mark: str) -> None:
    """Say so when a process halted on a database it could not write and ended before the
    halt reached it: the halt waits beside the database for the next start."""
    from bot.halt_note import halt_note_for
    from core.services.trading_state import resume_answers

    note = halt_note_for(url)
    kept = note.read() if note is not None else None
    if kept is None or note is None:
        return
    # The next start's rule (TradingStateService): a resume as late as the halt answers it.
    answered = resume_answers(resume_mark, kept.since_ms)
    if new is TradingState.ACTIVE and answered:
        console.print(
            f"the storage halt kept in {escape(str(note.path))} is answered by this resume"
        )
        return
    console.print(
        f"[bold]a storage halt is kept in {escape(str(note.path))}[/bold] ({escape(kept.reason)}): "
        "the process halted when the database could not be written and ended before the halt "
        "reached it; its next start is HALTED unless resumed"
        + (
            " (this resume is older by its clock than the halt: resume again once it has started)"
            if new is TradingState.ACTIVE
            else ""
        )
    )


@state_app.command("show")
def show(demo: DemoOpt = False, env_file: EnvFileOpt = None) -> None:
    """Print the trading state and why it was set."""
    _run(None, "", demo, env_file)


@state_app.command("halt")
def halt(
    reason: ReasonOpt = "halted from the command line",
    demo: DemoOpt = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Stop all new orders at once (persists across restarts; cancels still work)."""
    _run(TradingState.HALTED, reason, demo, env_file)


@state_app.command("reduce")
def reduce(
    reason: ReasonOpt = "reducing from the command line",
    demo: DemoOpt = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Allow only exposure-reducing orders: exits keep working, no new entries."""
    _run(TradingState.REDUCING, reason, demo, env_file)


@state_app.command("resume")
def resume(
    reason: ReasonOpt = "resumed from the command line",
    demo: DemoOpt = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Allow orders again."""
    _run(TradingState.ACTIVE, reason, demo, env_file)
