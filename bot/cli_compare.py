"""``qt backtest --compare-risk``: load once, backtest brains off then on, report both."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from bot.cli_backtest import RunFiles, chosen_provider, load_run, print_run_notes
from bot.cli_common import console
from core.config import Settings

if TYPE_CHECKING:
    from core.signals.base import SignalProvider

SIDES = ("brains-off", "brains-on")


async def compare_backtest(
    settings: Settings,
    files: RunFiles,
    *,
    start_ms: int | None,
    end_ms: int | None,
    run_name: str,
    folder: Path,
    full: bool,
    charts: bool,
) -> None:
    """Run the comparison, print it, and write each run's report and the comparison's files
    (``backtest-<name>-brains-off|on.*``, ``backtest-<name>-compare-risk.json|png``)."""
    from bot.report import write_report
    from bot.report_compare import print_comparison, write_comparison
    from bot.report_folder import check_report_folder
    from bot.risk_compare import run_comparison

    for side in SIDES:  # before the runs: a name too long with its suffix costs nothing
        check_report_folder(folder, f"{run_name}-{side}")
    run = await load_run(settings, files)

    async def provider_for(chosen: Settings) -> SignalProvider | None:
        provider, _ = await chosen_provider(chosen, walk_forward=False)
        return provider

    cmp = await run_comparison(
        run, settings, provider_for, start_ms=start_ms, end_ms=end_ms, full=full
    )
    for side, result, wall_s in zip(SIDES, (cmp.off, cmp.on), (cmp.off_s, cmp.on_s), strict=True):
        console.print(f"{side}:", style="bold")
        print_run_notes(result, wall_s, funded=bool(run.funding), trainer=None, provider=None)
    print_comparison(cmp, console)
    for side, result in zip(SIDES, (cmp.off, cmp.on), strict=True):
        written = write_report(
            result.metrics,
            result.trades,
            result.curve,
            folder,
            run_name=f"{run_name}-{side}",
            benchmarks=result.benchmarks,
            charts=charts,
            funding_symbols=list(run.funding),
            symbol_failures=result.symbol_failures,
            universe=result.universe,
            denials=result.denials,
        )
        console.print(f"{side} report: {escape(str(written.json_path))}")
    compared = write_comparison(cmp, folder, run_name=run_name, charts=charts)
    console.print(f"comparison: {escape(str(compared.json_path))}")
    if compared.png_path is not None:
        console.print(f"chart: {escape(str(compared.png_path))}")
