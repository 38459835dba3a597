"""Backtest reports: rich tables on a console, and JSON, CSV and PNG files on disk.

Nothing here reads the wall clock: file names come from the ``run_name`` the caller passes. Charts
are drawn with matplotlib's Agg canvas directly (no pyplot, no GUI, no global backend switch).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bot.atomic_files import atomic_files
from bot.report_folder import check_report_folder
from core.analytics import (
    BacktestMetrics,
    BenchmarkSeries,
    EquityCurve,
)
from core.domain.events import SymbolFailed, jsonable
from core.domain.market import fmt_ts
from core.domain.trades import ClosedTrade
from core.services.universe import UniverseSummary

_CSV_COLUMNS = (
    "trade_id symbol side market_type leverage opened_ms opened_utc closed_ms closed_utc "
    "duration_ms amount entry_price exit_price fees funding pnl pnl_pct exit_reason "
    "liquidation_price legs legs_summary provider regime exit_profile p_up members top_features"
).split()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportFiles:
    """Paths of the files ``write_report`` wrote."""

    json_path: Path
    trades_csv_path: Path
    equity_png_path: Path
    drawdown_png_path: Path
    monthly_png_path: Path


# -- formatting ----------------------------------------------------------------------------------


def fmt_num(value: float | None, digits: int = 2) -> str:
    """Format a number; None as "-" and infinities as "inf" / "-inf"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:,.{digits}f}"


def fmt_pct(value: float | None, digits: int = 2) -> str:
    """Format a percent figure (21.0 -> "21.00%")."""
    text = fmt_num(value, digits)
    return text if text == "-" else f"{text}%"


def fmt_duration(ms: int | None) -> str:
    """Format a duration as "3d 04:05" (days, hours:minutes)."""
    if ms is None:
        return "-"
    minutes_total = round(ms / 60_000)
    days, rest = divmod(minutes_total, 1440)
    hours, minutes = divmod(rest, 60)
    return f"{days}d {hours:02d}:{minutes:02d}" if days else f"{hours:02d}:{minutes:02d}"


# -- console -------------------------------------------------------------------------------------


def _summary_rows(m: BacktestMetrics) -> list[tuple[str, str]]:
    t, dd = m.trades, m.drawdown
    win_rate = fmt_pct(t.win_rate_pct)
    return [
        ("Backtesting from", fmt_ts(m.start_ms)),
        ("Backtesting to", fmt_ts(m.end_ms)),
        ("Timeframe / days", f"{m.timeframe} / {m.days}"),
        ("Starting balance", fmt_num(m.starting_balance)),
        ("Final balance", fmt_num(m.final_balance)),
        ("Absolute profit", fmt_num(m.total_profit_abs)),
        ("Total profit %", fmt_pct(m.total_profit_pct)),
        ("CAGR %", fmt_pct(m.cagr_pct)),
        ("Sharpe", fmt_num(m.sharpe)),
        ("Sortino", fmt_num(m.sortino)),
        ("Calmar", fmt_num(m.calmar)),
        ("SQN", fmt_num(t.sqn)),
        ("Profit factor", fmt_num(t.profit_factor)),
        ("Expectancy (ratio)", f"{fmt_num(t.expectancy_abs)} ({fmt_num(t.expectancy_ratio)})"),
        ("Omega", fmt_num(m.omega)),
        ("Daily VaR / ES 95%", f"{fmt_pct(m.daily_var_95_pct)} / {fmt_pct(m.daily_es_95_pct)}"),
        ("Total trades", str(t.total)),
        ("Win / Draw / Loss", f"{t.wins} / {t.draws} / {t.losses} (WR: {win_rate})"),
        ("Avg profit %", fmt_pct(t.avg_profit_pct)),
        ("Avg duration", fmt_duration(t.avg_duration_ms)),
        ("Avg duration winners", fmt_duration(t.avg_duration_winners_ms)),
        ("Avg duration losers", fmt_duration(t.avg_duration_losers_ms)),
        ("Max consecutive wins / losses", f"{t.max_consecutive_wins} / {t.max_consecutive_losses}"),
        ("Best trade", f"{t.best_trade_pair or '-'} {fmt_pct(t.best_trade_pct)}"),
        ("Worst trade", f"{t.worst_trade_pair or '-'} {fmt_pct(t.worst_trade_pct)}"),
        ("Best pair", f"{m.best_pair or '-'} {fmt_num(m.best_pair_profit_abs)}"),
        ("Worst pair", f"{m.worst_pair or '-'} {fmt_num(m.worst_pair_profit_abs)}"),
        ("Best day", fmt_num(m.best_day_abs)),
        ("Worst day", fmt_num(m.worst_day_abs)),
        ("Days win / draw / loss", f"{m.winning_days} / {m.flat_days} / {m.losing_days}"),
        ("Max drawdown %", fmt_pct(dd.max_drawdown_pct)),
        ("Max drawdown abs", fmt_num(dd.max_drawdown_abs)),
        ("Drawdown start / end", f"{fmt_ts(dd.start_ms)} / {fmt_ts(dd.end_ms)}"),
        ("Longest underwater", fmt_duration(dd.longest_underwater_ms)),
        ("Market change", fmt_pct(m.market_change_pct)),
        ("Fees paid", fmt_num(m.fees_paid)),
        ("Funding", "not modelled" if m.funding is None else fmt_num(m.funding)),
    ]


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """Return a rich table: the first column left-aligned, the others right."""
    out = Table(title=title)
    for i, header in enumerate(headers):
        out.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        out.add_row(*row)
    return out


