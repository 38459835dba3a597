"""``qt models``: train the ensemble's members, list and show the versions, and drive the
learning manager by hand: promote, rollback, prune, retrain."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.cli_common import (
    EnvFileOpt,
    console,
    load_or_exit,
    parse_day,
    run_or_exit,
    wide_console,
)
from core.errors import DataError

if TYPE_CHECKING:
    from core.config import Settings
    from core.domain.market import CandleSeries
    from core.domain.model_versions import ModelVersion
    from core.ports import Storage
    from core.services.learning import LearningManager

models_app = typer.Typer(
    help="Train the ensemble's members and list the saved versions.", no_args_is_help=True
)


def _names(value: str | None, option: str, known: list[str]) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise DataError(
            f"{option}: unknown member {unknown[0] if unknown else value!r}; known: "
            + ", ".join(known)
        )
    return names


@models_app.command("train")
def train(
    data: Annotated[
        list[Path] | None,
        typer.Option(help="Candle files or folders (default: the stored candles)."),
    ] = None,
    members: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated members: xgb,lgbm,nhits,patchtst (default: QT__MODELS__MEMBERS)."
        ),
    ] = None,
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: config or all files).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Train on candles before this day, UTC (keeps later ones unseen)."),
    ] = None,
    trees: Annotated[
        int | None, typer.Option(min=1, help="Boosting rounds of the tree members.")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Training epochs of the torch members.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Threads per member (default: cores / members).")
    ] = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Train members on candles (features, triple-barrier labels, purged holdout) and save
    a version of each, scored on the most recent, held-out part."""
    settings = load_or_exit(env_file)
    until_ms = parse_day(until, "--until") if until else None
    sizes = _Sizes(trees=trees, epochs=epochs, threads=threads)
    run_or_exit(lambda: _train(settings, data or [], members, symbols, until_ms, sizes))


@dataclass(frozen=True, slots=True)
class _Sizes:
    """The command line's overrides of the members' sizes (None: the settings')."""

    trees: int | None
    epochs: int | None
    threads: int | None


async def _train(
    settings: Settings,
    files: list[Path],
    members_opt: str | None,
    symbols_opt: str | None,
    until_ms: int | None,
    sizes: _Sizes,
) -> None:
    from core.ml.members import MEMBERS
    from storage import open_storage

    known = sorted(MEMBERS)
    names = _names(members_opt, "--members", known) or _names(
        ",".join(settings.models.members), "QT__MODELS__MEMBERS", known
    )
    assert names  # noqa: S101 - _names returns a list for a string
    storage = open_storage(settings.database_url)
    await storage.start()  # first: a data folder that cannot be used fails before any work
    try:
        await _train_into(storage, settings, files, names, symbols_opt, until_ms, sizes)
    finally:
        await storage.stop()


