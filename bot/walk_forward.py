"""The walk-forward of ``qt backtest --walk-forward`` and ``qt evaluate``: the learning
manager replayed on simulated time.

The ``learning`` job fires every ``QT__MODELS__RETRAIN_HOURS`` of market time (live: every
``QT__LEARNING__CHECK_EVERY_HOURS``; a check here reads the whole replayed history, so it runs
less often) and calls the very ``LearningManager.check`` of ``qt run``: it records the serving
members' and the shadows' predictions of the candles closed since the last check, judges the
shadows, looks for drift, and starts a training run when the due check says so
(``QT__LEARNING__*``: the schedule and enough new candles, drift, or a member with no champion
yet), each member on its own cadence (``QT__MODELS__CADENCE_HOURS``). The backtest waits for
the run (training takes no market time here): the candidates are fitted in worker processes
kept for the whole backtest (a torch member from its champion's weights), gated against their
champions on the same held-out rows, registered with their files (sha256-sealed, in a
temporary folder) in the backtest's own in-memory registry, shadowed, promoted or rolled back
as live; a promoted member serves the candles closing after the check. Each decision is kept
for the report (``decisions``, ``summary``).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bot.candidate_training import WorkerPool
from bot.ensemble_loader import ensemble_member, learning_members
from bot.learning import (
    cadences,
    feature_sample,
    resolved_labels,
    shadow_ensemble,
    train_in_workers,
)
from bot.trading import ensemble_config_from, exit_config_from
from core.clock import Clock
from core.config import Settings
from core.domain.events import (
    Event,
    LearningReported,
    ModelDrifted,
    ModelPromoted,
    ModelRetired,
    ModelRolledBack,
    ModelTrained,
    ModelTrainingFailed,
)
from core.domain.market import CandleSeries, timeframe_to_ms
from core.domain.model_versions import ModelVersion
from core.errors import QTError
from core.ml.ensemble import EnsembleProvider
from core.ml.labels import Labels, triple_barrier_labels
from core.ml.learning import worst_psi
from core.ml.members import MEMBERS
from core.ml.versions import LoadedVersion
from core.ml.walk_forward import closed_by, window_candles
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.learning import (
    FeatureShift,
    LearningManager,
    LearningSources,
    PredictionRows,
)
from core.services.open_trade import round_trips
from core.services.trade_history import closed_trades
from storage.memory import MemoryStorage


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One decision of the manager in a backtest, for the report."""

    ts_ms: int  # market time
    # what a training gave (first champion, passed the gate, rejected, failed), then what
    # the live record decided (promoted, retired in shadow, drifted, rolled back)
    kind: str
    member: str
    version_id: str
    reason: str


