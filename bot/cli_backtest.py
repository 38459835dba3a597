"""``qt backtest``: run the engine over history and write the report."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape

from bot.cli_common import EnvFileOpt, console, load_or_exit, parse_day, run_or_exit
from core.errors import DataError

if TYPE_CHECKING:  # the CLI imports the settings, the domain and the ML only when a run needs them
    from bot.backtest import BacktestResult
    from bot.backtest_window import Sources
    from bot.walk_forward import WalkForward
    from core.config import Settings
    from core.domain.enums import CandleMarket
    from core.domain.market import CandleSeries
    from core.domain.market_rules import RulesInForce
    from core.market.funding import FundingRates
    from core.ml.ensemble import EnsembleProvider
    from core.ports import CandleRepo
    from core.signals.base import SignalProvider

STRATEGIES = ("ema_rsi", "mean_reversion", "ensemble", "meta")
_TIMERANGE = re.compile(r"^(\d{8})?-(\d{8})?$")
_T = TypeVar("_T")


def parse_timerange(value: str | None) -> tuple[int | None, int | None]:
    """Parse Freqtrade-style ``YYYYMMDD-YYYYMMDD`` (either side optional) into ms bounds."""
    if not value:
        return None, None
    match = _TIMERANGE.match(value)
    if not match:
        raise typer.BadParameter(
            f"expected YYYYMMDD-YYYYMMDD (either side may be empty), received {value!r}",
            param_hint="--timerange",
        )

    def day(text: str | None) -> int | None:
        if text is None:
            return None
        return parse_day(f"{text[:4]}-{text[4:6]}-{text[6:]}", "--timerange")

    start, end = day(match.group(1)), day(match.group(2))
    if start is not None and end is not None and end <= start:
        raise typer.BadParameter(
            f"the range {value!r} ends before it starts", param_hint="--timerange"
        )
    return start, end


# The options `qt backtest` and `qt evaluate` share: the same data, range and replay.
DataOpt = Annotated[
    list[Path] | None,
    typer.Option(
        help="Candle files (CSV like ../shared/data, Freqtrade json/feather), or folders: "
        "every file of QT__TRADING__TIMEFRAME in them."
    ),
]
DetailOpt = Annotated[
    list[Path] | None,
    typer.Option(help="Lower-timeframe files for fills inside each candle (e.g. 5m)."),
]
FundingOpt = Annotated[
    list[Path] | None,
    typer.Option(
        help="Funding-rate files of perps (BTC_USDT-funding.csv.gz: timestamp,funding_rate)."
    ),
]
TimerangeOpt = Annotated[
    str | None, typer.Option(help="Trade from-to, e.g. 20220101-20260101 (UTC).")
]
NameOpt = Annotated[str | None, typer.Option(help="Run name for the report files.")]
FullOpt = Annotated[
    bool, typer.Option(help="Send every candle through the full path (slower, same trades).")
]
ChartsOpt = Annotated[bool, typer.Option(help="Draw the PNG charts (about 1 s).")]


def run_name_or_now(name: str | None) -> str:
    """Return ``name``, or the time now as the run's name."""
    return name or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def backtest(
    data: DataOpt = None,
    detail: DetailOpt = None,
    funding: FundingOpt = None,
    timerange: TimerangeOpt = None,
    name: NameOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default <data_dir>/backtests).")
    ] = None,
    full: FullOpt = False,
    charts: ChartsOpt = True,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="ema_rsi, mean_reversion, ensemble (the newest saved models) or meta (picks "
            "among them per regime; default: QT__STRATEGY__PROVIDER)."
        ),
    ] = None,
    walk_forward: Annotated[
        bool,
        typer.Option(
            help="With the ensemble (or meta): retrain its members inside the backtest every "
            "QT__MODELS__RETRAIN_HOURS on the candles closed by then (no saved models needed)."
        ),
    ] = False,
    compare_risk: Annotated[
        bool,
        typer.Option(
            help="Run the backtest twice, brains off (QT__BRAINS__ENABLED=false) and on, "
            "and print and write them side by side."
        ),
    ] = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Backtest the configured strategy and Exit Brain with the paper fill model.

    Without --data, uses the candles stored in the database for the configured exchange,
    symbols and timeframe (see `qt data download|import`).
    """
    if compare_risk and walk_forward:
        # The two runs must trade the same signals: each would retrain its own models.
        raise typer.BadParameter(
            "compares the same signals, but --walk-forward retrains the models inside each "
            "run; compare saved models (--strategy ensemble) instead",
            param_hint="--compare-risk",
        )
    if strategy not in (None, *STRATEGIES):
        raise typer.BadParameter(
            f"expected {', '.join(STRATEGIES)}, received {strategy!r}", param_hint="--strategy"
        )
    settings = load_or_exit(env_file, **({"strategy": {"provider": strategy}} if strategy else {}))
    if walk_forward and settings.strategy.provider not in ("ensemble", "meta"):
        raise typer.BadParameter("needs --strategy ensemble or meta", param_hint="--walk-forward")
    start_ms, end_ms = parse_timerange(timerange)
    run_name = run_name_or_now(name)
    folder = out or settings.app.data_dir / "backtests"
    run_or_exit(
        lambda: _backtest(
            settings,
            RunFiles(data or [], detail or [], funding or []),
            start_ms,
            end_ms,
            run_name,
            folder,
            full,
            charts,
            walk_forward,
            compare_risk,
        )
    )


async def _load(
    settings: Settings, files: list[Path]
) -> tuple[dict[str, CandleSeries], dict[str, str]]:
    """Return the candles by symbol, and where each symbol's came from (for messages)."""
    from core.domain.enums import CandleMarket
    from core.market.candle_cache import CandleCache
    from core.market.importers import read_candle_file, traded_market_note

    market = CandleMarket.traded(settings.exchange.market_type)
    if files:
        now_ms = int(time.time() * 1000)
        cache = CandleCache(candle_cache_folder(settings))
        loaded = [(f, read_candle_file(f, now_ms=now_ms, cache=cache)) for f in files]
        for path, item in loaded:
            note = traded_market_note(path, item.market, market, "the backtest")
            if note:
                console.print(f"note: {escape(note)}")
        found = one_file_per_symbol([(f, item.series.symbol, item.series) for f, item in loaded])
        return found, {item.series.symbol: str(f) for f, item in loaded}
    return await _load_stored(settings, market)


