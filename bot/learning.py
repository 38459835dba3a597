"""Wire the learning manager (``core.services.learning``) into a trading process.

Here live the process's answers to what the manager asks: the stored candles it trains on,
the worker processes it trains in (``bot.candidate_training``), the engine's serving members
and their predictions (read under the signal book's compute lock), the shadows' predictions
(their own ensemble over the same histories, in a thread), the live labels, and the hand-over
of a promoted member to the serving ensemble, or a first ensemble to a process trading its
baseline (``HandOverProvider``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bot.candidate_training import WorkerPool, train_candidates
from bot.ensemble_loader import ensemble_member, learning_members
from bot.holdout_backtest import backtest_candidates
from bot.model_training import needs_segments, train_config
from bot.sizer_training import train_sizer
from bot.sizing import no_champion, registry_source
from bot.trading import ensemble_config_from, exit_config_from
from core.clock import Clock
from core.config import Settings
from core.domain.events import SignalProviderChanged
from core.domain.market import CandleSeries, timeframe_to_ms
from core.domain.model_versions import ModelVersion
from core.market.stored import load_checked
from core.ml.ensemble import EnsembleProvider
from core.ml.feature_set import FeatureMatrix
from core.ml.features import compute_features, feature_set
from core.ml.labels import Labels, triple_barrier_labels
from core.ml.learning import worst_psi
from core.ml.training import CandidateRun, ChampionRef
from core.ml.versions import LoadedVersion
from core.ports import ModelVersionRepo, Storage
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.learning import (
    FeatureShift,
    LearningManager,
    LearningSources,
    PredictionRows,
)
from core.services.open_trade import round_trips
from core.services.sizer_learning import SizerLearning, SizerSources
from core.services.sizing_service import SizingService
from core.services.trade_history import closed_trades
from core.signals.handover import (
    HandOverProvider,
    member_predictions,
    serve_members,
    serving_versions,
)

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
MIN_PSI_ROWS = 100  # live rows (all symbols) before the features' PSI is looked at
FEATURE_EVERY_MS = 24 * HOUR_MS  # the live feature sample is computed again after this


class ProcessLearning:
    """The manager's sources in one process (see module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        storage: Storage,
        source: str,
        data_dir: Path,
        clock: Clock,
        bus: EventBus,
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._engine = engine
        self._storage = storage
        self._source = source
        self._data_dir = data_dir
        self._clock = clock
        self._config = ensemble_config_from(settings)
        self._exits = exit_config_from(settings.exits)
        self._timeframe = settings.trading.timeframe
        self._shadow: tuple[tuple[str, ...], EnsembleProvider] | None = None
        # (symbols, start, end) of a training window -> its stored candles' features
        self._trained_features: dict[tuple[tuple[str, ...], int, int], list[FeatureMatrix]] = {}
        # (when, the live histories' features): computed once a market day
        self._live_features: tuple[int, list[FeatureMatrix]] | None = None
        # (champion id, when it became champion) -> its worst feature shift against those
        # live features (a champion again after a rollback: its live rows start again)
        self._shifts: dict[tuple[str, int], FeatureShift | None] = {}

    def sources(self) -> LearningSources:
        """Return what the manager reads and drives."""
        return LearningSources(
            members=learning_members(self._settings),
            versions=self._storage.model_versions,
            predictions=self._storage.predictions,
            data_dir=self._data_dir,
            train=partial(train_in_workers, self._settings),
            history=self._history,
            served=self._served,
            shadowed=self._shadowed,
            outcomes=self._outcomes,
            new_candles=self._new_candles,
            serve=self._serve,
            serving=lambda: serving_versions(self._engine.signals.provider),
            trades_since=self._trades_since,
            horizon=self._config.horizon,
            cadence_ms=cadences(self._settings),
            features=self._feature_shift,
            sizer=sizer_lane(
                self._settings,
                versions=self._storage.model_versions,
                data_dir=self._data_dir,
                sizing=lambda: self._engine.sizing,
                bus=self._bus,
                clock=self._clock,
            ),
        )

    async def _history(self) -> list[CandleSeries]:
        now = self._clock.now_ms()
        days = self._settings.models.window_days  # the walk-forward's window: 0, all stored
        start = now - round(days * 86_400_000) if days else None
        out = []
        for symbol in self._symbols():
            checked = await load_checked(
                self._storage.candles,
                self._source,
                symbol,
                self._timeframe,
                now_ms=now,
                start_ms=start,
            )
            if len(checked.series):
                out.append(checked.series)
        return out

    def _symbols(self) -> tuple[str, ...]:
        universe = self._engine.universe
        if universe is not None and universe.started:
            return universe.current
        return tuple(self._settings.trading.symbols)

    async def _served(self, since_ms: int) -> PredictionRows:
        # read in a thread (after a restart: every row of every history), while no compute
        # runs on the provider's state
        async with self._engine.signals.quiet():
            return await asyncio.to_thread(
                member_predictions, self._engine.signals.provider, since_ms
            )

    async def _shadowed(self, shadows: Sequence[LoadedVersion], since_ms: int) -> PredictionRows:
        ids = tuple(s.version.id for s in shadows)
        if self._shadow is None or self._shadow[0] != ids:
            self._shadow = (ids, shadow_ensemble(self._settings, shadows))
        provider = self._shadow[1]
        histories = list(self._engine.signals.histories().values())

        def compute() -> PredictionRows:
            provider.compute_many(histories)
            return provider.member_predictions(since_ms)

        return await asyncio.to_thread(compute)

    async def _outcomes(self, since_ms: int) -> dict[tuple[str, int], int]:
        histories = self._engine.signals.histories()
        now = self._clock.now_ms()
        horizon, exits = self._config.horizon, self._exits

        def resolve() -> dict[tuple[str, int], int]:
            out: dict[tuple[str, int], int] = {}
            for symbol, series in histories.items():
                if len(series):
                    labels = triple_barrier_labels(series, horizon=horizon, exits=exits)
                    tf_ms = timeframe_to_ms(series.timeframe)
                    out.update(
                        resolved_labels(symbol, labels, tf_ms, since_ms=since_ms, now_ms=now)
                    )
            return out

        return await asyncio.to_thread(resolve)

    async def _feature_shift(self, champion: ModelVersion) -> FeatureShift | None:
        # the live features from the histories the engine trades on, once a market day for
        # every member (a distribution over weeks of rows: hourly would only cost the loop);
        # each champion's shift against them computed once too
        now = self._clock.now_ms()
        live = self._live_features
        if live is None or now - live[0] >= FEATURE_EVERY_MS:
            histories = list(self._engine.signals.histories().values())
            # in a worker thread, but the indicators hold the GIL: not at every hourly check
            fms = await asyncio.to_thread(
                lambda: [compute_features(h) for h in histories if len(h)]
            )
            live = self._live_features = (now, fms)
            self._shifts.clear()
        key = (champion.id, champion.status_ms or champion.created_ms)
        if key in self._shifts:
            return self._shifts[key]
        train = await self._trained(champion)
        when, fms = live
        tf_ms, rows = timeframe_to_ms(self._timeframe), self._settings.learning.drift_psi_rows

        def shift() -> FeatureShift | None:
            sample = feature_sample(train, fms, champion, tf_ms=tf_ms, now_ms=when, live_rows=rows)
            return worst_psi(*sample)

        self._shifts[key] = found = await asyncio.to_thread(shift)
        return found

    async def _trained(self, champion: ModelVersion) -> list[FeatureMatrix]:
        # the features of a training window's stored candles (they do not change), kept per
        # window: the members' champions often share one
        symbols = tuple(champion.symbols or self._symbols())
        window = (symbols, champion.train_start_ms, champion.train_end_ms)
        if window in self._trained_features:
            return self._trained_features[window]
        lead = self._provider_warmup_ms()
        stored = []
        for symbol in symbols:
            checked = await load_checked(
                self._storage.candles,
                self._source,
                symbol,
                self._timeframe,
                now_ms=champion.train_end_ms,
                start_ms=champion.train_start_ms - lead,
            )
            if len(checked.series):
                stored.append(checked.series)
        fms = await asyncio.to_thread(lambda: [compute_features(s) for s in stored])
        while len(self._trained_features) >= max(2, 2 * len(self._settings.models.members)):
            del self._trained_features[next(iter(self._trained_features))]  # the oldest
        self._trained_features[window] = fms
        return fms

    def _provider_warmup_ms(self) -> int:
        # the candles a feature looks back on before the first training row
        candles = int(feature_set(None, self._timeframe).warmup_candles)
        return candles * timeframe_to_ms(self._timeframe)

    def _new_candles(self, since_ms: int) -> dict[str, int]:
        histories = self._engine.signals.histories()
        return {s: int(np.count_nonzero(h.ts_ms >= since_ms)) for s, h in histories.items()}

    async def _serve(self, loaded: Sequence[LoadedVersion]) -> bool:
        members = [ensemble_member(v) for v in loaded]
        signals = self._engine.signals
        now = self._clock.now_ms()
        handed: tuple[str, str] | None = None
        async with signals.quiet():
            provider = signals.provider
            serving = serving_versions(provider)
            if all(serving.get(m.name) == m.version_id for m in members):
                return True  # served already (adopted from what the demo handed over)
            served = serve_members(provider, members, now)
            if not served and not serving and isinstance(provider, HandOverProvider):
                # the baseline trades (no champion at start): the first champions take over
                previous = provider.name
                provider.hand_over(
                    EnsembleProvider(
                        members, self._config, exits=self._exits, timeframe=self._timeframe
                    )
                )
                handed, served = (previous, provider.name), True
            if served:
                signals.invalidate()
        if handed is not None:
            await self._bus.publish(
                SignalProviderChanged(
                    ts_ms=now,
                    provider=handed[1],
                    previous=handed[0],
                    reason="the learning manager's first champions: "
                    + ", ".join(m.version_id for m in members),
                )
            )
        if not served:
            log.warning(
                "promoted %s, but this process trades no ensemble: restart with "
                "QT__STRATEGY__PROVIDER=ensemble to trade it",
                ", ".join(m.version_id for m in members),
            )
        return served

    async def _trades_since(self, since_ms: int) -> tuple[int, int, int]:
        # the table's (closed before a restart too), or the engine's memory
        trades = round_trips(
            await closed_trades(
                self._storage.trades, self._engine.closed_trades, since_ms=since_ms + 1
            )
        )
        return len(trades), sum(t.pnl > 0 for t in trades), sum(t.pnl < 0 for t in trades)


