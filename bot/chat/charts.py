"""PNG charts for chat: the account's equity or drawdown, a symbol's closes.

Drawn with matplotlib's Agg canvas (no pyplot, no GUI), through ``draw``: in the charts' own
worker thread, as a chart takes a few hundred milliseconds the loop must not wait on.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np

# Their own thread: a burst of /chart requests queues here, never ahead of the signal computes
# in the loop's default executor.
_CHARTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="charts")


async def draw(fn: Callable[..., bytes], *args: object) -> bytes:
    """Return ``fn(*args)``'s PNG, drawn in the charts' own worker thread."""
    return await asyncio.get_running_loop().run_in_executor(_CHARTS, fn, *args)


def line_png(title: str, ts_ms: Sequence[int], values: Sequence[float], ylabel: str) -> bytes:
    """Return a PNG of one line over time (matplotlib imported here, in the worker thread:
    its first import takes about a second the event loop must not wait)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    when = np.array([datetime.fromtimestamp(t / 1000, tz=UTC) for t in ts_ms])
    ax.plot(when, np.asarray(values, dtype=np.float64), linewidth=1.2)
    ax.set_ylabel(ylabel)
    fig.autofmt_xdate()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def bars_png(
    title: str, labels: Sequence[str], bars: Sequence[tuple[str, Sequence[float]]]
) -> bytes:
    """Return a PNG of grouped bars: one group per label, one bar per named series (NaN:
    no bar)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    x = np.arange(len(labels), dtype=np.float64)
    width = 0.8 / max(1, len(bars))
    for i, (name, values) in enumerate(bars):
        ax.bar(x + i * width, np.asarray(values, dtype=np.float64), width, label=name)
    ax.set_xticks(x + width * (len(bars) - 1) / 2, list(labels))
    ax.legend()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def drawdown_of(equity: Sequence[float]) -> list[float]:
    """Return the drawdown from the running peak, in percent (0 at a new high)."""
    values = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, (values / peak - 1.0) * 100.0, 0.0)
    return [float(x) for x in dd]
