"""``qt risk``: the Risk Brain's models on history (``qt risk backtest``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from bot.cli_common import EnvFileOpt, console, load_or_exit, parse_day, run_or_exit, wide_console
from core.errors import DataError

if TYPE_CHECKING:
    from core.config import Settings
    from core.market.daily_returns import DailyCloses

risk_app = typer.Typer(
    help="The Risk Brain: its latest assessment, and its VaR models over history.",
    no_args_is_help=True,
)

METHODS = ("parametric", "cornish_fisher", "historical", "monte_carlo")
TABLE_WIDTH = 200  # fifteen columns: never squeezed to the terminal


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_methods(value: str) -> list[str]:
    """Parse ``parametric,historical`` into known VaR methods (in the order given)."""
    methods = list(dict.fromkeys(_split(value)))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise typer.BadParameter(
            f"unknown VaR method(s) {', '.join(unknown) or '(none given)'}; known: "
            f"{', '.join(METHODS)}",
            param_hint="--methods",
        )
    return methods


def parse_levels(value: str) -> list[float]:
    """Parse ``0.95,0.99`` into VaR levels, each in (0.5, 1)."""
    levels: list[float] = []
    for part in _split(value) or [value]:
        try:
            level = float(part)
        except ValueError:
            level = float("nan")
        if not 0.5 < level < 1.0:  # NaN fails too
            raise typer.BadParameter(
                f"a VaR level is a fraction in (0.5, 1) like 0.99, received {part!r}",
                param_hint="--levels",
            )
        levels.append(level)
    return list(dict.fromkeys(levels))


def parse_portfolio(value: str) -> dict[str, float]:
    """Parse ``BTC/USDT=0.6,ETH/USDT=0.4`` into weights by symbol (a minus: a short)."""
    weights: dict[str, float] = {}
    for part in _split(value):
        symbol, sep, text = part.partition("=")
        try:
            weight = float(text) if sep and symbol.strip() else float("nan")
        except ValueError:
            weight = float("nan")
        if weight != weight or weight in (float("inf"), float("-inf")):
            raise typer.BadParameter(
                f"expected SYMBOL=WEIGHT pairs like BTC/USDT=0.6,ETH/USDT=0.4, received {part!r}",
                param_hint="--portfolio",
            )
        weights[symbol.strip()] = weight
    if not weights:
        raise typer.BadParameter("names no symbol", param_hint="--portfolio")
    return weights


@risk_app.command("backtest")
def risk_backtest(
    data: Annotated[
        list[Path] | None,
        typer.Option(
            help="Candle files (CSV like ../shared/data, Freqtrade json/feather) of any "
            "timeframe up to 1d; default: the stored candles of QT__TRADING__SYMBOLS."
        ),
    ] = None,
    symbol: Annotated[
        list[str] | None,
        typer.Option(help="The symbols to hold, equally weighted (default: every one loaded)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First day of history used (UTC), e.g. 2018-01-01.")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Last day of history used (UTC).")] = None,
    window: Annotated[
        int, typer.Option(min=30, help="Daily returns each day's VaR is fitted on.")
    ] = 250,
    levels: Annotated[str, typer.Option(help="VaR levels, comma-separated.")] = "0.95,0.99",
    methods: Annotated[str, typer.Option(help="VaR methods, comma-separated.")] = ",".join(METHODS),
    portfolio: Annotated[
        str | None,
        typer.Option(help="Weights, e.g. BTC/USDT=0.6,ETH/USDT=0.4 (scaled to gross 1)."),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON here.")
    ] = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Backtest the VaR models on history: every method and level, day by day.

    Each day's VaR from the --window daily returns of the portfolio before it, against the
    day's return. Prints, per method and level, the
    exceptions, Kupiec, Christoffersen independence and conditional coverage (statistic and
    p-value), the Basel zone and the mean ES against the mean loss on exception days.
    Intraday candles are resampled to UTC daily closes."""
    chosen_methods, chosen_levels = parse_methods(methods), parse_levels(levels)
    symbols = [s for item in symbol or [] for s in _split(item)]
    weights = parse_portfolio(portfolio) if portfolio is not None else None
    if weights is not None and symbols:
        raise typer.BadParameter("give --symbol or --portfolio, not both", param_hint="--symbol")
    start_ms = parse_day(start, "--start") if start else None
    end_ms = parse_day(end, "--end") if end else None
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise typer.BadParameter(f"{end} is before --start {start}", param_hint="--end")
    if json_path is not None and json_path.is_dir():  # refused before the run, not after it
        raise typer.BadParameter(f"{json_path} is a folder, not a file", param_hint="--json")
    wanted = list(weights) if weights is not None else symbols
    overrides = {"trading": {"symbols": wanted}} if wanted and not data else {}
    settings = load_or_exit(env_file, **overrides)
    run_or_exit(
        lambda: _risk_backtest(
            settings,
            data or [],
            weights or dict.fromkeys(wanted, 1.0),
            (start_ms, end_ms),
            window,
            chosen_methods,
            chosen_levels,
            json_path,
        )
    )


