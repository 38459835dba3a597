"""Run one `qt backtest` in this process with a timer around each phase; write them as JSON.

Started by bench/backtest_throughput.py (never on its own): ``python bench/backtest_phases.py
OUT.json -- <qt arguments>``. The phases are read off the real command, not a copy of it: the
functions the CLI calls are wrapped where they are looked up (module globals), so the run is the
`qt backtest` a user starts, plus a few hundred wrapped calls. What the parent needs for the
interpreter's start and exit is written as monotonic times (system-wide on Linux):

* ``started``: this file's first line ran (the parent knows when it spawned the process);
* ``imported``: ``bot.cli`` and the modules every ``qt backtest`` imports (the CLI imports most
  of them inside the command: counted here, they are the imports phase, not the command's);
* ``load``, ``signals``, ``simulation``, ``metrics``, ``report``: summed seconds of each;
  ``setup`` is the rest of the backtest call (wiring, seeding, collecting the results);
* ``done``: the command returned; the parent's reap time minus this is the exit.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()

import functools  # noqa: E402  (after the clock: the imports are a phase)
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


class _Phases:
    """Seconds per phase; a phase entered inside itself (compute_many → compute) counts once."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._inside: set[str] = set()

    def _add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        """Replace ``owner.name`` (a function or an async function) by a timed one."""
        inner: Callable[..., Any] = getattr(owner, name)
        timer = self

        if _is_async(inner):

            @functools.wraps(inner)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                if phase in timer._inside:
                    return await inner(*args, **kwargs)
                timer._inside.add(phase)
                started = time.perf_counter()
                try:
                    return await inner(*args, **kwargs)
                finally:
                    timer._inside.discard(phase)
                    timer._add(phase, time.perf_counter() - started)

            setattr(owner, name, timed_async)
            return

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if phase in timer._inside:
                return inner(*args, **kwargs)
            timer._inside.add(phase)
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                timer._inside.discard(phase)
                timer._add(phase, time.perf_counter() - started)

        setattr(owner, name, timed)


def _is_async(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


# What every `qt backtest` imports inside the command (timed as imports, not as its phases).
_COMMAND_IMPORTS = (
    "core.config",
    "core.market.candle_cache",
    "core.market.importers",
    "bot.backtest_window",
    "bot.market_rules",
    "bot.report_regimes",
    "bot.report_universe",
)


def _instrument(phases: _Phases) -> None:
    import importlib

    import bot.backtest
    import bot.cli_backtest
    import bot.report
    import core.services.signal_book as signal_book
    from core.signals.ema_rsi import EmaRsiCross
    from core.signals.mean_reversion import MeanReversion

    for name in _COMMAND_IMPORTS:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:  # an older commit (the bench also measures those)
            pass
    phases.wrap(bot.cli_backtest, "load_run", "load")
    phases.wrap(bot.backtest, "run_backtest", "backtest")
    phases.wrap(bot.backtest, "_replay", "replay")
    for owner, name in (
        (signal_book, "detect_regimes"),
        (signal_book, "compute_many"),
        (EmaRsiCross, "compute"),
        (MeanReversion, "compute"),
    ):
        phases.wrap(owner, name, "signals")
    phases.wrap(bot.backtest, "equity_curve", "metrics")
    phases.wrap(bot.backtest, "compute_metrics", "metrics")
    for name in ("print_report", "print_sources", "write_report"):
        phases.wrap(bot.report, name, "report")
    phases.wrap(bot.cli_backtest, "print_run_notes", "report")


def main() -> None:
    out = Path(sys.argv[1])
    qt_args = sys.argv[sys.argv.index("--") + 1 :]
    import bot.cli

    phases = _Phases()
    _instrument(phases)
    imported = time.monotonic()
    status = 0
    try:
        bot.cli.app(qt_args, prog_name="qt")
    except SystemExit as e:  # typer ends every command this way
        status = e.code if isinstance(e.code, int) else 1
    done = time.monotonic()
    s = phases.seconds
    signals = s.get("signals", 0.0)
    record = {
        "started": STARTED,
        "imported": imported,
        "done": done,
        "status": status,
        "load": s.get("load", 0.0),
        "signals": signals,
        # Signals are computed lazily, inside the replay: the simulation is the replay without.
        "simulation": s.get("replay", 0.0) - signals,
        "setup": s.get("backtest", 0.0) - s.get("replay", 0.0) - s.get("metrics", 0.0),
        "metrics": s.get("metrics", 0.0),
        "report": s.get("report", 0.0),
    }
    out.write_text(json.dumps(record))
    sys.exit(status)


if __name__ == "__main__":
    main()