def candle_cache_folder(settings: Settings) -> Path:
    """Return where the parses of candle files are kept: beside the database, never in the
    data folder (which may be read-only or shared; ``core.market.candle_cache``)."""
    return settings.app.data_dir / "cache" / "candles"


async def _load_stored(
    settings: Settings, market: CandleMarket
) -> tuple[dict[str, CandleSeries], dict[str, str]]:
    """Return the stored candles of the configured symbols (or of a dynamic universe)."""
    from core.market.stored import load_checked
    from storage import open_storage

    storage = open_storage(settings.database_url, candle_market=market)
    await storage.start()
    where = f"the database ({settings.exchange.name} {market} {settings.trading.timeframe})"
    try:
        found: dict[str, CandleSeries] = {}
        for symbol in await _stored_symbols(settings, storage.candles, market):
            # Checked like a file: an earlier version's database can end with a 2027 candle.
            checked = await load_checked(
                storage.candles,
                settings.exchange.name,
                symbol,
                settings.trading.timeframe,
                now_ms=int(time.time() * 1000),
            )
            if checked.notice:
                console.print(f"note: {escape(checked.notice)}")
            if len(checked.series):
                found[symbol] = checked.series
    finally:
        await storage.stop()
    if not found:
        raise DataError(
            f"no {settings.trading.timeframe} {market} candles stored for "
            f"{settings.exchange.name} {', '.join(settings.trading.symbols)}: pass --data FILE "
            "or run `qt data import` (QT__EXCHANGE__MARKET_TYPE picks spot or perp candles)"
        )
    return found, dict.fromkeys(found, where)


