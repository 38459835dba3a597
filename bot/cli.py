"""``qt``: the command line of Quantum Trader.

Heavy modules are imported inside the commands so ``qt --help`` stays instant.
"""

from __future__ import annotations

import atexit
import gc
import json
from pathlib import Path
from typing import Annotated

import typer

from bot.cli_backtest import backtest
from bot.cli_brains import mode_app, policy_app
from bot.cli_common import (
    EnvFileOpt,
    console,
    exit_if_output_lost,
    load_or_exit,
    one_line_errors,
    run_or_exit,
)
from bot.cli_data import data_app
from bot.cli_evaluate import evaluate
from bot.cli_markets import markets as _markets  # noqa: F401  (registers `qt data markets`)
from bot.cli_models import models_app
from bot.cli_risk import risk_app
from bot.cli_state import state_app

app = typer.Typer(
    help="Quantum Trader: an asyncio crypto trading bot (paper by default).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    result_callback=lambda *_args, **_kwargs: _after_command(),
)
# The process's console is a front end: when it fails, the process trades on (and its log
# says so). Every other command's output is its result, and losing it fails the command.
PROCESS_COMMANDS = frozenset({"demo", "run"})
_invoked: list[str | None] = [None]  # the command of this invocation (set before it runs)


@app.callback()
def _before_command(ctx: typer.Context) -> None:
    # No docstring: the app's help stays the Typer's.
    _invoked[0] = ctx.invoked_subcommand
    if not _exit_collection_skipped:
        _exit_collection_skipped.append(True)
        # Registered after logging's: atexit runs last in first, so logging.shutdown still
        # flushes and closes every handler after this, and the standard streams are flushed
        # after all the handlers, as without it.
        atexit.register(_skip_the_exit_collection)


_exit_collection_skipped: list[bool] = []


def _skip_the_exit_collection() -> None:
    """Leave the heap to the operating system at exit: the interpreter's final collections
    walk every object a backtest made (about a tenth of `qt backtest`'s CPU time here) only to
    free memory the process gives back anyway. Nothing of ours waits on a collection: every
    file is written and closed by its command (``bot.atomic_files``), the log by logging's
    own exit handler."""
    gc.disable()
    gc.freeze()  # the exit's collections skip frozen objects


def _after_command() -> None:
    """Fail a command whose output was lost (not the demo's or run's console); typer calls
    this only when the command succeeded."""
    if _invoked[0] not in PROCESS_COMMANDS:
        exit_if_output_lost()


config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.command()(backtest)
app.command()(evaluate)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(risk_app, name="risk")
app.add_typer(mode_app, name="mode")
app.add_typer(policy_app, name="policy")
app.add_typer(state_app, name="state")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")

# --- process ---------------------------------------------------------------------------------


@app.command()
def demo(
    data: Annotated[
        Path | None, typer.Option(help="Replay this candle file instead of a synthetic market.")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Candles replayed per wall-clock second.")
    ] = None,
    candles: Annotated[int | None, typer.Option(help="Candles to replay per symbol.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the synthetic market.")] = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Run the whole process offline: paper trading on a replayed market, accelerated."""
    demo_over = {
        k: v
        for k, v in {
            "data_file": data,
            "candles_per_second": speed,
            "replay_candles": candles,
            "seed": seed,
        }.items()
        if v is not None
    }
    settings = load_or_exit(env_file, **({"demo": demo_over} if demo_over else {}))
    from bot.logging_setup import configure_logging
    from bot.modes import build_demo
    from bot.runner import run_process

    with one_line_errors():  # a data folder the log cannot be written in
        configure_logging(settings, console)

    run_or_exit(lambda: run_process(lambda: build_demo(settings), console=console))


@app.command()
def run(env_file: EnvFileOpt = None) -> None:
    """Run the process on live market data from the configured exchange (paper orders)."""
    settings = load_or_exit(env_file)
    from bot.logging_setup import configure_logging
    from bot.modes import build_run
    from bot.runner import run_process

    with one_line_errors():  # a data folder the log cannot be written in
        configure_logging(settings, console)

    run_or_exit(lambda: run_process(lambda: build_run(settings), console=console))


# --- config and db ---------------------------------------------------------------------------


@config_app.command("show")
def config_show(env_file: EnvFileOpt = None) -> None:
    """Print the effective settings as JSON, secrets redacted."""
    from core.config import redacted
    from core.redaction import masked_url

    settings = load_or_exit(env_file)
    data = redacted(settings)
    data["database"]["effective_url"] = masked_url(settings.database_url)
    console.print_json(json.dumps(data))


@db_app.command("upgrade")
def db_upgrade(env_file: EnvFileOpt = None) -> None:
    """Apply database migrations up to the newest revision."""
    settings = load_or_exit(env_file)
    from storage.migrate import current_revision, upgrade

    async def upgrade_and_read() -> str | None:
        await upgrade(settings.database_url)
        return current_revision(settings.database_url)  # inside: its errors are one line too

    console.print(f"database at revision {run_or_exit(upgrade_and_read)}")


def main() -> None:
    """Entry point for ``python -m bot.cli``."""
    app()


if __name__ == "__main__":
    main()