async def _risk_backtest(
    settings: Settings,
    files: list[Path],
    weights: dict[str, float],
    bounds: tuple[int | None, int | None],
    window: int,
    methods: list[str],
    levels: list[float],
    json_path: Path | None,
) -> None:
    from bot.cli_backtest import _load
    from bot.risk_report import RiskBacktest, print_risk_backtest, write_risk_backtest_json
    from core.brains.risk_models import backtest_var
    from core.market.daily_returns import daily_closes, portfolio_returns

    loading = time.perf_counter()
    series, sources = await _load(settings, files)
    closes = {s: _between(daily_closes(c), bounds) for s, c in series.items()}
    for c in closes.values():
        if c.partial_last_day:
            console.print(f"note: {c.symbol}: its last day is unfinished, left out")
        if c.short_days:
            console.print(
                f"note: {c.symbol}: {c.short_days} day(s) lack their last candles (their "
                "close is the last one they have)"
            )
    p = portfolio_returns(closes, weights or dict.fromkeys(closes, 1.0))
    if len(p.returns) < window + 2:
        raise DataError(
            f"{len(p.returns)} daily returns: a {window}-day window needs at least "
            f"{window + 2} (one window and two days to forecast); pass more history or a "
            "smaller --window"
        )
    started = time.perf_counter()
    runs = [backtest_var(p.returns, m, lv, window=window) for lv in levels for m in methods]
    result = RiskBacktest(
        portfolio=p,
        sources={s: sources[s] for s in p.weights},
        resampled_from={s: tf for s in p.weights if (tf := closes[s].resampled_from) is not None},
        window=window,
        runs=runs,
        elapsed_s=time.perf_counter() - started,
        load_s=started - loading,
    )
    print_risk_backtest(result, wide_console(TABLE_WIDTH))
    if json_path is not None:
        write_risk_backtest_json(result, json_path)
        console.print(f"json: {escape(str(json_path))}")


def _between(closes: DailyCloses, bounds: tuple[int | None, int | None]) -> DailyCloses:
    """Return the days of ``closes`` from the start day to the end day (both included)."""
    from dataclasses import replace

    import numpy as np

    start_ms, end_ms = bounds
    keep = np.ones(len(closes.day_ms), dtype=bool)
    if start_ms is not None:
        keep &= closes.day_ms >= start_ms
    if end_ms is not None:
        keep &= closes.day_ms <= end_ms
    return replace(closes, day_ms=closes.day_ms[keep], close=closes.close[keep])


@risk_app.command("show")
def show(
    demo: Annotated[
        bool, typer.Option("--demo", help="Read the demo's database instead of the run database.")
    ] = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Print the latest risk assessment: score, level, VaR/ES, tail, actions."""
    from bot.cli_brains import risk_show

    risk_show(demo, env_file)