async def _stored_symbols(
    settings: Settings, candles: CandleRepo, market: CandleMarket
) -> list[str]:
    """Return the configured symbols, or with a dynamic universe every stored symbol of the
    exchange, market and timeframe (the universe picks among them)."""
    if not settings.universe.dynamic:
        return list(settings.trading.symbols)
    return sorted(
        {
            s.symbol
            for s in await candles.list_series()
            if (s.exchange, s.market, s.timeframe)
            == (settings.exchange.name, market, settings.trading.timeframe)
        }
    )


def _in_universe_quote(
    settings: Settings, series: dict[str, CandleSeries]
) -> dict[str, CandleSeries]:
    """With a dynamic universe, leave out (with a note) the symbols of another quote: the
    universe would never pick them (a static list is refused for them instead)."""
    if not settings.universe.dynamic:
        return series
    from core.market.universe_history import quote_of

    quote = settings.universe.rules(settings.trading.quote_currency).quote
    other = sorted(s for s in series if quote_of(s) != quote)
    if other:
        console.print(f"note: not quoted in {quote}, left out of the universe: {', '.join(other)}")
    return {s: v for s, v in series.items() if s not in other}


def _expand_folders(paths: list[Path], timeframe: str) -> list[Path]:
    """Replace each folder by its candle files of ``timeframe``."""
    from core.market.data_folder import candle_files

    return [f for p in paths for f in (candle_files(p, timeframe) if p.is_dir() else [p])]


def one_file_per_symbol(
    loaded: list[tuple[Path, str, _T]], what: str = "candle files"
) -> dict[str, _T]:
    """Key ``(path, symbol, data)`` by symbol, refusing a second file for a symbol (say spot
    and futures BTC_USDT-1h, or two funding exports): keeping either one silently would
    backtest data nobody chose."""
    by_symbol: dict[str, tuple[Path, _T]] = {}
    for path, symbol, data in loaded:
        seen = by_symbol.get(symbol)
        if seen is not None:
            raise DataError(f"two {what} for {symbol}: {seen[0]} and {path}; pass one per symbol")
        by_symbol[symbol] = (path, data)
    return {symbol: data for symbol, (_, data) in by_symbol.items()}


@dataclass(frozen=True, slots=True)
class RunFiles:
    """The files a backtest reads."""

    candles: list[Path]
    detail: list[Path]
    funding: list[Path]


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """A backtest's inputs, loaded and checked: candles, detail, funding and market rules."""

    series: dict[str, CandleSeries]
    detail: dict[str, CandleSeries] | None
    funding: dict[str, FundingRates]
    rules: dict[str, RulesInForce]
    sources: Sources

    async def backtest(
        self,
        settings: Settings,
        *,
        start_ms: int | None,
        end_ms: int | None,
        full: bool,
        provider: SignalProvider | None = None,
        trainer: WalkForward | None = None,
    ) -> BacktestResult:
        """Run the backtest of these inputs (``bot.backtest.run_backtest``)."""
        from bot.backtest import run_backtest

        return await run_backtest(
            settings,
            self.series,
            start_ms=start_ms,
            end_ms=end_ms,
            detail=self.detail,
            fast=not full,
            funding=self.funding or None,
            rules=self.rules,
            provider=provider,
            walk_forward=trainer,
            sources=self.sources,
        )


