"""What every ``qt`` command shares: settings loading, output and error reporting.

Every command loads and validates settings first; a ``QTError`` is printed as one clear message
(exit code 2) instead of a traceback. Everything a command prints goes through ``STDOUT``
(``console``, ``wide_console``, ``print_plain``): printing never raises.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer
from rich.console import Console
from rich.markup import escape

from bot.fail_safe_stream import FailSafeStream
from core.errors import QTError
from core.redaction import process_redactor

if TYPE_CHECKING:  # `qt --help` imports no settings (pydantic) and no numpy: see load_or_exit
    from core.config import Settings

# stdout may be a closed pipe or a full disk: printing must never raise (bot.fail_safe_stream).
STDOUT = FailSafeStream(lambda: sys.stdout)
console = Console(file=cast(IO[str], STDOUT))
# One line however long (a path, a URL): the terminal wraps it, rich does not cut it at 80.
err_console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

EnvFileOpt = Annotated[
    Path | None, typer.Option("--env-file", help="Settings file (default: ./.env if present).")
]
DemoOpt = Annotated[
    bool, typer.Option("--demo", help="Act on the demo's database instead of the run database.")
]


def database_url_for(settings: Settings, demo: bool) -> str:
    """Return the database a command acts on: the demo's (``--demo``) or the run's."""
    from bot.modes import demo_database_url

    return demo_database_url(settings) if demo else settings.database_url


def wide_console(width: int) -> Console:
    """Return a console of ``width`` columns on ``STDOUT`` (a table never cut to the terminal)."""
    return Console(file=cast(IO[str], STDOUT), width=width)


def print_plain(text: str) -> None:
    """Print ``text`` as it is (no markup, no wrapping) on ``STDOUT``: output for scripts."""
    STDOUT.write(text + "\n")
    STDOUT.flush()


def exit_if_output_lost() -> None:
    """Exit 1 with one line if stdout failed: the command ran, but a script reading its
    output would take an empty or cut-off answer for the result."""
    error = STDOUT.failure
    if error is None:
        return
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    err_console.print(
        f"[red]error:[/red] the output could not be written to stdout: {escape(reason)} "
        "(the command itself ran to the end)"
    )
    raise typer.Exit(1)


def load_or_exit(env_file: Path | None, **overrides: Any) -> Settings:
    """Load settings or print the configuration error and exit 2."""
    from core.config import load_settings

    try:
        return load_settings(env_file, **overrides)
    except QTError as e:
        err_console.print(f"[red]config error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from e


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Print our errors raised in the block as one line and exit 2: the one place a command
    turns a ``QTError`` into its message (settings have their own, ``load_or_exit``)."""
    try:
        yield
    except QTError as e:
        # Masked like the log (the process's redactor): a venue error may quote a signed URL.
        err_console.print(f"[red]error:[/red] {escape(process_redactor().text(str(e)))}")
        raise typer.Exit(2) from e


def run_or_exit(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; print our errors as one line and exit 2."""
    with one_line_errors():
        return asyncio.run(coro_fn())


def parse_day(value: str, option: str) -> int:
    """Parse an ISO date (UTC unless it says otherwise) into ms since the epoch."""
    try:
        day = datetime.fromisoformat(value)
    except ValueError as e:
        raise typer.BadParameter(
            f"{value!r} is not a date like 2022-01-01", param_hint=option
        ) from e
    if day.tzinfo is None:
        day = day.replace(tzinfo=UTC)
    return int(day.timestamp() * 1000)
