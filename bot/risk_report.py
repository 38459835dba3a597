"""The report of ``qt risk backtest``: a table per VaR level (a row per method) and its JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bot.atomic_files import atomic_files
from bot.report import fmt_num, table, to_jsonable
from core.brains.risk_models import LikelihoodTest, VarBacktest
from core.market.daily_returns import PortfolioReturns

HEADERS = (
    "method",
    "days",
    "exceptions",
    "expected",
    "rate %",
    "Kupiec LR",
    "p",
    "indep. LR",
    "p",
    "cond. cov. LR",
    "p",
    "Basel last 250",
    "Basel all",
    "mean ES on exc. %",
    "mean loss on exc. %",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskBacktest:
    """Every method and level rolled over one portfolio's daily returns."""

    portfolio: PortfolioReturns
    sources: dict[str, str]  # symbol -> where its candles came from
    resampled_from: dict[str, str]  # symbol -> intraday timeframe resampled to days
    window: int
    runs: Sequence[VarBacktest]
    elapsed_s: float  # the backtests' wall time
    load_s: float  # reading the candles and building the daily returns


def day_text(day_ms: int) -> str:
    """Return the UTC date of ``day_ms``."""
    return f"{datetime.fromtimestamp(day_ms / 1000, UTC):%Y-%m-%d}"


def p_text(p: float) -> str:
    """Return a p-value readably: three decimals, or its magnitude when below 0.001."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _pct(value: float | None) -> str:
    return "-" if value is None else fmt_num(100.0 * value)


def _row(bt: VarBacktest) -> list[str]:
    expected = bt.periods * (1.0 - bt.level)
    return [
        bt.method,
        str(bt.periods),
        str(bt.exceptions),
        fmt_num(expected, 1),
        fmt_num(100.0 * bt.exceptions / bt.periods),
        fmt_num(bt.kupiec.statistic),
        p_text(bt.kupiec.p_value),
        fmt_num(bt.independence.statistic),
        p_text(bt.independence.p_value),
        fmt_num(bt.coverage.statistic),
        p_text(bt.coverage.p_value),
        str(bt.zone),
        str(bt.zone_all),
        _pct(bt.mean_es_on_exceptions),
        _pct(bt.mean_loss_on_exceptions),
    ]


def print_risk_backtest(result: RiskBacktest, console: Console) -> None:
    """Print what was backtested and a table per level."""
    p = result.portfolio
    weights = ", ".join(f"{s} {w:+.3f}" for s, w in p.weights.items())
    console.print(
        f"portfolio {weights} (constant weights, rebalanced daily): {len(p.returns)} daily "
        f"returns, {day_text(int(p.day_ms[0]))} to {day_text(int(p.day_ms[-1]))}"
    )
    for symbol, timeframe in result.resampled_from.items():
        console.print(f"{symbol}: {timeframe} candles resampled to UTC daily closes")
    if p.spanning_gaps:
        console.print(
            f"note: {p.spanning_gaps} return(s) span missing days (no close for some symbol)",
            style="yellow",
        )
    first = int(p.day_ms[result.window])
    console.print(
        f"each day's VaR from the {result.window} daily returns before it; forecasts from "
        f"{day_text(first)}; an exception: the day lost more than its VaR"
    )
    for level in dict.fromkeys(bt.level for bt in result.runs):
        rows = [_row(bt) for bt in result.runs if bt.level == level]
        console.print(table(f"VaR {100 * level:g} % backtest", HEADERS, rows))
    console.print(
        "Kupiec: the number of exceptions; independence (Christoffersen): do they cluster; "
        "conditional coverage: both (p below 0.05 rejects the model). Basel zone of the last "
        "250 days, as regulators count, and over the whole run."
    )
    console.print(
        f"{len(result.runs)} backtests in {result.elapsed_s:.1f} s (wall time; the candles "
        f"loaded in {result.load_s:.1f} s)"
    )


def _test(t: LikelihoodTest) -> dict[str, Any]:
    return {"statistic": t.statistic, "p_value": t.p_value, "df": t.df}


def risk_backtest_json(result: RiskBacktest) -> dict[str, Any]:
    """Return the report as plain JSON types (every exception day listed)."""
    p = result.portfolio
    days = p.day_ms[result.window :]
    report: dict[str, Any] = to_jsonable(
        {
            "weights": p.weights,
            "sources": result.sources,
            "resampled_from": result.resampled_from,
            "first_day": day_text(int(p.day_ms[0])),
            "last_day": day_text(int(p.day_ms[-1])),
            "returns": len(p.returns),
            "spanning_gaps": p.spanning_gaps,
            "window": result.window,
            "elapsed_s": result.elapsed_s,
            "load_s": result.load_s,
            "backtests": [
                {
                    "method": bt.method,
                    "level": bt.level,
                    "days": bt.periods,
                    "exceptions": bt.exceptions,
                    "expected_exceptions": bt.periods * (1.0 - bt.level),
                    "kupiec": _test(bt.kupiec),
                    "independence": _test(bt.independence),
                    "conditional_coverage": _test(bt.coverage),
                    "basel_zone_last_250": str(bt.zone),
                    "basel_zone_all": str(bt.zone_all),
                    "mean_es_on_exceptions": bt.mean_es_on_exceptions,
                    "mean_loss_on_exceptions": bt.mean_loss_on_exceptions,
                    "exception_days": [day_text(int(d)) for d in days[bt.hits]],
                }
                for bt in result.runs
            ],
        }
    )
    return report


def write_risk_backtest_json(result: RiskBacktest, path: Path) -> None:
    """Write the JSON report to ``path`` whole or not at all."""
    with atomic_files("risk backtest") as batch:
        batch.temporary(path).write_text(
            json.dumps(risk_backtest_json(result), indent=2) + "\n", encoding="utf-8"
        )