async def load_run(settings: Settings, files: RunFiles) -> Run:
    """Load the candles (``--data`` or the database), detail candles and funding rates, and
    resolve each symbol's market rules, printing the notes on them."""
    from bot.backtest_window import Sources
    from bot.market_rules import notices, resolved, stored_rules
    from core.market.funding import read_funding_file

    series, candle_files = await _load(
        settings, _expand_folders(files.candles, settings.trading.timeframe)
    )
    series = _in_universe_quote(settings, series)
    detail, detail_files = await _load(settings, files.detail) if files.detail else (None, {})
    funding = [(f, read_funding_file(f)) for f in files.funding]
    rates = one_file_per_symbol([(f, r.symbol, r) for f, r in funding], "funding files")
    for path, r in funding:
        for note in r.notes:  # e.g. timestamps converted from µs: never silently
            console.print(f"{escape(str(path))}: {escape(note)}")
    rules = resolved(settings, series, stored=await stored_rules(settings), series=series)
    for line in notices(settings, rules):
        console.print(escape(line), style="yellow")
    return Run(
        series=series,
        detail=detail,
        funding=rates,
        rules=dict(rules),
        sources=Sources(
            candles=candle_files,
            detail=detail_files,
            funding={r.symbol: str(f) for f, r in funding},
        ),
    )


def ensemble_for(
    settings: Settings, *, shuffle_seed: int | None = None
) -> tuple[EnsembleProvider, WalkForward]:
    """Return the walk-forward ensemble and its retrain, saying how it retrains
    (``shuffle_seed``: on permuted labels, a control)."""
    from bot.walk_forward import walk_forward_ensemble

    provider, trainer = walk_forward_ensemble(settings, shuffle_seed=shuffle_seed)
    m, learning = settings.models, settings.learning
    window = f"the last {m.window_days:g} days" if m.window_days else "every candle so far"
    console.print(
        f"walk-forward ensemble of {', '.join(trainer.members)}: the learning manager checks "
        f"every {m.retrain_hours:g} market hours, trains every {learning.every_hours:g} h "
        f"(given {learning.min_new_candles} new candles) on {window}, gates each candidate "
        f"({learning.gate_test}, alpha {learning.gate_alpha:g}) and shadows it "
        f"{learning.shadow_hours:g} h before a promotion"
    )
    return provider, trainer


async def chosen_provider(
    settings: Settings, walk_forward: bool
) -> tuple[SignalProvider | None, WalkForward | None]:
    """Return the provider to trade (None: the configured baseline) and, walking forward,
    the ensemble's retrain: the meta-strategy takes the ensemble as a candidate when it is
    walked forward or has saved models, else chooses among the baselines (said)."""
    from bot.trading import meta_from

    if settings.strategy.provider != "meta":
        return await _ensemble(settings, walk_forward)
    strategy = settings.strategy.model_copy(update={"provider": "ensemble"})
    as_ensemble = settings.model_copy(update={"strategy": strategy})
    try:
        # Saved models from the end of their training on: on the candles they were trained
        # on their entries would earn an in-sample record, and win the picks with it.
        ensemble, trainer = await _ensemble(as_ensemble, walk_forward, after_training=True)
    except DataError as e:  # no saved models
        console.print(
            "note: the meta-strategy chooses among ema_rsi and mean_reversion only "
            f"({escape(str(e))}; or --walk-forward)"
        )
        return meta_from(settings), None
    return meta_from(settings, ensemble), trainer


async def _ensemble(
    settings: Settings, walk_forward: bool, *, after_training: bool = False
) -> tuple[EnsembleProvider | None, WalkForward | None]:
    """Return the ensemble (None: another strategy) and, walking forward, its retrain
    (``after_training``: saved models serve the candles closing after their training only)."""
    if settings.strategy.provider != "ensemble":
        return None, None
    if walk_forward:
        return ensemble_for(settings)
    from bot.ensemble_loader import load_ensemble

    provider = await load_ensemble(settings, after_training=after_training)
    console.print(
        "ensemble of " + ", ".join(m.version_id for m in provider.members) + " (the models "
        "stay as trained: --walk-forward retrains them inside the backtest)"
    )
    return provider, None