def resolved_labels(
    symbol: str, labels: Labels, tf_ms: int, *, since_ms: int, now_ms: int
) -> dict[tuple[str, int], int]:
    """Return ``labels`` (of ``tf_ms`` candles) of candles opened at or after ``since_ms``
    whose outcome is known by ``now_ms`` (the label's last candle closed), as (symbol, open
    ms) -> 1 (up) or 0."""
    first = int(np.searchsorted(labels.ts_ms, since_ms, side="left"))
    ts, y = labels.ts_ms[first:], labels.y[first:]
    known = labels.valid[first:] & (labels.end_ts_ms[first:] + tf_ms <= now_ms)
    return {(symbol, int(t)): int(v) for t, v in zip(ts[known], y[known], strict=True)}


def shadow_ensemble(settings: Settings, shadows: Sequence[LoadedVersion]) -> EnsembleProvider:
    """Return the shadows as an ensemble of their own: what predicts their live record."""
    return EnsembleProvider(
        [ensemble_member(s) for s in shadows],
        ensemble_config_from(settings),
        exits=exit_config_from(settings.exits),
        timeframe=settings.trading.timeframe,
    )


def feature_sample(
    train: Sequence[FeatureMatrix],
    live: Sequence[FeatureMatrix],
    version: ModelVersion,
    *,
    tf_ms: int,
    now_ms: int,
    live_rows: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Return, per feature column, ``version``'s training rows' values (decision candles in
    its training window) from ``train`` and the newest ``live_rows`` per symbol since its
    promotion, closed by ``now_ms``, from ``live``: what the drift check's PSI compares (a
    slow feature, a week's volatility, needs weeks of live rows to spread over its training
    range: fewer would call every quiet week drift)."""
    since = version.status_ms or version.created_ms
    before: dict[str, list[Any]] = {}
    after: dict[str, list[Any]] = {}
    for fm in train:
        trained = (fm.ts_ms >= version.train_start_ms) & (fm.ts_ms < version.train_end_ms)
        for j, column in enumerate(fm.columns):
            before.setdefault(column, []).append(fm.values[trained, j])
    for fm in live:
        rows = np.flatnonzero((fm.ts_ms >= since) & (fm.ts_ms + tf_ms <= now_ms))[-live_rows:]
        for j, column in enumerate(fm.columns):
            after.setdefault(column, []).append(fm.values[rows, j])
    live_values = {c: np.concatenate(v) for c, v in after.items()}
    if min((len(v) for v in live_values.values()), default=0) < MIN_PSI_ROWS:
        live_values = {}  # too short a live record to judge a distribution by
    return {c: np.concatenate(v) for c, v in before.items()}, live_values


def cadences(settings: Settings) -> dict[str, int]:
    """Return the market ms between two trainings of each member named in
    QT__MODELS__CADENCE_HOURS (the others are trained at every scheduled run)."""
    return {m: round(h * HOUR_MS) for m, h in settings.models.cadence_hours.items()}


async def train_in_workers(
    settings: Settings,
    series: Sequence[CandleSeries],
    members: Sequence[str],
    champions: Mapping[str, ChampionRef],
    *,
    pool: WorkerPool | None = None,
    shuffle_seed: int | None = None,
) -> CandidateRun:
    """Fit candidates of ``members`` in spawned worker processes (one thread each: the pool
    fills the cores; ``pool``: kept across runs, else one of the run's own), each scored with
    its champion and, with QT__LEARNING__BACKTEST_VALIDATION, backtested beside it on the
    held-out candles (``bot.holdout_backtest``); killed at QT__LEARNING__TIMEOUT_MINUTES. A
    torch member starts from its champion's weights (its ``warm_epochs``) unless
    QT__MODELS__WARM_START=false; the GBDTs refit from scratch. ``shuffle_seed``: every fit
    on permuted labels (a control)."""
    config = dataclasses.replace(
        train_config(settings.models, threads=1, horizon=ensemble_config_from(settings).horizon),
        shuffle_seed=shuffle_seed,
    )
    warm = {
        m: c.files
        for m, c in champions.items()
        if settings.models.warm_start and needs_segments([m])
    }
    timeout_s = settings.learning.timeout_minutes * 60.0
    deadline = asyncio.get_running_loop().time() + timeout_s  # the backtests' too
    workers = pool or WorkerPool(len(members), background=True)  # the process trades meanwhile
    try:
        run = await train_candidates(
            series,
            members,
            champions=champions,
            config=config,
            exits=exit_config_from(settings.exits),
            timeout_s=timeout_s,
            warm=warm,
            pool=workers,
        )
        if not settings.learning.backtest_validation or not run.fits:
            return run
        left = max(1.0, deadline - asyncio.get_running_loop().time())
        return await backtest_candidates(workers, settings, series, run, champions, timeout_s=left)
    finally:
        if pool is None:
            await workers.discard()


def build_learning(
    settings: Settings,
    *,
    engine: Engine,
    storage: Storage,
    bus: EventBus,
    clock: Clock,
    source: str,
    data_dir: Path,
) -> LearningManager:
    """Return the process's learning manager (started and stopped with the process)."""
    sources = ProcessLearning(
        settings,
        engine=engine,
        storage=storage,
        source=source,
        data_dir=data_dir,
        clock=clock,
        bus=bus,
    ).sources()
    return LearningManager(sources, settings.learning, bus=bus, clock=clock)


def offline_learning(
    settings: Settings,
    storage: Storage,
    *,
    clock: Clock,
    bus: EventBus,
    history: Callable[[], Awaitable[Sequence[CandleSeries]]],
) -> LearningManager:
    """Return a learning manager for ``qt models`` (no trading process: no live record, no
    ensemble to hand over to; the running process serves the registry's champions at its
    next check)."""

    async def no_rows(*_args: object) -> PredictionRows:
        return []

    async def no_outcomes(_since_ms: int) -> dict[tuple[str, int], int]:
        return {}

    async def not_served(_loaded: Sequence[LoadedVersion]) -> bool:
        return False

    sources = LearningSources(
        members=learning_members(settings),
        versions=storage.model_versions,
        predictions=storage.predictions,
        data_dir=settings.app.data_dir,
        train=partial(train_in_workers, settings),
        history=history,
        served=no_rows,
        shadowed=no_rows,
        outcomes=no_outcomes,
        new_candles=lambda _since: {},
        serve=not_served,
        serving=dict,
        horizon=ensemble_config_from(settings).horizon,
        cadence_ms=cadences(settings),
        # the registry's changes are what count: the running process serves them next check
        sizer=sizer_lane(
            settings,
            versions=storage.model_versions,
            data_dir=settings.app.data_dir,
            sizing=lambda: SizingService(bus=bus, clock=clock),
            bus=bus,
            clock=clock,
        ),
    )
    return LearningManager(sources, settings.learning, bus=bus, clock=clock)


def sizer_lane(
    settings: Settings,
    *,
    versions: ModelVersionRepo,
    data_dir: Path,
    sizing: Callable[[], SizingService],
    bus: EventBus,
    clock: Clock,
) -> SizerLearning | None:
    """Return the RL sizer's lane, driving the ``sizing`` service, when the registry's
    champion sizes (QT__SIZING__METHOD=rl without QT__SIZING__POLICY_DIR), else None."""
    s = settings.sizing
    if s.method != "rl" or s.policy_dir:
        return None
    service = sizing()
    sources = SizerSources(
        versions=versions,
        data_dir=data_dir,
        sizing=service,
        train=partial(train_sizer, settings, data_dir=data_dir, clock=clock),
        live=lambda policy, version: registry_source(policy, version, s, service.account),
        fallback=no_champion,
        cadence_ms=round(s.retrain_hours * HOUR_MS),
        shadow_trades=s.shadow_trades,
    )
    return SizerLearning(sources, bus=bus, clock=clock)
