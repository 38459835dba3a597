"""The walk-forward retrain of ``qt backtest --strategy ensemble --walk-forward``.

The ``model_retrain`` job calls ``WalkForward.retrain`` on simulated time: the rows are
prepared and the members that are due fitted in a process pool (spawned, one worker per
core, each member on one thread), so the event loop only waits. A member is due when its
own cadence (``QT__MODELS__CADENCE_HOURS``; the torch members' is longer) has passed since
its last fit; one not due, or whose fit failed, carries over into the new set with the
window it was trained on. A torch member refitted starts from its previous weights (its
``warm_epochs``) unless ``QT__MODELS__WARM_START=false``. The fitted members come back as
their files' bytes (their own formats, never a pickle), are rebuilt and added to the
provider as a new set active from now. Each retrain is recorded for the report and tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

from bot.model_training import (
    needs_segments,
    new_pool,
    prepare_in,
    stop_pool,
    train_config,
)
from bot.trading import ensemble_config_from, exit_config_from
from core.brains.exit_config import ExitConfig
from core.config import ModelsSettings, Settings
from core.domain.market import CandleSeries
from core.errors import QTError
from core.ml.ensemble import EnsembleMember, EnsembleProvider
from core.ml.health import healthy_on_validation
from core.ml.members import MEMBERS
from core.ml.training import FitResult, fit_member
from core.ml.walk_forward import TrainedSet, closed_by, window_candles


class WalkForward:
    """Retrain ``provider``'s members on the candles closed by each job run."""

    def __init__(
        self,
        provider: EnsembleProvider,
        models: ModelsSettings,
        *,
        exits: ExitConfig,
        timeframe: str,
        horizon: int = 24,
        shuffle_seed: int | None = None,
    ) -> None:
        self._provider = provider
        self._members = list(models.members)
        unknown = [m for m in self._members if m not in MEMBERS]
        if unknown or not self._members:
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
        # one thread per worker: the pool fills the cores
        self._config = dataclasses.replace(
            train_config(models, threads=1, horizon=horizon),
            with_segments=needs_segments(self._members),
            # a control: every retrain on permuted labels (qt evaluate --shuffle-labels)
            shuffle_seed=shuffle_seed,
        )
        self._cadence_ms = {m: models.cadence_ms(m) for m in self._members}
        self._warm_start = models.warm_start
        self._exits = exits
        self._window = window_candles(models.window_days, timeframe)
        self._pool: ProcessPoolExecutor | None = None
        # Per member, its newest fit: when, the member, its files (a warm start's weights).
        self._last: dict[str, tuple[int, EnsembleMember, dict[str, bytes]]] = {}
        self.trained: list[TrainedSet] = []
        self.skipped: list[tuple[int, str]] = []  # (time, why) of retrains that trained nothing
        self.idle: list[int] = []  # times of retrains with no member due (the set serves on)

    async def start(self) -> None:
        """Start the worker processes."""
        self._pool = new_pool(len(self._members))

    async def stop(self) -> None:
        """Stop the workers (a retrain mid-run is not waited for: they are terminated)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(stop_pool, pool)

    async def retrain(self, series: Mapping[str, CandleSeries], now_ms: int) -> str:
        """Train every member on the candles closed by ``now_ms``; serve later candles with
        those that fitted. Return the audit line ("not trained: ..." when too few rows)."""
        if self._pool is None:
            raise RuntimeError("WalkForward.retrain before start()")
        pool, loop = self._pool, asyncio.get_running_loop()
        due = self.due(now_ms)
        if not due:  # every member's cadence is longer than the job's: the set serves on
            self.idle.append(now_ms)
            return f"no member due: {', '.join(self._members)} serve on"
        windows = [w for s in series.values() if len(w := closed_by(s, now_ms, self._window))]
        try:
            data = await prepare_in(pool, windows, self._config, self._exits)
        except QTError as exc:  # too few candles yet: the previous set (or none) serves on
            self.skipped.append((now_ms, str(exc)))
            return f"not trained: {exc}"
        params = dict(self._config.params)
        fits = await asyncio.gather(
            *(
                loop.run_in_executor(pool, fit_member, m, data, params, self._warm_files(m))
                for m in due
            ),
            return_exceptions=True,
        )
        fitted, failures = [], []
        for name, fit in zip(due, fits, strict=True):
            if isinstance(fit, FitResult):
                member = await asyncio.to_thread(MEMBERS[name].from_files, fit.files)
                entry = EnsembleMember(
                    name=name,
                    member=member,
                    trained_until_ms=data.end_ms,
                    version_id=f"{name}@{now_ms}",
                    healthy_on_validation=healthy_on_validation(fit.metrics),
                )
                self._last[name] = (now_ms, entry, fit.files)
                fitted.append(entry)
            else:
                failures.append((name, f"{type(fit).__name__}: {fit}"))
        names = {m.name for m in fitted}
        # Not due, or failed: the member's last version serves on (a failed fit never
        # replaces the serving model), trained on its own, older window.
        carried = [self._last[m][1] for m in self._members if m not in names and m in self._last]
        if fitted:
            self._provider.add_set([*fitted, *carried], now_ms)
        self.trained.append(
            TrainedSet(
                active_from_ms=now_ms,
                train_start_ms=data.train_start_ms,
                train_end_ms=data.end_ms,
                members=tuple(m.name for m in fitted),
                failures=tuple(failures),
                carried=tuple(m.name for m in carried) if fitted else (),
            )
        )
        failed = "".join(f"; {name} failed: {why}" for name, why in failures)
        kept = f"; kept {', '.join(m.name for m in carried)}" if fitted and carried else ""
        return f"trained {', '.join(m.name for m in fitted) or 'nothing'} on " + (
            f"{len(data.y_train)} rows{kept}{failed}"
        )

    def due(self, now_ms: int) -> list[str]:
        """Return the members whose cadence has passed since their last fit (all at first)."""
        return [
            m
            for m in self._members
            if m not in self._last or now_ms - self._last[m][0] >= self._cadence_ms[m]
        ]

    def _warm_files(self, name: str) -> dict[str, bytes] | None:
        if not self._warm_start or name not in self._last:
            return None
        if not needs_segments([name]):
            return None  # the GBDTs refit from scratch: cheap, and no drift to carry
        return self._last[name][2]


def walk_forward_ensemble(
    settings: Settings, *, shuffle_seed: int | None = None
) -> tuple[EnsembleProvider, WalkForward]:
    """Return an ensemble with no members yet and the retrain that gives it its sets
    (``shuffle_seed``: each retrain on permuted labels, a control)."""
    exits = exit_config_from(settings.exits)
    timeframe = settings.trading.timeframe
    config = ensemble_config_from(settings)
    provider = EnsembleProvider([], config, exits=exits, timeframe=timeframe, walk_forward=True)
    trainer = WalkForward(
        provider,
        settings.models,
        exits=exits,
        timeframe=timeframe,
        horizon=config.horizon,
        shuffle_seed=shuffle_seed,
    )
    return provider, trainer


def summary(trainer: WalkForward) -> str:
    """Return one line saying how many models were trained, and when."""
    sets, skipped = trainer.trained, trainer.skipped
    models = sum(len(s.members) for s in sets)
    line = f"walk-forward: {models} model(s) trained in {len(sets)} retrain(s)"
    active = [s for s in sets if s.members]  # a retrain whose every fit failed added no set
    if active:
        first, last = _day(active[0].active_from_ms), _day(active[-1].active_from_ms)
        line += f", the first active from {first} UTC, the last from {last} UTC"
    if skipped:
        line += f"; {len(skipped)} trained nothing (at {_day(skipped[0][0])}: {skipped[0][1]})"
    failures = [f"{n} at {_day(s.active_from_ms)}: {why}" for s in sets for n, why in s.failures]
    if failures:
        line += "; failed: " + "; ".join(failures)
    return line


def _day(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M}"