async def _train_into(
    storage: Storage,
    settings: Settings,
    files: list[Path],
    names: list[str],
    symbols_opt: str | None,
    until_ms: int | None,
    sizes: _Sizes,
) -> None:
    from bot.model_training import describe_params, train_and_save, train_config, workers_for
    from bot.trading import exit_config_from
    from core.market.validation import iso_ms

    series = await _candles(settings, files, symbols_opt, until_ms)
    # the members fit at once, one process each: share the cores between them
    per_member = max(1, (os.cpu_count() or 1) // workers_for(len(names)))
    config = train_config(
        settings.models,
        threads=sizes.threads or per_member,
        trees=sizes.trees,
        epochs=sizes.epochs,
    )
    console.print(
        f"training {', '.join(names)} on {', '.join(series)} ({describe_params(config.params)})"
    )
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(step: str, what: str) -> None:
            if step not in tasks:
                label = "features and labels" if step == "prepare" else step
                tasks[step] = bar.add_task(label, total=1)
            label = "features and labels" if step == "prepare" else step
            done = what != "started"
            bar.update(tasks[step], description=f"{label}: {what}", completed=int(done))

        result = await train_and_save(
            list(series.values()),
            names,
            repo=storage.model_versions,
            data_dir=settings.app.data_dir,
            config=config,
            exits=exit_config_from(settings.exits),
            progress=progress,
        )
    d = result.data
    console.print(
        f"window {iso_ms(d.train_start_ms)} to {iso_ms(d.end_ms)}; validation (held out, "
        f"purged) from {iso_ms(d.valid_start_ms)}"
    )
    for v in result.versions:
        console.print(f"saved {v.id}: {escape(_scores(v))}")
    for name, reason in result.failures:
        console.print(f"[red]{escape(name)} failed:[/red] {escape(reason)}")
    if result.failures:
        raise typer.Exit(1)


async def _candles(
    settings: Settings, files: list[Path], symbols_opt: str | None, until_ms: int | None
) -> dict[str, CandleSeries]:
    from bot.cli_backtest import _expand_folders, _load
    from core.market.validation import iso_ms

    wanted = None
    if symbols_opt is not None:
        wanted = [s.strip() for s in symbols_opt.split(",") if s.strip()]
        bad = [s for s in wanted if "/" not in s]
        if not wanted or bad:
            raise DataError(
                f"--symbols: a symbol must be BASE/QUOTE like BTC/USDT, received "
                f"{(bad or [symbols_opt])[0]!r}"
            )
        if not files:
            settings = settings.model_copy(
                update={"trading": settings.trading.model_copy(update={"symbols": wanted})}
            )
    series, sources = await _load(settings, _expand_folders(files, settings.trading.timeframe))
    if wanted is not None:
        missing = [s for s in wanted if s not in series]
        if missing:
            raise DataError(f"--symbols: no candles given for {', '.join(missing)}")
        series = {s: series[s] for s in wanted}
    if until_ms is not None:
        cut = {s: ser.between(None, until_ms) for s, ser in series.items()}
        empty = [s for s, ser in cut.items() if not len(ser)]
        if empty:
            raise DataError(
                f"--until {iso_ms(until_ms)}: {empty[0]} in {sources[empty[0]]} has no "
                f"candles before it"
            )
        series = cut
    return series


def _scores(v: ModelVersion) -> str:
    m = v.metrics

    def num(key: str) -> str:
        return f"{m[key]:.4f}" if key in m else "-"

    return (
        f"log-loss {num('log_loss')} (constant {num('log_loss_base')}), accuracy "
        f"{num('accuracy')} (base rate {num('base_rate')}), AUC {num('auc')}"
    )


def _gate(v: ModelVersion) -> str:
    """Return the RL sizer version's gate figures (it has no validation log-loss)."""
    m = v.metrics
    if "gate_passed" not in m:
        return "never judged against the simple sizers"
    figures = [
        *([f"PSR {m['gate_psr']:.3f}"] if "gate_psr" in m else []),
        *([f"Sharpe gain {m['gate_sharpe_gain']:+.2f}"] if "gate_sharpe_gain" in m else []),
        *([f"margin {m['gate_margin']:g}"] if "gate_margin" in m else []),
    ]
    verdict = "gate passed" if m["gate_passed"] >= 1 else "gate not passed"
    return f"{verdict}: {', '.join(figures) or '-'} against the best simple sizer out of sample"


def _health(v: ModelVersion) -> str:
    from core.ml.health import healthy_on_validation

    if healthy_on_validation(v.metrics):
        return "ok"
    return f"near-constant (std {v.metrics.get('p_std', float('nan')):.2g})"


@models_app.command("list")
def list_(env_file: EnvFileOpt = None) -> None:
    """List the saved versions: member, window, validation scores, health, status, and
    whether the artifact's files still match the recorded sha256."""
    settings = load_or_exit(env_file)
    run_or_exit(lambda: _list(settings))


async def _list(settings: Settings) -> None:
    import asyncio

    from core.market.validation import iso_ms
    from storage import open_storage

    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        versions = await storage.model_versions.list_versions()
    finally:
        await storage.stop()
    if not versions:
        console.print("no model versions yet: try `qt models train`")
        return
    table = Table("id", "member", "window", "log-loss", "acc", "AUC", "health", "status", "files")
    checks = await asyncio.gather(
        *(asyncio.to_thread(_verify, settings.app.data_dir, v) for v in versions)
    )
    for v, check in zip(versions, checks, strict=True):
        m = v.metrics
        table.add_row(
            v.id,
            v.member,
            f"{_minute(iso_ms(v.train_start_ms))} to {_minute(iso_ms(v.train_end_ms))}",
            f"{m['log_loss']:.4f}" if "log_loss" in m else "-",
            f"{m['accuracy']:.3f}" if "accuracy" in m else "-",
            f"{m['auc']:.3f}" if "auc" in m else "-",
            _health(v),
            v.status.value,
            escape(check),
        )
    # As wide as its data (a cut path or digest is a wrong one); a terminal wraps it instead.
    width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    wide_console(max(width, console.width)).print(table, crop=False)


def _minute(iso: str) -> str:
    return iso[:16].replace("T", " ")


def _verify(data_dir: Path, version: ModelVersion) -> str:
    """Return "verified" or "refused: <why>" for the version's files (sha256, then parsed)."""
    from core.errors import ArtifactError
    from core.ml.rl.sizer_versions import SIZER, load_sizer
    from core.ml.versions import load_version

    try:
        if version.member == SIZER:  # the RL sizing policy: its own sealed format
            load_sizer(data_dir, version)
        else:
            load_version(data_dir, version)
    except ArtifactError as exc:
        return f"refused: {exc}"
    return "verified"


async def _with_manager(
    settings: Settings, act: Callable[[LearningManager], Awaitable[str]], *, history: bool = False
) -> str:
    """Run ``act(manager)`` with a learning manager on the configured database
    (its events go to the audit trail like the process's)."""
    from bot.learning import offline_learning
    from core.clock import LiveClock
    from core.services.bus import EventBus
    from storage import open_storage

    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        bus = EventBus(sink=storage.events.append)

        async def candles() -> list[CandleSeries]:
            # the stored candles of the last QT__MODELS__WINDOW_DAYS: the manager's window
            series = (await _candles(settings, [], None, None)).values()
            days = settings.models.window_days
            if not days:
                return list(series)
            start = int(time.time() * 1000) - round(days * 86_400_000)
            cut = [s.between(start, None) for s in series]
            return [s for s in cut if len(s)]

        manager = offline_learning(
            settings,
            storage,
            clock=LiveClock(),
            bus=bus,
            history=candles if history else _no_history,
        )
        return await act(manager)
    finally:
        await storage.stop()


async def _no_history() -> list[CandleSeries]:
    raise DataError("this command trains nothing")


@models_app.command("show")
def show(
    version: Annotated[str, typer.Argument(help="A version id (see `qt models list`).")],
    env_file: EnvFileOpt = None,
) -> None:
    """Show one version: its status and why, window, symbols, parameters, libraries,
    validation scores, and whether its files still verify."""
    settings = load_or_exit(env_file)
    run_or_exit(lambda: _show(settings, version))


async def _show(settings: Settings, version_id: str) -> None:
    import asyncio

    from core.market.validation import iso_ms
    from core.ml.rl.sizer_versions import SIZER
    from storage import open_storage

    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        v = await storage.model_versions.get(version_id)
    finally:
        await storage.stop()
    if v is None:
        raise DataError(f"no model version {version_id!r}: see `qt models list`")
    check = await asyncio.to_thread(_verify, settings.app.data_dir, v)
    rows = [
        ("member", v.member),
        ("status", f"{v.status.value}: {v.reason or '-'}"),
        ("promoted", iso_ms(v.promoted_ms) if v.promoted_ms is not None else "never"),
        ("window", f"{iso_ms(v.train_start_ms)} to {iso_ms(v.train_end_ms)}"),
        ("symbols", ", ".join(v.symbols) or "-"),
        ("features", v.feature_set_hash),
        ("params", ", ".join(f"{k}={p}" for k, p in sorted(v.params.items())) or "-"),
        ("libraries", ", ".join(f"{k} {p}" for k, p in sorted(v.libraries.items())) or "-"),
        ("gate", _gate(v)) if v.member == SIZER else ("validation", _scores(v)),
        ("files", f"{v.artifact_path} ({check})"),
    ]
    for key, value in rows:
        console.print(f"{key:>10}  {escape(str(value))}")


@models_app.command("promote")
def promote(
    version: Annotated[str, typer.Argument(help="The version id to make its member's champion.")],
    env_file: EnvFileOpt = None,
) -> None:
    """Make a version its member's champion (the previous one is retired, still loadable);
    a running process serves it from its next learning check."""
    settings = load_or_exit(env_file)

    async def act(manager: LearningManager) -> str:
        return str(await manager.promote(version, "qt models promote"))

    run_or_exit(lambda: _say(_with_manager(settings, act)))


@models_app.command("rollback")
def rollback(
    member: Annotated[str, typer.Argument(help="The member whose champion to roll back.")],
    reason: Annotated[str, typer.Option(help="Why (kept with the versions).")] = "by hand",
    env_file: EnvFileOpt = None,
) -> None:
    """Restore a member's previous champion (the current one is retired)."""
    settings = load_or_exit(env_file)

    async def act(manager: LearningManager) -> str:
        return str(await manager.rollback(member, reason, "qt models rollback"))

    run_or_exit(lambda: _say(_with_manager(settings, act)))


@models_app.command("prune")
def prune(
    plan_only: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be deleted, delete nothing.")
    ] = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Delete the versions retention does not keep (every champion ever promoted, the
    shadows and the newest QT__LEARNING__KEEP_CANDIDATES others per member are kept): their
    files, rows and recorded predictions."""
    settings = load_or_exit(env_file)

    async def act(manager: LearningManager) -> str:
        gone = await (manager.prune_plan if plan_only else manager.prune)()
        verb = "would delete" if plan_only else "deleted"
        if not gone:
            return "nothing to prune"
        return f"{verb} {len(gone)} version(s): " + ", ".join(v.id for v in gone)

    run_or_exit(lambda: _say(_with_manager(settings, act)))


@models_app.command("retrain")
def retrain(
    members: Annotated[
        str | None,
        typer.Option(help="Comma-separated members (default: the ensemble's)."),
    ] = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Train candidates on the stored candles in worker processes, gate each against its
    champion on the same held-out rows and register it (SHADOW, RETIRED, or CHAMPION for a
    member's first version): what the learning manager does when a retrain is due."""
    settings = load_or_exit(env_file)

    async def act(manager: LearningManager) -> str:
        from bot.ensemble_loader import learning_members

        known = list(learning_members(settings))
        names = _names(members, "--members", known) or known
        report = await manager.run("requested by qt models retrain", names)
        for line in report.lines or ["nothing trained"]:
            console.print(escape(line))
        if report.failed or not report.trained:
            raise typer.Exit(1)
        return ""

    run_or_exit(lambda: _with_manager(settings, act, history=True))


async def _say(work: Awaitable[str]) -> None:
    console.print(escape(str(await work)))
