"""PNG charts of a backtest: equity vs buy and hold, drawdown, monthly returns; of a
brains-off vs brains-on comparison: both equity curves; and of an evaluation: calibration.

Drawn with matplotlib's Agg canvas directly (no pyplot, no GUI, no global backend switch). Kept
apart from the report so matplotlib is imported only when charts are wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.analytics import (
    BacktestMetrics,
    BenchmarkSeries,
    EquityCurve,
    buy_and_hold_curve,
    underwater_fraction,
)
from core.domain.enums import Mode
from core.domain.events import ModeChanged
from core.ml.evaluation import ScoreCard


def _new_figure(title: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(11, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # explicit Agg: no GUI backend is ever touched
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def equity_chart(
    path: Path, m: BacktestMetrics, curve: EquityCurve, benchmarks: Sequence[BenchmarkSeries]
) -> None:
    """Draw the strategy's equity against equal-weight buy and hold."""
    fig, ax = _new_figure("Equity vs buy and hold")
    x = curve.ts_ms.astype("datetime64[ms]")
    ax.plot(x, curve.equity, label="strategy", linewidth=1.2)
    hold = buy_and_hold_curve(benchmarks, m.starting_balance)
    if hold is not None:
        ax.plot(x, hold, label="buy and hold (equal weight)", linewidth=1.0, alpha=0.8)
    ax.axhline(m.starting_balance, color="grey", linewidth=0.8, linestyle="--")
    ax.set_ylabel("equity (quote)")
    ax.legend(loc="upper left")
    fig.savefig(path, format="png")


# The defensive modes shaded behind the brains-on curve (the bolder two are left clear).
_MODE_SHADES = {Mode.PRESERVATION.value: "tab:orange", Mode.EMERGENCY.value: "tab:red"}


def compare_equity_chart(
    path: Path,
    *,
    off: EquityCurve,
    on: EquityCurve,
    start_mode: str,
    changes: Sequence[ModeChanged],
) -> None:
    """Draw the brains-off and brains-on equity curves, shading where the brains-on run was
    in PRESERVATION or EMERGENCY."""
    fig, ax = _new_figure("Equity, brains off vs on")
    ax.plot(off.ts_ms.astype("datetime64[ms]"), off.equity, label="brains off", linewidth=1.0)
    x = on.ts_ms.astype("datetime64[ms]")
    ax.plot(x, on.equity, label="brains on", linewidth=1.2)
    if start_mode and len(on.ts_ms):
        ordered = sorted(changes, key=lambda c: c.ts_ms)
        at = np.array([c.ts_ms for c in ordered], dtype=np.int64)
        modes = np.array([start_mode, *(c.current for c in ordered)])
        # The mode each sample was in: the last change at or before it, else the start mode.
        mode_at = modes[np.searchsorted(at, on.ts_ms, side="right")]
        for mode, color in _MODE_SHADES.items():
            inside = mode_at == mode
            if not inside.any():
                continue  # no legend entry for a mode never entered
            ax.fill_between(
                x,
                0,
                1,
                where=inside,
                transform=ax.get_xaxis_transform(),
                color=color,
                alpha=0.15,
                linewidth=0,
                label=mode,
                step="post",
            )
    ax.set_ylabel("equity (quote)")
    ax.legend(loc="upper left")
    fig.savefig(path, format="png")


def drawdown_chart(path: Path, curve: EquityCurve) -> None:
    """Draw the percentage under the running equity peak."""
    fig, ax = _new_figure("Drawdown (% under the running peak)")
    x = curve.ts_ms.astype("datetime64[ms]")
    under_pct = -underwater_fraction(curve.equity) * 100.0
    ax.fill_between(x, under_pct, 0.0, color="tab:red", alpha=0.4, linewidth=0)
    ax.plot(x, under_pct, color="tab:red", linewidth=0.8)
    ax.set_ylabel("%")
    fig.savefig(path, format="png")


def monthly_chart(path: Path, m: BacktestMetrics) -> None:
    """Draw monthly returns as green/red bars."""
    fig, ax = _new_figure("Monthly returns (%)")
    values = [r.profit_pct if r.profit_pct is not None else 0.0 for r in m.monthly]
    colors = ["tab:green" if v >= 0 else "tab:red" for v in values]
    positions = np.arange(len(values))
    ax.bar(positions, values, color=colors)
    step = max(1, len(values) // 24)  # keep labels readable on long backtests
    ax.set_xticks(positions[::step], [r.month for r in m.monthly][::step], rotation=45)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_ylabel("%")
    fig.savefig(path, format="png")


def calibration_chart(path: Path, cards: Sequence[ScoreCard]) -> None:
    """Draw each model's observed rate against its mean P per bin (the diagonal is perfect
    calibration), and below it how many rows fell in each bin."""
    fig = Figure(figsize=(11, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    top.set_title("Calibration, out of sample (walk-forward)")
    top.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--", label="perfect")
    width = 1.0 / (len(cards[0].calibration) if cards else 10) / (len(cards) + 1)
    for k, card in enumerate(cards):
        filled = [b for b in card.calibration if b.rows and b.mean_p is not None]
        x = [b.mean_p for b in filled]
        y = [b.observed for b in filled]
        err = [b.observed_2se for b in filled]
        top.errorbar(x, y, yerr=err, marker="o", capsize=3, linewidth=1.2, label=card.name)
        bottom.bar(
            [b.lo + (k + 0.5) * width for b in card.calibration],
            [b.rows for b in card.calibration],
            width=width,
            label=card.name,
        )
    top.set_ylabel("observed share of label 1")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left")
    bottom.set_xlabel("predicted P(up)")
    bottom.set_ylabel("rows")
    bottom.grid(True, alpha=0.3)
    fig.savefig(path, format="png")