async def _backtest(
    settings: Settings,
    files: RunFiles,
    start_ms: int | None,
    end_ms: int | None,
    run_name: str,
    folder: Path,
    full: bool,
    charts: bool,
    walk_forward: bool,
    compare_risk: bool = False,
) -> None:
    from bot.report import print_report, print_sources, write_report
    from bot.report_folder import check_report_folder

    check_report_folder(folder, run_name)  # before the run: a bad --out or --name costs nothing
    if compare_risk:
        from bot.cli_compare import compare_backtest

        await compare_backtest(
            settings,
            files,
            start_ms=start_ms,
            end_ms=end_ms,
            run_name=run_name,
            folder=folder,
            full=full,
            charts=charts,
        )
        return
    run = await load_run(settings, files)
    provider, trainer = await chosen_provider(settings, walk_forward)
    started = time.perf_counter()
    result = await run.backtest(
        settings, start_ms=start_ms, end_ms=end_ms, full=full, provider=provider, trainer=trainer
    )
    elapsed_s = time.perf_counter() - started
    print_report(result.metrics, console)
    print_sources(result.trades, console)
    learning = None
    if trainer is not None:
        from bot.walk_forward import learning_json

        learning = learning_json(trainer)
    files_written = write_report(
        result.metrics,
        result.trades,
        result.curve,
        folder,
        run_name=run_name,
        benchmarks=result.benchmarks,
        charts=charts,
        funding_symbols=list(run.funding),
        symbol_failures=result.symbol_failures,
        universe=result.universe,
        denials=result.denials,
        learning=learning,
    )
    print_run_notes(result, elapsed_s, funded=bool(run.funding), trainer=trainer, provider=provider)
    console.print(f"report: {escape(str(files_written.json_path))}")


def print_run_notes(
    result: BacktestResult,
    elapsed_s: float,
    *,
    funded: bool,
    trainer: WalkForward | None,
    provider: SignalProvider | None,
) -> None:
    """Print what a backtest did besides its metrics: candles and trades, funding, gaps in
    the detail, stranded positions, failed cycles, the universe, the walk-forward's retrains
    the members the ensemble left out, the regimes and the meta-strategy's picks."""
    from bot.backtest import ensemble_in
    from bot.report import denials_line, failures_summary
    from bot.report_regimes import regimes_line, selections_line
    from bot.report_universe import universe_line

    console.print(
        f"{result.candles} candles, {len(result.trades)} closed trades, "
        f"{result.open_positions} position(s) still open (valued at the last close), "
        f"{result.candles / max(elapsed_s, 1e-9):,.0f} candles/s. "
        + (
            f"Funding settled {result.funding_events} time(s) on open positions."
            if funded
            else "Funding is not modelled (no funding data: --funding FILE)."
        )
    )
    if result.detail_fallbacks:
        console.print(
            f"{result.detail_fallbacks} candle(s) had gaps in their detail candles and were "
            "filled on the strategy candle itself."
        )
    for symbol, last_ms in result.stranded:
        console.print(
            f"{symbol}: a position is still open, but its candles end at "
            f"{datetime.fromtimestamp(last_ms / 1000, UTC):%Y-%m-%d %H:%M} UTC (delisted or "
            "missing data): nothing managed it after that, and it held a position slot",
            style="bold yellow",
        )
    if result.symbol_failures:
        console.print(escape(failures_summary(result.symbol_failures)), style="bold red")
    if result.denials:
        console.print(escape(denials_line(result.denials)))
    if result.universe is not None:
        console.print(escape(universe_line(result.universe)))
    if trainer is not None:
        from bot.walk_forward import decision_lines, summary

        console.print(escape(summary(trainer)))
        for line in decision_lines(trainer):
            console.print(escape(f"  {line}"))
    ensemble = ensemble_in(provider)
    for symbol, left_out in (ensemble.exclusions_by_symbol if ensemble else {}).items():
        for member, reason in left_out.items():
            console.print(
                escape(f"ensemble left out {member} on {symbol}: {reason}"), style="yellow"
            )
    console.print(escape(regimes_line(result.regime_changes)))
    if result.selections:
        console.print(escape(selections_line(result.selections)))
