"""The demo's ensemble: trained at start on the replayed market's warm-up history, in worker
processes, while the baseline trades; then it trades.

One ``HandOverProvider`` sits in the engine's signal book from the start, serving the
baseline (ema_rsi). With a version of every member already saved in the demo's database (a
restart of a kept database, or tests) the ensemble of the newest ones trades at once; else
the members are fitted on the history before the replay (``bot.model_training``: the same
spawned pool and saving path as ``qt models train``), saved as model versions with their
files under ``<data_dir>/demo-models``, and handed over. Each change of provider is said
once on the console and in the audit trail (``SignalProviderChanged``); the first entry the
ensemble causes is logged with the wall time since the process started (the README figure).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bot.ensemble_loader import learning_members, newest_ensemble
from bot.model_training import new_pool, stop_pool, train_and_save, train_config
from bot.trading import exit_config_from
from core.clock import Clock
from core.config import Settings
from core.domain.events import EntryExplained, Event, SignalProviderChanged
from core.domain.market import CandleSeries
from core.errors import QTError
from core.ml.ensemble import EnsembleProvider
from core.ml.features import feature_set
from core.ml.training import TrainConfig
from core.ports import ModelVersionRepo
from core.services.bus import EventBus
from core.signals.handover import HandOverProvider

log = logging.getLogger(__name__)
DEMO_MODELS_DIR = "demo-models"  # under the data dir; emptied with the demo's database


class DemoEnsemble:
    """Train (or load) the demo's ensemble and hand the engine's signals over to it."""

    def __init__(
        self,
        settings: Settings,
        *,
        signals: HandOverProvider,
        history: Mapping[str, CandleSeries],
        repo: ModelVersionRepo,
        bus: EventBus,
        clock: Clock,
        invalidate: Callable[[], None],
        started_s: float,
    ) -> None:
        self._settings = settings
        self._signals = signals
        self._history = history
        self._repo = repo
        self._bus = bus
        self._clock = clock
        self._invalidate = invalidate  # the signal book's cached frames
        self._started_s = started_s  # time.monotonic() when the process started
        self._pool: ProcessPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self.first_entry_s: float | None = None  # wall seconds from start to its first entry
        self.ready = asyncio.Event()  # set once the ensemble trades
        self._started = False

    @property
    def settled(self) -> bool:
        """Return whether the first models are handed over, or will not be (trained,
        failed, or too little history): the learning manager takes it from there."""
        return self._started and (self._task is None or self._task.done())

    @property
    def data_dir(self) -> Path:
        """Return where the demo's model versions keep their files."""
        return self._settings.app.data_dir / DEMO_MODELS_DIR

    async def start(self) -> None:
        """Hand over to the saved ensemble, or start training it in the background."""
        await self._begin()
        self._started = True  # the learning manager may look from now on

    async def _begin(self) -> None:
        self._bus.subscribe(EntryExplained.topic, self._on_entry, name="demo.first_entry")
        saved = await newest_ensemble(self._settings, self._repo, self.data_dir)
        if saved is not None and {m.name for m in saved.members} >= set(self._members()):
            await self._hand_over(saved, "the newest saved versions: " + _ids(saved))
            return
        baseline = self._signals.name
        rows = min((len(s) for s in self._history.values()), default=0)
        needed = self._candles_needed()
        if rows < needed:  # said before any worker is spawned for a training bound to fail
            log.warning(
                "the demo's ensemble needs %d warm-up candles to train, has %d "
                "(QT__DEMO__HISTORY_CANDLES); %s trades",
                needed,
                rows,
                baseline,
            )
            await self._announce(baseline, "", "too little history to train the ensemble")
            return
        await self._announce(
            baseline,
            "",
            f"while the ensemble ({', '.join(self._members())}) trains on {rows} warm-up "
            "candles in worker processes",
        )
        self._pool = new_pool(len(self._members()), background=True)
        self._task = asyncio.create_task(self._train(self._pool), name="demo-ensemble-training")

    async def stop(self) -> None:
        """Stop training (a fit under way is not waited for: its worker is terminated)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._close_pool()

    async def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(stop_pool, pool)

    def _candles_needed(self) -> int:
        """Return the fewest candles ``prepare`` could train on: the features' warm-up, the
        minimum training rows and the label's horizon."""
        timeframe = next(iter(self._history.values())).timeframe if self._history else "1h"
        config = TrainConfig()
        return feature_set(None, timeframe).warmup_candles + config.min_train_rows + config.horizon

    def _members(self) -> list[str]:
        return list(learning_members(self._settings))

    async def _train(self, pool: ProcessPoolExecutor) -> None:
        # as qt models train and the walk-forward make them; one thread per worker (the pool
        # fills the cores)
        config = train_config(self._settings.models, threads=1)
        started = time.monotonic()
        try:
            trained = await train_and_save(
                list(self._history.values()),
                self._members(),
                repo=self._repo,
                data_dir=self.data_dir,
                config=config,
                exits=exit_config_from(self._settings.exits),
                progress=lambda step, what: log.debug("demo training: %s %s", step, what),
                pool=pool,
                now_ms=self._clock.now_ms,  # market time: the learning manager's schedule
            )
            provider = await newest_ensemble(self._settings, self._repo, self.data_dir)
        except Exception as exc:  # noqa: BLE001 - whatever broke, the baseline trades on
            # ours (too few candles, a refused feature) say why; another (a worker killed by
            # the OS: BrokenProcessPool) says what it is
            why = str(exc) if isinstance(exc, QTError) else f"{type(exc).__name__}: {exc}"
            log.warning("the demo's ensemble did not train (%s); %s trades on", why, self._name())
            return
        finally:  # trained or not, its workers (a few hundred MiB each) are not needed again
            await self._close_pool()
        for name, why in trained.failures:
            log.warning("demo training: %s failed: %s", name, why)
        if provider is None:
            log.warning("the demo's ensemble trained no member; %s trades on", self._name())
            return
        took = time.monotonic() - started
        await self._hand_over(
            provider,
            f"trained on {len(trained.data.y_train)} rows in {took:.1f} s: {_ids(provider)}",
        )

    def _name(self) -> str:
        return self._signals.name

    async def _hand_over(self, provider: EnsembleProvider, reason: str) -> None:
        previous = self._signals.name
        self._signals.hand_over(provider)
        self._invalidate()  # no frame of the baseline is served again
        self.ready.set()
        await self._announce(provider.name, previous, reason)

    async def _announce(self, provider: str, previous: str, reason: str) -> None:
        since = time.monotonic() - self._started_s
        log.info("%s trades from now on (%.1f s after start): %s", provider, since, reason)
        await self._bus.publish(
            SignalProviderChanged(
                ts_ms=self._clock.now_ms(), provider=provider, previous=previous, reason=reason
            )
        )

    async def _on_entry(self, event: Event) -> None:
        if not isinstance(event, EntryExplained) or self.first_entry_s is not None:
            return
        if event.explanation.provider != "ensemble":
            return
        self.first_entry_s = time.monotonic() - self._started_s
        log.info(
            "first ensemble entry (%s %s) %.1f s after the process started",
            event.symbol,
            event.side,
            self.first_entry_s,
        )


def _ids(provider: EnsembleProvider) -> str:
    return ", ".join(m.version_id for m in provider.members)
