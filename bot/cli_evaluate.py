"""``qt evaluate``: the walk-forward ensemble's honest out-of-sample evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from bot.cli_backtest import (
    ChartsOpt,
    DataOpt,
    DetailOpt,
    FullOpt,
    FundingOpt,
    NameOpt,
    RunFiles,
    TimerangeOpt,
    ensemble_for,
    load_run,
    parse_timerange,
    print_run_notes,
    run_name_or_now,
)
from bot.cli_common import EnvFileOpt, console, load_or_exit, run_or_exit, wide_console

if TYPE_CHECKING:
    from core.config import Settings

TABLE_WIDTH = 190  # the scores table has twelve columns: never squeezed to the terminal


def evaluate(
    data: DataOpt = None,
    detail: DetailOpt = None,
    funding: FundingOpt = None,
    timerange: TimerangeOpt = None,
    name: NameOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default <data_dir>/evaluations).")
    ] = None,
    full: FullOpt = False,
    charts: ChartsOpt = True,
    shuffle_labels: Annotated[
        bool,
        typer.Option(
            help="A control: every retrain trains on its window's labels permuted (the "
            "evaluation's stay true); the ensemble must land within noise of chance. Not "
            "counted as a trial."
        ),
    ] = False,
    shuffle_seed: Annotated[
        int | None, typer.Option(min=0, help="Seed of --shuffle-labels' permutations (0).")
    ] = None,
    sizing: Annotated[
        bool,
        typer.Option(
            help="Also compare position sizing on the walk-forward's trades, out of sample: "
            "RL (PPO, trained per fold in worker processes) against fixed-fractional, "
            "volatility targeting and capped fractional Kelly, with a shuffled-reward control."
        ),
    ] = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Evaluate the walk-forward ensemble out of sample: per member and ensemble accuracy,
    balanced accuracy, log-loss, Brier, ROC AUC against a noise band and calibration; the
    strategy's trading net of fees and slippage against buy and hold; the Probabilistic and
    Deflated Sharpe Ratios over the configurations evaluated on the same data.

    Takes the data options of `qt backtest` and runs its walk-forward (`--strategy ensemble
    --walk-forward`): QT__MODELS__* retrain the members, QT__STRATEGY__ENSEMBLE_* combine them.
    """
    if shuffle_seed is not None and not shuffle_labels:
        raise typer.BadParameter("needs --shuffle-labels", param_hint="--shuffle-seed")
    settings = load_or_exit(env_file, strategy={"provider": "ensemble"})
    start_ms, end_ms = parse_timerange(timerange)
    run_name = run_name_or_now(name)
    folder = out or settings.app.data_dir / "evaluations"
    seed = (shuffle_seed or 0) if shuffle_labels else None
    run_or_exit(
        lambda: _evaluate(
            settings,
            RunFiles(data or [], detail or [], funding or []),
            start_ms,
            end_ms,
            run_name,
            folder,
            full=full,
            charts=charts,
            control_seed=seed,
            sizing=sizing,
        )
    )


async def _evaluate(
    settings: Settings,
    files: RunFiles,
    start_ms: int | None,
    end_ms: int | None,
    run_name: str,
    folder: Path,
    *,
    full: bool,
    charts: bool,
    control_seed: int | None,
    sizing: bool = False,
) -> None:
    from bot.evaluate import evaluate as run_evaluation
    from bot.evaluate_report import print_evaluation, write_evaluation
    from bot.report_folder import check_report_folder
    from bot.trials import ledger_path

    check_report_folder(folder, run_name)  # before the run: a bad --out or --name costs nothing
    run = await load_run(settings, files)
    provider, trainer = ensemble_for(settings, shuffle_seed=control_seed)
    if control_seed is not None:
        console.print(
            f"control: every retrain trains on its labels permuted (seed {control_seed}); "
            "the evaluation's labels stay true"
        )
    ev = await run_evaluation(
        settings,
        run,
        provider,
        trainer,
        start_ms=start_ms,
        end_ms=end_ms,
        full=full,
        run_name=run_name,
        ledger=ledger_path(settings),
        control_seed=control_seed,
    )
    print_run_notes(
        ev.result, ev.elapsed_s, funded=bool(run.funding), trainer=trainer, provider=provider
    )
    print_evaluation(ev, wide_console(TABLE_WIDTH))
    written = write_evaluation(ev, folder, charts=charts)
    console.print(f"evaluation: {escape(str(written.json_path))}")
    if sizing:
        from bot.sizing_comparison import walk_sizes_config
        from bot.sizing_report import evaluate_sizing

        s = settings.sizing
        console_ = wide_console(TABLE_WIDTH)
        await evaluate_sizing(ev, folder, console_, walk_sizes_config(s), margin=s.gate_margin)