class WalkForward:
    """The learning manager of a backtest (see the module docstring)."""

    def __init__(
        self,
        provider: EnsembleProvider,
        settings: Settings,
        *,
        shuffle_seed: int | None = None,
    ) -> None:
        models = settings.models
        self.members = learning_members(settings)
        unknown = [m for m in self.members if m not in MEMBERS]
        if unknown or not self.members:
            raise QTError(
                f"QT__MODELS__MEMBERS: unknown {', '.join(unknown) or 'none given'}; "
                f"known: {', '.join(sorted(MEMBERS))}"
            )
        unknown_cadence = sorted(set(models.cadence_hours) - set(MEMBERS))
        if unknown_cadence:
            raise QTError(
                f"QT__MODELS__CADENCE_HOURS: unknown member {', '.join(unknown_cadence)}; "
                f"known: {', '.join(sorted(MEMBERS))}"
            )
        self.provider = provider
        self._settings = settings
        # a control: every fit on permuted labels (qt evaluate --shuffle-labels)
        self._shuffle_seed = shuffle_seed
        self._pool = WorkerPool(len(self.members))
        self._folder: Path | None = None
        self._manager: LearningManager | None = None
        self.checks = 0  # checks done (a failed one is not: qt evaluate refuses the run)
        self.decisions: list[Decision] = []

    @property
    def manager(self) -> LearningManager:
        """Return the manager (built by ``start``)."""
        if self._manager is None:
            raise RuntimeError("WalkForward used before start()")
        return self._manager

    async def start(
        self,
        *,
        window: Mapping[str, CandleSeries],
        clock: Clock,
        bus: EventBus,
        storage: MemoryStorage,
        engine: Engine,
    ) -> None:
        """Build the manager over the backtest's candles, clock, bus and in-memory registry
        (the artifacts in a temporary folder, removed by ``stop``; a start that fails
        leaves neither folder nor worker)."""
        try:
            self._folder = Path(tempfile.mkdtemp(prefix="qt-walk-forward-"))
            replay = _Replay(
                self._settings, self.provider, window, clock=clock, storage=storage, engine=engine
            )
            sources = LearningSources(
                members=self.members,
                versions=storage.model_versions,
                predictions=storage.predictions,
                data_dir=self._folder,
                train=partial(
                    train_in_workers,
                    self._settings,
                    pool=self._pool,
                    shuffle_seed=self._shuffle_seed,
                ),
                history=replay.history,
                served=replay.served,
                shadowed=replay.shadowed,
                outcomes=replay.outcomes,
                new_candles=replay.new_candles,
                serve=replay.serve,
                serving=self.provider.serving_versions,
                trades_since=replay.trades_since,
                horizon=replay.horizon,
                cadence_ms=cadences(self._settings),
                features=replay.features,
            )
            self._manager = LearningManager(sources, self._settings.learning, bus=bus, clock=clock)
            for topic in _DECISIONS:
                bus.subscribe(topic, self._decided, name="walk-forward decisions")
            await self._manager.start()
        except BaseException:
            await self.stop()
            raise

    async def check(self) -> str:
        """The ``learning`` job: one check, and the training run it starts waited for."""
        manager = self.manager
        said = await manager.check()
        if manager.training:
            report = await manager.wait()
            if report is not None and report.lines:
                said += " -> " + "; ".join(report.lines)
        self.checks += 1
        return said

    async def stop(self) -> None:
        """Stop the manager and the workers; remove the artifacts' folder."""
        if self._manager is not None:
            await self._manager.stop()
        await self._pool.discard()
        if self._folder is not None:
            await asyncio.to_thread(shutil.rmtree, self._folder, True)
            self._folder = None

    @property
    def trained(self) -> int:
        """Return how many candidates were trained and registered."""
        return sum(len(r.trained) for r in self.manager.reports) if self._manager else 0

    @property
    def runs(self) -> int:
        """Return how many training runs started."""
        return len(self.manager.reports) if self._manager else 0

    async def _decided(self, event: Event) -> None:
        decision = _decision(event)
        if decision is None:
            return
        if decision.kind == "first champion":  # its promotion came first: said once, so
            self.decisions = [
                d
                for d in self.decisions
                if not (d.kind == "promoted" and d.version_id == decision.version_id)
            ]
        self.decisions.append(decision)


_DECISIONS = tuple(
    e.topic
    for e in (
        LearningReported,
        ModelTrained,
        ModelTrainingFailed,
        ModelPromoted,
        ModelRetired,
        ModelRolledBack,
        ModelDrifted,
    )
)


