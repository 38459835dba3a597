"""``qt backtest --compare-risk``: the same backtest with the brains off, then on.

Everything but ``QT__BRAINS__ENABLED`` is identical in the two runs: the loaded candles, the
window, the replay and a provider built the same way for each, so they trade the same
signals and differ only by what the Risk and CEO Brains did. The figures are the runs' own
metrics (``compute_metrics``); what is added here is read from the brains' events: the time in
each mode, the levels of the assessments and the actions taken.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from core.brains.risk import RiskLevel
from core.config import Settings
from core.domain.enums import Mode
from core.domain.events import (
    Event,
    ExposureReduced,
    ModeChanged,
    PolicyUpdated,
    RiskAssessed,
)

if TYPE_CHECKING:
    from bot.backtest import BacktestResult
    from bot.cli_backtest import Run
    from core.signals.base import SignalProvider

_E = TypeVar("_E", bound=Event)


def of_type(events: Sequence[Event], kind: type[_E]) -> list[_E]:
    """Return the events of one kind among a run's ``brain_events``, in order."""
    return [e for e in events if isinstance(e, kind)]


def start_mode(events: Sequence[Event]) -> str:
    """Return the mode of the policy the run started with ("" without one): the store
    announces its start-up version before the first candle."""
    first = next(iter(of_type(events, PolicyUpdated)), None)
    return "" if first is None else first.mode


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskComparison:
    """The two runs and the wall time each took."""

    off: BacktestResult
    on: BacktestResult
    off_s: float
    on_s: float


def with_brains(settings: Settings, enabled: bool) -> Settings:
    """Return ``settings`` with the brains turned on or off, nothing else changed."""
    brains = settings.brains.model_copy(update={"enabled": enabled})
    return settings.model_copy(update={"brains": brains})


async def run_comparison(
    run: Run,
    settings: Settings,
    provider_for: Callable[[Settings], Awaitable[SignalProvider | None]],
    *,
    start_ms: int | None,
    end_ms: int | None,
    full: bool,
) -> RiskComparison:
    """Backtest ``run`` with the brains off, then on; a fresh provider for each run (a
    meta-strategy's record of picks must not carry over from one run to the other)."""
    results: list[tuple[BacktestResult, float]] = []
    for enabled in (False, True):
        chosen = with_brains(settings, enabled)
        provider = await provider_for(chosen)
        started = time.perf_counter()
        result = await run.backtest(
            chosen, start_ms=start_ms, end_ms=end_ms, full=full, provider=provider
        )
        results.append((result, time.perf_counter() - started))
    (off, off_s), (on, on_s) = results
    return RiskComparison(off=off, on=on, off_s=off_s, on_s=on_s)


def time_in_modes(
    start_mode: str, changes: Sequence[ModeChanged], start_ms: int, end_ms: int
) -> dict[str, float]:
    """Return the percentage of ``[start_ms, end_ms]`` spent in each mode (every mode listed,
    boldest first; they sum to 100). The mode holds from one change to the next; a run
    without brains (no start mode) spent it all in none: an empty dict."""
    if not start_mode:
        return {}
    span = end_ms - start_ms
    held = dict.fromkeys((m.value for m in Mode), 0)
    mode, since = start_mode, start_ms
    for change in sorted(changes, key=lambda c: c.ts_ms):
        at = min(max(change.ts_ms, start_ms), end_ms)
        held[mode] = held.get(mode, 0) + at - since
        mode, since = change.current, at
    held[mode] = held.get(mode, 0) + end_ms - since
    if span <= 0:  # a run of one candle: it was in the mode it ended in
        return {m: 100.0 if m == mode else 0.0 for m in held}
    return {m: 100.0 * ms / span for m, ms in held.items()}


def level_counts(levels: Sequence[str]) -> dict[str, int]:
    """Return how many assessments had each level, LOW to CRITICAL (every level listed)."""
    counts = Counter(levels)
    return {level.value: counts.get(level.value, 0) for level in RiskLevel}


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskActions:
    """What the brains did in one run."""

    assessments: int
    with_measures: int  # assessments that asked for at least one action
    measures: dict[str, int]  # by kind (scale_size, tighten_stops, reduce_exposure, pause)
    exposure_cuts: int  # ExposureReduced: positions closed at market
    mode_changes: int
    policy_versions: int  # PolicyUpdated: versions the policy store wrote (the first at start)
    denials: dict[str, int]  # the risk gate's, by reason


def risk_actions(result: BacktestResult) -> RiskActions:
    """Return the brains' actions of ``result`` (read from its events)."""
    events = result.brain_events
    assessments = of_type(events, RiskAssessed)
    kinds = Counter(m.split(" ", 1)[0] for a in assessments for m in a.measures)
    return RiskActions(
        assessments=len(assessments),
        with_measures=sum(1 for a in assessments if a.measures),
        measures=dict(sorted(kinds.items())),
        exposure_cuts=len(of_type(events, ExposureReduced)),
        mode_changes=len(of_type(events, ModeChanged)),
        policy_versions=len(of_type(events, PolicyUpdated)),
        denials=dict(sorted(result.denials.items())),
    )


def modes_of(result: BacktestResult, *, brains: bool = True) -> dict[str, float]:
    """Return the % of ``result``'s run spent in each mode (empty for a run without brains:
    its policy kept the configured mode, and no brain chose it)."""
    if not brains:
        return {}
    m, events = result.metrics, result.brain_events
    return time_in_modes(start_mode(events), of_type(events, ModeChanged), m.start_ms, m.end_ms)


def levels_of(result: BacktestResult) -> dict[str, int]:
    """Return how many of ``result``'s assessments had each level."""
    return level_counts([a.level for a in of_type(result.brain_events, RiskAssessed)])


def drawdown_cut_pct(cmp: RiskComparison) -> float | None:
    """Return by how much the brains cut the max drawdown, in % of the brains-off one
    (negative: they deepened it; None: the brains-off run had none)."""
    off = cmp.off.metrics.drawdown.max_drawdown_pct
    on = cmp.on.metrics.drawdown.max_drawdown_pct
    if not off:
        return None
    return 100.0 * (off - on) / off
