"""The brains-off vs brains-on comparison on a console, in a JSON file and in a PNG."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bot.atomic_files import atomic_files
from bot.report import fmt_num, fmt_pct, table, to_jsonable
from bot.report_folder import check_report_folder
from bot.risk_compare import (
    RiskComparison,
    drawdown_cut_pct,
    levels_of,
    modes_of,
    of_type,
    risk_actions,
    start_mode,
)
from core.analytics import BacktestMetrics
from core.domain.events import ExposureReduced, ModeChanged
from core.domain.market import fmt_ts

Metric = Callable[[BacktestMetrics], float | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareFiles:
    """Paths of the files ``write_comparison`` wrote (``png_path`` None: --no-charts)."""

    json_path: Path
    png_path: Path | None


def compare_stem(run_name: str) -> str:
    """Return the comparison's file stem, beside the runs' own ``backtest-<name>-brains-*``."""
    return f"backtest-{run_name}-compare-risk"


def _change(off: float | None, on: float | None, digits: int = 2) -> str:
    if off is None or on is None:
        return "-"
    return f"{on - off:+,.{digits}f}"


def metric_rows(cmp: RiskComparison) -> list[tuple[str, str, str, str]]:
    """Return the side-by-side rows: metric, brains off, brains on, on minus off."""
    off, on = cmp.off.metrics, cmp.on.metrics

    def pct(name: str, get: Metric) -> tuple[str, str, str, str]:
        return name, fmt_pct(get(off)), fmt_pct(get(on)), _change(get(off), get(on))

    def num(name: str, get: Metric) -> tuple[str, str, str, str]:
        return name, fmt_num(get(off)), fmt_num(get(on)), _change(get(off), get(on))

    cut = drawdown_cut_pct(cmp)
    return [
        pct("Total profit %", lambda x: x.total_profit_pct),
        pct("CAGR %", lambda x: x.cagr_pct),
        pct("Max drawdown %", lambda x: x.drawdown.max_drawdown_pct),
        ("Max drawdown cut", "", "-" if cut is None else f"{cut:.1f}%", ""),
        num("Calmar", lambda x: x.calmar),
        num("Sharpe", lambda x: x.sharpe),
        num("Sortino", lambda x: x.sortino),
        (
            "Trades",
            str(off.trades.total),
            str(on.trades.total),
            f"{on.trades.total - off.trades.total:+d}",
        ),
        pct("Win rate", lambda x: x.trades.win_rate_pct),
        num("Final balance", lambda x: x.final_balance),
        ("Wall time (s)", f"{cmp.off_s:.1f}", f"{cmp.on_s:.1f}", f"{cmp.on_s - cmp.off_s:+.1f}"),
    ]


def _window(m: BacktestMetrics) -> str:
    return f"{fmt_ts(m.start_ms)} to {fmt_ts(m.end_ms)}"


def print_comparison(cmp: RiskComparison, console: Console) -> None:
    """Print the side-by-side table, then the brains' modes, levels and actions."""
    console.print(
        table(
            f"Brains off vs on ({_window(cmp.on.metrics)})",
            ("Metric", "Brains off", "Brains on", "Change"),
            metric_rows(cmp),
        )
    )
    modes = modes_of(cmp.on)
    console.print(
        table("Time in each mode (brains on)", ("Mode", "% of the run"), _pct_rows(modes))
    )
    levels = levels_of(cmp.on)
    total = sum(levels.values())
    console.print(
        table(
            "Risk levels of the assessments (brains on)",
            ("Level", "Assessments", "Share"),
            [
                (lvl, str(n), fmt_pct(100.0 * n / total if total else None))
                for lvl, n in levels.items()
            ],
        )
    )
    console.print(table("Risk actions", ("Action", "Brains off", "Brains on"), action_rows(cmp)))


def action_rows(cmp: RiskComparison) -> list[tuple[str, str, str]]:
    """Return the brains' actions of both runs (the brains-off run's are all 0 but the
    risk gate's denials and the policy version written at start)."""
    off, on = risk_actions(cmp.off), risk_actions(cmp.on)

    def row(name: str, a: int, b: int) -> tuple[str, str, str]:
        return name, str(a), str(b)

    return [
        row("Assessments", off.assessments, on.assessments),
        row("  asking for an action", off.with_measures, on.with_measures),
        *(row(f"    {k}", off.measures.get(k, 0), n) for k, n in on.measures.items()),
        row("Exposure cuts (closed at market)", off.exposure_cuts, on.exposure_cuts),
        row("Mode changes", off.mode_changes, on.mode_changes),
        row("Policy versions written", off.policy_versions, on.policy_versions),
        *(
            row(f"Denied: {reason}", off.denials.get(reason, 0), on.denials.get(reason, 0))
            for reason in sorted(set(off.denials) | set(on.denials))
        ),
    ]


def _pct_rows(values: dict[str, float]) -> list[tuple[str, str]]:
    return [(name, fmt_pct(v)) for name, v in values.items()]


def comparison_json(cmp: RiskComparison) -> dict[str, Any]:
    """Return the comparison as plain JSON types: both runs' metrics, the brains' record."""
    return {
        "window_utc": [fmt_ts(cmp.on.metrics.start_ms), fmt_ts(cmp.on.metrics.end_ms)],
        "brains_off": _side(cmp, on=False),
        "brains_on": _side(cmp, on=True),
        "max_drawdown_cut_pct": drawdown_cut_pct(cmp),
        "calmar_change": _delta(cmp.off.metrics.calmar, cmp.on.metrics.calmar),
        "time_in_mode_pct": modes_of(cmp.on),
        "risk_levels": levels_of(cmp.on),
        "mode_changes": [
            {"utc": fmt_ts(c.ts_ms), "from": c.previous, "to": c.current, "reasons": c.reasons}
            for c in of_type(cmp.on.brain_events, ModeChanged)
        ],
        "exposure_cuts": [
            {"utc": fmt_ts(e.ts_ms), "symbols": e.symbols, "reason": e.reason}
            for e in of_type(cmp.on.brain_events, ExposureReduced)
        ],
    }


def _delta(off: float | None, on: float | None) -> float | None:
    return None if off is None or on is None else on - off


def _side(cmp: RiskComparison, *, on: bool) -> dict[str, Any]:
    result, wall_s = (cmp.on, cmp.on_s) if on else (cmp.off, cmp.off_s)
    return {
        "wall_time_s": round(wall_s, 3),
        "metrics": to_jsonable(result.metrics),
        "risk_actions": asdict(risk_actions(result)),
    }


def write_comparison(
    cmp: RiskComparison, out_dir: Path, *, run_name: str, charts: bool
) -> CompareFiles:
    """Write ``backtest-<run_name>-compare-risk.json`` and (``charts``) ``.png``: both equity
    curves, the brains-on run's defensive modes shaded. All files or none."""
    check_report_folder(out_dir, run_name)
    stem = compare_stem(run_name)
    files = CompareFiles(
        json_path=out_dir / f"{stem}.json", png_path=out_dir / f"{stem}.png" if charts else None
    )
    text = json.dumps(to_jsonable(comparison_json(cmp)), indent=2, allow_nan=False)
    with atomic_files("comparison") as batch:
        batch.temporary(files.json_path).write_text(text + "\n", encoding="utf-8")
        if files.png_path is not None:
            from bot.report_charts import compare_equity_chart

            compare_equity_chart(
                batch.temporary(files.png_path),
                off=cmp.off.curve,
                on=cmp.on.curve,
                start_mode=start_mode(cmp.on.brain_events),
                changes=of_type(cmp.on.brain_events, ModeChanged),
            )
    return files