def _decision(event: Event) -> Decision | None:
    if isinstance(event, LearningReported):  # a run that trained nothing says why
        why = next((line for line in event.lines if line.startswith("not trained: ")), None)
        if why is None:
            return None
        return Decision(
            ts_ms=event.ts_ms,
            kind="not trained",
            member="every member",
            version_id="",
            reason=why.removeprefix("not trained: "),
        )
    if isinstance(event, ModelTrained):
        kind = {"CHAMPION": "first champion", "SHADOW": "passed the gate"}.get(
            event.status, "rejected"
        )
        return Decision(
            ts_ms=event.ts_ms,
            kind=kind,
            member=event.member,
            version_id=event.version_id,
            reason=event.reason,
        )
    if isinstance(event, ModelTrainingFailed):
        return Decision(
            ts_ms=event.ts_ms,
            kind="failed",
            member=event.member,
            version_id="",
            reason=event.reason,
        )
    if isinstance(event, ModelPromoted):
        kind, reason = "promoted", event.reason
    elif isinstance(event, ModelRetired):
        kind, reason = "retired in shadow", event.reason
    elif isinstance(event, ModelRolledBack):
        kind, reason = "rolled back", f"{event.rolled_back} rolled back: {event.reason}"
    elif isinstance(event, ModelDrifted):
        kind, reason = "drifted", "; ".join(event.reasons)
    else:  # pragma: no cover - only the topics above are subscribed
        raise TypeError(f"not a learning decision: {event!r}")
    return Decision(
        ts_ms=event.ts_ms,
        kind=kind,
        member=event.member,
        version_id=event.version_id,
        reason=reason,
    )


class _Replay:
    """The manager's sources over a backtest's candles, as of the simulated clock: only
    candles closed by now are trained on, recorded, labelled or counted."""

    def __init__(
        self,
        settings: Settings,
        provider: EnsembleProvider,
        window: Mapping[str, CandleSeries],
        *,
        clock: Clock,
        storage: MemoryStorage,
        engine: Engine,
    ) -> None:
        self._provider = provider
        self._window = {s: ser for s, ser in window.items() if len(ser)}
        self._clock = clock
        self._storage = storage
        self._engine = engine
        self._settings = settings
        self._exits = exit_config_from(settings.exits)
        self._timeframe = settings.trading.timeframe
        self._tf_ms = timeframe_to_ms(self._timeframe)
        self._candles = window_candles(settings.models.window_days, self._timeframe)
        self._labels: dict[str, Labels] = {}  # per symbol, of its whole replayed history
        self._shadow: tuple[tuple[str, ...], EnsembleProvider] | None = None
        self.horizon = ensemble_config_from(settings).horizon
        self._live_rows = settings.learning.drift_psi_rows

    async def history(self) -> list[CandleSeries]:
        now = self._clock.now_ms()
        universe = self._engine.universe  # a dynamic one: its symbols now, as qt run trains
        symbols = universe.current if universe is not None and universe.started else None
        return [
            w
            for symbol, s in self._window.items()
            if (symbols is None or symbol in symbols) and len(w := closed_by(s, now, self._candles))
        ]

    def _closed(self, rows: PredictionRows) -> PredictionRows:
        # the provider computed every candle of the history: only those closed by now exist
        last_open = self._clock.now_ms() - self._tf_ms
        return [r for r in rows if r[3] <= last_open]

    async def served(self, since_ms: int) -> PredictionRows:
        return self._closed(self._provider.member_predictions(since_ms))

    async def shadowed(self, shadows: Sequence[LoadedVersion], since_ms: int) -> PredictionRows:
        ids = tuple(s.version.id for s in shadows)
        if self._shadow is None or self._shadow[0] != ids:
            provider = shadow_ensemble(self._settings, shadows)
            # the members are causal: one compute of the whole history serves every check
            provider.compute_many(list(self._window.values()))
            self._shadow = (ids, provider)
        return self._closed(self._shadow[1].member_predictions(since_ms))

    async def outcomes(self, since_ms: int) -> dict[tuple[str, int], int]:
        now = self._clock.now_ms()
        out: dict[tuple[str, int], int] = {}
        for symbol, series in self._window.items():
            labels = self._labels.get(symbol)
            if labels is None:  # the labels of the whole history; resolved ones used only
                labels = triple_barrier_labels(series, horizon=self.horizon, exits=self._exits)
                self._labels[symbol] = labels
            out.update(resolved_labels(symbol, labels, self._tf_ms, since_ms=since_ms, now_ms=now))
        return out

    async def features(self, champion: ModelVersion) -> FeatureShift | None:
        # the provider's features of the whole history (computed once per symbol), cut to
        # the champion's training rows and to the live ones closed by now
        fms = [self._provider.features_and_labels(s)[0] for s in self._window.values()]
        sample = feature_sample(
            fms,
            fms,
            champion,
            tf_ms=self._tf_ms,
            now_ms=self._clock.now_ms(),
            live_rows=self._live_rows,
        )
        return worst_psi(*sample)

    def new_candles(self, since_ms: int) -> dict[str, int]:
        last_open = self._clock.now_ms() - self._tf_ms
        return {
            symbol: int(
                np.searchsorted(s.ts_ms, last_open, side="right")
                - np.searchsorted(s.ts_ms, since_ms, side="left")
            )
            for symbol, s in self._window.items()
        }

    async def serve(self, loaded: Sequence[LoadedVersion]) -> bool:
        members = [ensemble_member(v) for v in loaded]
        # the job changes the signals: the backtest computes them again after it
        self._provider.serve_members(members, self._clock.now_ms())
        return True

    async def trades_since(self, since_ms: int) -> tuple[int, int, int]:
        trades = round_trips(
            await closed_trades(
                self._storage.trades, self._engine.closed_trades, since_ms=since_ms + 1
            )
        )
        return len(trades), sum(t.pnl > 0 for t in trades), sum(t.pnl < 0 for t in trades)