def plain_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a table as plain text, aligned as ``table`` aligns it, without borders: for the
    long tables (a rich table of 96 months took longer to lay out than the metrics took)."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        right = (cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True))
        return "  ".join((first.ljust(widths[0]), *right)).rstrip()

    return "\n".join((title, line(headers), *(line(row) for row in rows)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRow:
    """The closed trades of one provider (or regime, or ladder), summed up."""

    name: str
    trades: int
    win_rate_pct: float
    avg_profit_pct: float
    total_profit_abs: float


def by_source(trades: Sequence[ClosedTrade], key: str) -> list[SourceRow]:
    """Return the trades summed up per value of ``key`` (``provider``, ``regime``,
    ``exit_profile``), most trades first."""
    groups: dict[str, list[ClosedTrade]] = {}
    for t in trades:
        groups.setdefault(getattr(t, key) or "-", []).append(t)
    rows = [
        SourceRow(
            name=name,
            trades=len(ts),
            win_rate_pct=100.0 * sum(t.pnl > 0 for t in ts) / len(ts),
            avg_profit_pct=100.0 * sum(t.pnl_pct for t in ts) / len(ts),
            total_profit_abs=float(sum(t.pnl for t in ts)),
        )
        for name, ts in groups.items()
    ]
    return sorted(rows, key=lambda r: (-r.trades, r.name))


def print_sources(trades: Sequence[ClosedTrade], console: Console) -> None:
    """Print which provider, regime and ladder the trades came from."""
    headers = ("Trades", "Win rate", "Avg profit %", "Total profit")
    for key, title in (
        ("provider", "Per provider"),
        ("regime", "Per regime at entry"),
        ("exit_profile", "Per exit profile"),
    ):
        rows = [
            (
                r.name,
                str(r.trades),
                fmt_pct(r.win_rate_pct),
                fmt_pct(r.avg_profit_pct),
                fmt_num(r.total_profit_abs),
            )
            for r in by_source(trades, key)
        ]
        console.print(table(title, (title.removeprefix("Per ").capitalize(), *headers), rows))


def print_report(metrics: BacktestMetrics, console: Console) -> None:
    """Print the summary, per-pair, per-exit-reason and monthly tables."""
    m = metrics
    console.print(table("Summary", ("Metric", "Value"), _summary_rows(m)))
    pair_rows = [
        (
            r.symbol,
            str(r.trades),
            fmt_pct(r.win_rate_pct),
            fmt_pct(r.avg_profit_pct),
            fmt_num(r.total_profit_abs),
            fmt_duration(r.avg_duration_ms),
        )
        for r in m.per_pair
    ]
    pair_headers = ("Pair", "Trades", "Win rate", "Avg profit %", "Total profit", "Avg duration")
    console.print(table("Per pair", pair_headers, pair_rows))
    reason_rows = [
        (r.reason, str(r.legs), fmt_num(r.pnl_abs), fmt_num(r.avg_pnl_abs), str(r.trades_closed))
        for r in m.exit_reasons
    ]
    reason_headers = ("Exit reason", "Legs", "Total pnl", "Avg pnl", "Trades closed")
    console.print(table("Per exit reason", reason_headers, reason_rows))
    month_rows = [
        (r.month, fmt_num(r.profit_abs), fmt_pct(r.profit_pct), str(r.trades)) for r in m.monthly
    ]
    month_headers = ("Month", "Profit", "Profit %", "Trades")
    console.out(plain_table("Monthly", month_headers, month_rows), highlight=False)


# -- files ---------------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON types: Decimals as strings, inf as "inf", NaN as None."""
    return jsonable(value, _json_number)


def _json_number(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        return ("inf" if number > 0 else "-inf") if math.isinf(number) else number
    if isinstance(value, np.integer):
        return int(value)
    return value


def _trade_row(t: ClosedTrade) -> dict[str, Any]:
    legs = "; ".join(f"{leg.reason} {leg.amount}@{leg.price} pnl={leg.pnl}" for leg in t.legs)
    values = (
        t.trade_id, t.symbol, t.side.value, t.market_type.value, t.leverage, t.opened_ms,
        fmt_ts(t.opened_ms), t.closed_ms, fmt_ts(t.closed_ms), t.duration_ms, t.amount,
        t.entry_price, t.exit_price, t.fees, t.funding, t.pnl, repr(t.pnl_pct), t.exit_reason,
        "" if t.liquidation_price is None else t.liquidation_price, len(t.legs), legs,
        t.provider, t.regime, t.exit_profile, *_why(t),
    )  # fmt: skip
    return dict(zip(_CSV_COLUMNS, values, strict=True))


def _why(t: ClosedTrade) -> tuple[str, str, str]:
    """Return the entry's explanation as the CSV's p_up, members and top_features (empty for
    a provider that gives none, the baseline; the regime has its own column)."""
    e = t.explanation
    if e is None:
        return "", "", ""
    return f"{e.p_up:.4f}", e.members_text(), e.features_text()


def _write_trades_csv(path: Path, trades: Sequence[ClosedTrade]) -> None:
    ordered = sorted(trades, key=lambda t: (t.closed_ms, t.opened_ms, t.trade_id))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=_CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(_trade_row(t) for t in ordered)


def _funding_assumption(
    m: BacktestMetrics, benchmarks: Sequence[BenchmarkSeries], funded: Sequence[str]
) -> str:
    """Say what funding the run settled: the JSON is read without the console output."""
    if m.funding is None:
        return "not modelled (no funding data: qt backtest --funding FILE)"
    traded = {b.symbol for b in benchmarks} | {r.symbol for r in m.per_pair}
    text = (
        f"modelled for {', '.join(sorted(funded)) or 'the given symbols'} from funding-rate "
        "files: at each funding time the open position pays or receives amount * mark * rate "
        f"(longs pay positive rates); net {fmt_num(m.funding)}"
    )
    unfunded = sorted(traded - set(funded)) if funded else []
    return text + (f"; not modelled for {', '.join(unfunded)} (no rates)" if unfunded else "")


def failures_summary(failures: Sequence[SymbolFailed]) -> str:
    """Return one line on the symbol cycles that raised ("" if none)."""
    if not failures:
        return ""
    by_symbol: dict[str, int] = {}
    for f in failures:
        by_symbol[f.symbol] = by_symbol.get(f.symbol, 0) + 1
    counts = ", ".join(f"{s} {n}x" for s, n in sorted(by_symbol.items()))
    first = failures[0]
    return (
        f"{len(failures)} symbol cycle(s) failed and paused those symbols' entries ({counts}); "
        f"first: {first.symbol} at {fmt_ts(first.candle_open_ms)}: {first.error} (see the log)"
    )


def denials_line(denials: Mapping[str, int]) -> str:
    """Return one line counting the orders our risk gate denied, by reason ("" if none)."""
    if not denials:
        return ""
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(denials.items()))
    return f"{sum(denials.values())} order(s) denied by the risk gate: {counts}"


def write_report(
    metrics: BacktestMetrics,
    trades: Sequence[ClosedTrade],
    equity: EquityCurve,
    out_dir: Path,
    *,
    run_name: str,
    benchmarks: Sequence[BenchmarkSeries] = (),
    charts: bool = True,
    funding_symbols: Sequence[str] = (),
    symbol_failures: Sequence[SymbolFailed] = (),
    universe: UniverseSummary | None = None,
    denials: Mapping[str, int] | None = None,
    learning: Mapping[str, Any] | None = None,
) -> ReportFiles:
    """Write ``backtest-<run_name>.json``, ``-trades.csv`` and (with ``charts``) three PNGs.

    The JSON holds every metric and every trade (Decimals as strings, undefined figures as null,
    infinities as "inf"). Existing files of the same run name are replaced, all of them or
    (when a write fails: ``OperationalError``) none.
    ``funding_symbols`` are the symbols funding rates were given for (``--funding``);
    ``symbol_failures`` the cycles that raised (each paused that symbol's entries);
    ``universe`` a dynamic universe's refreshes and changes; ``denials`` the orders the
    risk gate denied, by reason code (the pre-trade limits' among them); ``learning`` the
    walk-forward learning manager's decisions (``bot.walk_forward.learning_json``).
    """
    check_report_folder(out_dir, run_name)
    stem = f"backtest-{run_name}"
    files = ReportFiles(
        json_path=out_dir / f"{stem}.json",
        trades_csv_path=out_dir / f"{stem}-trades.csv",
        equity_png_path=out_dir / f"{stem}-equity.png",
        drawdown_png_path=out_dir / f"{stem}-drawdown.png",
        monthly_png_path=out_dir / f"{stem}-monthly.png",
    )
    payload = {
        "run_name": run_name,
        "assumptions": {
            "fills": "market orders at the next candle's open with slippage; resting limits at "
            "their price; stops at the worse of stop and open; a candle touching stop and "
            "take-profit fills the stop first; orders placed on a fill trade against the rest "
            "of that candle; perps are liquidated at their liquidation price (README: Fill "
            "model)",
            "funding": _funding_assumption(metrics, benchmarks, funding_symbols),
        },
        "start_utc": fmt_ts(metrics.start_ms),
        "end_utc": fmt_ts(metrics.end_ms),
        "metrics": to_jsonable(metrics),
        "trades": to_jsonable(list(trades)),
        "per_provider": to_jsonable(by_source(trades, "provider")),
        "per_regime": to_jsonable(by_source(trades, "regime")),
        "per_exit_profile": to_jsonable(by_source(trades, "exit_profile")),
        "denials": dict(sorted((denials or {}).items())),
        "symbol_failures": [
            {
                "symbol": f.symbol,
                "candle_utc": fmt_ts(f.candle_open_ms),
                "error": f.error,
                "strikes": f.strikes,
                "entries_paused_until_utc": fmt_ts(f.until_ms),
            }
            for f in symbol_failures
        ],
    }
    if universe is not None:
        from bot.report_universe import universe_json

        payload["universe"] = universe_json(universe)
    if learning is not None:
        payload["learning"] = dict(learning)
    # Compact: with an indent, json falls back from its C encoder to the Python one (3x slower).
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    # All or nothing (a full disk): never a 0-byte JSON, nor a new JSON beside an old CSV.
    with atomic_files("report") as batch:
        batch.temporary(files.json_path).write_text(text + "\n", encoding="utf-8")
        _write_trades_csv(batch.temporary(files.trades_csv_path), trades)
        if charts:
            from bot.report_charts import drawdown_chart, equity_chart, monthly_chart

            equity_chart(batch.temporary(files.equity_png_path), metrics, equity, benchmarks)
            drawdown_chart(batch.temporary(files.drawdown_png_path), equity)
            monthly_chart(batch.temporary(files.monthly_png_path), metrics)
    return files