def walk_forward_ensemble(
    settings: Settings, *, shuffle_seed: int | None = None
) -> tuple[EnsembleProvider, WalkForward]:
    """Return an ensemble with no members yet and the learning manager that gives it its
    members (``shuffle_seed``: each fit on permuted labels, a control)."""
    provider = EnsembleProvider(
        [],
        ensemble_config_from(settings),
        exits=exit_config_from(settings.exits),
        timeframe=settings.trading.timeframe,
        walk_forward=True,
    )
    return provider, WalkForward(provider, settings, shuffle_seed=shuffle_seed)


def summary(trainer: WalkForward) -> str:
    """Return the manager's decisions in one line: counts, then the first reason of each."""
    line = (
        f"walk-forward (the learning manager): {trainer.checks} check(s), "
        f"{trainer.runs} training run(s), {trainer.trained} model(s) trained"
    )
    if not trainer.decisions:
        return line + "; no decision"
    counts = Counter(d.kind for d in trainer.decisions)
    line += "; " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    sets = trainer.provider.sets
    if sets:
        first, last = sets[0].active_from_ms, sets[-1].active_from_ms
        if first is not None and last is not None:
            line += f"; served from {_day(first)} UTC, the last change {_day(last)} UTC"
    return line


def decision_lines(trainer: WalkForward, *, most: int = 3) -> list[str]:
    """Return, per kind of decision, its count and its first ``most`` distinct reasons, each
    with when it first came (the report's lines on what the manager decided and why)."""
    by_kind: dict[str, dict[str, int]] = {}  # kind -> reason -> first time
    counts = Counter(d.kind for d in trainer.decisions)
    for d in trainer.decisions:
        by_kind.setdefault(d.kind, {}).setdefault(f"{d.member}: {d.reason}", d.ts_ms)
    lines = []
    for kind, reasons in sorted(by_kind.items()):
        shown = "; ".join(f"{_day(ts)} {why}" for why, ts in list(reasons.items())[:most])
        more = f" (+{len(reasons) - most} other reasons)" if len(reasons) > most else ""
        lines.append(f"{kind} {counts[kind]}: {shown}{more}")
    return lines


def learning_json(trainer: WalkForward) -> dict[str, Any]:
    """Return the manager's decisions for the JSON report: counts, then each one."""
    return {
        "checks": trainer.checks,
        "training_runs": trainer.runs,
        "models_trained": trainer.trained,
        "counts": dict(sorted(Counter(d.kind for d in trainer.decisions).items())),
        "decisions": [
            {
                "utc": _day(d.ts_ms),
                "kind": d.kind,
                "member": d.member,
                "version_id": d.version_id,
                "reason": d.reason,
            }
            for d in trainer.decisions
        ],
    }


def _day(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M}"
