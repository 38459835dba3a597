"""The continuous learning manager: when to retrain, and what a trained model becomes.

One manager runs in ``qt run`` and ``qt demo`` (its ``learning`` job every
``QT__LEARNING__CHECK_EVERY_HOURS``) and behind ``qt models retrain`` and ``/retrain``. Each
check (``check``):

1. records the serving members' out-of-sample predictions (champion and shadow) of every
   new candle in ``model_predictions``, so a restart loses none and the live record can be
   audited (a restart recomputes the same rows: stored once);
2. judges each shadow on its live record against the champion on the same candles
   (``core.ml.learning.judge_shadow``): promoted, retired, or it waits;
3. looks for drift in each champion's live record (``drift_check``): an event, and an early
   retrain (or, with ``QT__LEARNING__ROLLBACK_ON_DRIFT``, a rollback);
4. asks the due check (``core.ml.learning.due_check``: the schedule and enough new data,
   drift, or a request) and, when due, starts a training run in the background.

A training run fits the members in worker processes (``train``, given by the composition
root: spawned, killed at ``QT__LEARNING__TIMEOUT_MINUTES``), each candidate scored with its
champion on the same held-out rows, both out of sample. The candidate is registered; it
becomes SHADOW when the gate (Diebold-Mariano on per-row log-loss, or a paired bootstrap)
says it beats the champion by the margin, else RETIRED with the statistic and p-value as the
reason; a member's first version becomes CHAMPION at once (nothing serves it otherwise). A
failure or a timeout leaves the champion serving, untouched. Promotion and rollback go
through ``ModelVersionRepo.promote`` (one champion per member) and hand the ensemble the
new member from the next candle on (``serve``), without a restart; a champion changed by
another process (``qt models promote``/``rollback``) is served at the next check too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.clock import Clock
from core.config import LearningSettings
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
from core.domain.market import CandleSeries
from core.domain.model_versions import (
    ROLLED_BACK,
    ModelStatus,
    ModelVersion,
    Prediction,
    earlier_champions,
)
from core.errors import ArtifactError, DataError, QTError
from core.ml.artifacts import TrainingInfo
from core.ml.learning import (
    DriftPolicy,
    Due,
    DueInputs,
    DuePolicy,
    ShadowVerdict,
    drift_check,
    due_check,
    gate,
    judge_shadow,
    log_losses,
    retention_plan,
)
from core.ml.members import MEMBERS
from core.ml.rl.sizer_versions import SIZER
from core.ml.training import CandidateFit, CandidateRun, ChampionRef, member_files
from core.ml.versions import LoadedVersion, load_version, save_version
from core.ports import ModelVersionRepo, PredictionRepo
from core.services.sizer_learning import SizerLearning
from core.values import value_class

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
FIRST_RETRY_MS = 6 * HOUR_MS  # a member without a champion is trained again after this

TrainFn = Callable[
    [Sequence[CandleSeries], Sequence[str], Mapping[str, ChampionRef]], Awaitable[CandidateRun]
]
# (version id, member, symbol, candle open ms, P(up)) of the serving members' rows
PredictionRows = list[tuple[str, str, str, int, float]]
# the feature whose live values moved furthest from its training values, and its PSI
FeatureShift = tuple[str, float]


@value_class(frozen=True, slots=True, kw_only=True)
class LearningSources:
    """What the manager reads and drives; the composition root builds it once."""

    members: tuple[str, ...]  # the ensemble's members (not disabled)
    versions: ModelVersionRepo
    predictions: PredictionRepo
    data_dir: Path  # the artifacts' root (models/<member>/<id>)
    train: TrainFn  # fits candidates in worker processes, killed at the timeout
    history: Callable[[], Awaitable[Sequence[CandleSeries]]]  # the candles trained on
    # the serving members' predictions after a time (read while no compute runs)
    served: Callable[[int], Awaitable[PredictionRows]]
    # the shadows' predictions of the live candles after a time, by the loaded versions
    shadowed: Callable[[Sequence[LoadedVersion], int], Awaitable[PredictionRows]]
    # the live candles' labels resolved by now, of candles opened at or after a time:
    # (symbol, candle open ms) -> 1 (up) or 0
    outcomes: Callable[[int], Awaitable[Mapping[tuple[str, int], int]]]
    new_candles: Callable[[int], Mapping[str, int]]  # per symbol, closed after a time
    # hands the ensemble loaded champions (False: no ensemble serves in this process)
    serve: Callable[[Sequence[LoadedVersion]], Awaitable[bool]]
    serving: Callable[[], Mapping[str, str]]  # member -> version id serving now
    trades_since: Callable[[int], Awaitable[tuple[int, int, int]]] | None = None  # n, won, lost
    horizon: int = 24  # the label's: the gate's HAC lag is horizon - 1
    # market ms between two trainings of a member (QT__MODELS__CADENCE_HOURS: the torch
    # members' is longer); a member not named is trained at every scheduled run
    cadence_ms: Mapping[str, int] = field(default_factory=dict)
    # a champion's worst feature shift (``worst_psi``: its training rows against the live
    # candles since its promotion, the newest ones), computed off the loop and cached by the
    # source (it changes slowly); None: no feature drift looked at
    features: Callable[[ModelVersion], Awaitable[FeatureShift | None]] | None = None
    # the RL sizer's lane (QT__SIZING__METHOD=rl without a policy folder): its own member
    # of the registry, driven from the same checks and commands; None: not learned here
    sizer: SizerLearning | None = None


@dataclass
class _Shadow:
    loaded: LoadedVersion
    started_ms: int


@dataclass
class RunReport:
    """What one training run did, line by line (the report pushed to chat)."""

    reason: str
    lines: list[str] = field(default_factory=list)
    trained: list[ModelVersion] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # (member, candidate log-loss, champion log-loss on the same rows or None)
    scores: list[tuple[str, float, float | None]] = field(default_factory=list)


class LearningManager:
    """See the module docstring."""

    def __init__(
        self,
        sources: LearningSources,
        settings: LearningSettings,
        *,
        bus: Any,
        clock: Clock,
    ) -> None:
        self._s = sources
        self._settings = settings
        self._bus = bus
        self._clock = clock
        self._due = DuePolicy(
            every_ms=round(settings.every_hours * HOUR_MS),
            min_new_candles=settings.min_new_candles,
            min_new_trades=settings.min_new_trades,
            need_trades=settings.need_trades,
        )
        self._drift_policy = DriftPolicy(
            window_rows=settings.drift_window_rows,
            min_rows=min(DriftPolicy().min_rows, settings.drift_window_rows),
            log_loss_excess=settings.drift_log_loss_excess,
            hit_rate_drop=settings.drift_hit_rate_drop,
            psi_limit=settings.drift_psi,
        )
        self._relaxed = dataclasses.replace(
            self._drift_policy,
            log_loss_excess=settings.drift_log_loss_excess / 2,
            hit_rate_drop=settings.drift_hit_rate_drop / 2,
            psi_limit=settings.drift_psi / 2,
        )
        self._shadows: dict[str, _Shadow] = {}
        # (version id, symbol) -> its newest candle recorded
        self._recorded: dict[tuple[str, str], int] = {}
        self._requested: tuple[str, tuple[str, ...]] | None = None  # (who, members)
        # member -> (its drifting champion, why, whether its live record fell short)
        self._drift: dict[str, tuple[str, str, bool]] = {}
        self._last_run_ms: int | None = None
        self._task: asyncio.Task[RunReport] | None = None
        self._stopped = False
        self._lock = asyncio.Lock()  # one registry change at a time
        self.reports: list[RunReport] = []  # this process's runs, newest last
        # True while another component hands the process its first models (the demo trains
        # them at start): the checks wait, so the two never hand over at once
        self.hold: Callable[[], bool] = lambda: False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt the registry (``_adopt_registry``): a member with versions but no champion
        gets its newest candidate; the shadows resume their live record (their predictions
        are stored). Held (``hold``): at the first check after."""
        if not self.hold():
            await self._adopt_registry()
        if self._s.sizer is not None:
            await self._s.sizer.sync()  # the registry's RL sizer sizes from the first entry

    async def stop(self) -> None:
        """Stop a training run under way (its workers are killed; a candidate not registered
        yet never is; one registered as the stop came stays a CANDIDATE, pruned in time);
        none starts after (a check or a /retrain while the process shuts down)."""
        self._stopped = True
        if self._s.sizer is not None:
            await self._s.sizer.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def training(self) -> bool:
        """Return whether a training run is under way."""
        return self._task is not None and not self._task.done()

    # --- the job ---------------------------------------------------------------------------

    async def check(self) -> str:
        """The ``learning`` job: record, judge the shadows, look for drift, start a training
        run when due; return one line for the audit trail ("" when nothing happened)."""
        if self.hold() or self._stopped:
            return ""  # another component hands the first models over (the demo's start)
        said = []
        await self._adopt_registry()
        stored = await self.record()
        if stored:
            said.append(f"{stored} prediction(s) recorded")
        # the live labels, once for the whole check, from the oldest record it judges on
        outcomes = await self._s.outcomes(await self._judged_since())
        said.extend(await self.judge_shadows(outcomes))
        said.extend(await self.look_for_drift(outcomes))
        started = await self._maybe_start()
        if started:
            said.append(started)
        if self._s.sizer is not None:
            sized = await self._s.sizer.check()
            if sized:
                said.append(sized)
        return "; ".join(said)

    def request(self, who: str, members: Sequence[str] = ()) -> str:
        """Ask for a training run now (``/retrain``, ``qt models retrain``); return what
        happens."""
        self._known(members)
        if SIZER in members:
            said = self._sizer().request(who)
            members = [m for m in members if m != SIZER]
            if not members:
                return said
            return f"{said}; {self.request(who, members)}"
        if self._stopped:
            return "the process is stopping: no training run starts now"
        if self.hold():
            return "the first models are still being trained (the demo's start): ask again later"
        if self.training:
            return "a training run is under way already; its report follows when it ends"
        self._requested = (who, tuple(members))
        self._start_run()
        names = ", ".join(members or self._s.members)
        return f"training {names} in worker processes; the report follows when it ends"

    def _sizer(self) -> SizerLearning:
        if self._s.sizer is None:
            raise DataError(
                f"{SIZER} is not learned here: set QT__SIZING__METHOD=rl without "
                "QT__SIZING__POLICY_DIR to have the registry's RL sizer size entries"
            )
        return self._s.sizer

    def _known(self, members: Sequence[str]) -> None:
        known = (*self._s.members, *((SIZER,) if self._s.sizer is not None else ()))
        unknown = [m for m in members if m not in known]
        if unknown:
            hint = (
                f" ({SIZER} is learned only with QT__SIZING__METHOD=rl and no "
                "QT__SIZING__POLICY_DIR)"
                if unknown[0] == SIZER
                else ""
            )
            raise DataError(
                f"unknown member {unknown[0]!r}; the registry's: {', '.join(known)}{hint}"
            )

    async def _judged_since(self) -> int:
        """Return the oldest candle a shadow's or a champion's live record starts at (the
        shadows' since they began, the champions' since their promotion)."""
        starts = [s.started_ms for s in self._shadows.values()]
        for member in self._s.members:
            champion = await self._s.versions.newest(member, ModelStatus.CHAMPION)
            if champion is not None:
                starts.append(champion.status_ms or champion.created_ms)
        return min(starts, default=self._clock.now_ms())

    async def _maybe_start(self) -> str:
        if self.training:
            return ""
        missing = await self._without_champion()
        due = await self._due_now()
        if self.training or self._stopped:  # a /retrain came meanwhile
            return ""
        if due.due:
            members = await self._cadence_due()
            if not members:
                return f"{due.reason}; no member's cadence has passed: the champions serve on"
            self._start_run(due.reason, members)
            return f"training started: {due.reason}" + (
                f" ({', '.join(members)})" if len(members) < len(self._s.members) else ""
            )
        if missing:
            why = f"no champion yet: {', '.join(missing)}"
            self._start_run(why, missing)
            return f"training started: {why}"
        return ""

    async def _without_champion(self) -> list[str]:
        """Return the members with no champion, when their first training is due: at once,
        and again FIRST_RETRY_MS after a run that left them without one (too few candles yet,
        a failure), not at every check."""
        now = self._clock.now_ms()
        if self._last_run_ms is not None and now - self._last_run_ms < FIRST_RETRY_MS:
            return []
        return [
            m
            for m in self._s.members
            if await self._s.versions.newest(m, ModelStatus.CHAMPION) is None
            and await self._s.versions.newest(m, ModelStatus.SHADOW) is None
        ]

    async def _cadence_due(self) -> list[str]:
        """Return the members a scheduled run trains: those with no champion (never trained,
        or their first version rejected), those whose own cadence (``cadence_ms``) has passed
        since their newest version, and those drifting."""
        now = self._clock.now_ms()
        out = []
        for member in self._s.members:
            newest = await self._s.versions.newest(member)
            every = self._s.cadence_ms.get(member, 0)
            if (
                newest is None
                or member in self._drift
                or now - _trained_at(newest, now) >= every
                or await self._s.versions.newest(member, ModelStatus.CHAMPION) is None
            ):
                out.append(member)
        return out

    async def _due_now(self) -> Due:
        now = self._clock.now_ms()
        ends = [
            v.train_end_ms
            for m in self._s.members
            if (v := await self._s.versions.newest(m, ModelStatus.CHAMPION)) is not None
        ]
        since = min(ends) if ends else -1
        created = [
            _trained_at(v, now)
            for v in await self._s.versions.list_versions()
            if v.member in self._s.members  # the RL sizer keeps its own cadence
        ]
        last = max([*created, *([self._last_run_ms] if self._last_run_ms else [])], default=None)
        if last is not None:
            last = min(last, now)  # a clock stepped back: as if trained just now
        trades = (0, 0, 0)
        if self._s.trades_since is not None and last is not None:
            trades = await self._s.trades_since(last)
        return due_check(
            self._due,
            DueInputs(
                now_ms=now,
                last_trained_ms=last,
                new_candles=dict(self._s.new_candles(since)),
                new_trades=trades[0],
                new_wins=trades[1],
                new_losses=trades[2],
                drift="; ".join(f"{m}: {why}" for m, (_vid, why, _rec) in self._drift.items()),
            ),
        )

    def _start_run(self, reason: str | None = None, only: Sequence[str] = ()) -> None:
        if self.training or self._stopped:  # one run at a time; none after stop
            return
        who, members = self._requested or ("", tuple(only))
        self._requested = None
        why = reason or f"requested by {who}"
        self._task = asyncio.create_task(
            self.run(why, members or self._s.members), name="learning-run"
        )

    async def wait(self) -> RunReport | None:
        """Wait for the training run under way (None: none was started)."""
        if self._task is None:
            return None
        return await self._task

    # --- a training run --------------------------------------------------------------------

    async def run(self, reason: str, members: Sequence[str]) -> RunReport:
        """Train ``members``, gate and register each candidate, report; never raises for a
        failed training (the champion serves on), only for a cancellation."""
        report = RunReport(reason=reason)
        started = time.monotonic()  # wall seconds: the demo's market clock runs faster
        try:
            await self._run(report, members)
        except asyncio.CancelledError:
            raise
        except QTError as exc:
            report.lines.append(f"not trained: {exc}")
        except Exception as exc:
            log.exception("the learning run failed")
            report.lines.append(f"not trained: {type(exc).__name__}: {exc}")
        finally:
            self._last_run_ms = self._clock.now_ms()
        for member, why in report.failed.items():
            await self._publish(
                ModelTrainingFailed(ts_ms=self._clock.now_ms(), member=member, reason=why)
            )
        took = time.monotonic() - started
        title = f"training run ({reason}): {len(report.trained)} trained in {took:.0f} s"
        self.reports.append(report)
        await self._publish(
            LearningReported(
                ts_ms=self._clock.now_ms(),
                title=title,
                lines=tuple(report.lines),
                scores=tuple(report.scores),
            )
        )
        return report

    async def _run(self, report: RunReport, members: Sequence[str]) -> None:
        series = await self._s.history()
        champions: dict[str, ChampionRef] = {}
        serving: dict[str, ModelVersion] = {}
        for member in members:
            champion = await self._s.versions.newest(member, ModelStatus.CHAMPION)
            if champion is None:
                continue
            serving[member] = champion  # unreadable too: a candidate does not replace it ungated
            try:
                loaded = await asyncio.to_thread(load_version, self._s.data_dir, champion)
            except ArtifactError as exc:
                report.lines.append(f"{member}: champion {champion.id} unreadable ({exc})")
                continue
            files = await asyncio.to_thread(member_files, loaded.artifact.member)
            champions[member] = ChampionRef(files=files, trained_until_ms=champion.train_end_ms)
        run = await self._s.train(series, members, champions)
        for symbol, why in run.left_out.items():
            report.lines.append(f"{symbol}: left out of this training ({why})")
        # in the members' order, not the workers' finishing order: a replay decides alike
        for member in (m for m in members if m in run.failures):
            why = run.failures[member]
            report.failed[member] = why
            report.lines.append(f"{member}: failed ({why}); the champion serves on")
        for member in (m for m in members if m in run.fits):
            await self._register(report, run, run.fits[member], serving.get(member))

    async def _register(
        self, report: RunReport, run: CandidateRun, fit: CandidateFit, champion: ModelVersion | None
    ) -> None:
        name = fit.fit.member
        member = await asyncio.to_thread(MEMBERS[name].from_files, fit.fit.files)
        info = TrainingInfo(
            train_start_ms=run.data.train_start_ms,
            train_end_ms=run.data.end_ms,
            label=run.data.label,
            # its holdout backtest beside its validation scores (holdout_return_pct, ...)
            metrics={
                **fit.fit.metrics,
                **{f"holdout_{k}": v for k, v in (fit.backtest or {}).items()},
            },
        )
        now = self._clock.now_ms()
        version = await save_version(
            self._s.versions,
            self._s.data_dir,
            member,
            info,
            created_ms=now,
            symbols=run.data.symbols,
        )
        report.trained.append(version)
        ll = fit.fit.metrics.get("log_loss", float("nan"))
        if champion is None or fit.champion_p is None:
            report.scores.append((name, ll, None))
            why = (
                f"first version of {name}: no champion to beat"
                if champion is None
                else f"no comparable champion ({fit.note or 'another feature set'})"
            )
            if not fit.fit.metrics.get("healthy", 1.0):
                await self._s.versions.set_status(
                    version.id,
                    ModelStatus.RETIRED,
                    reason=f"rejected: near-constant output; {why}",
                    ts_ms=now,
                )
                report.lines.append(f"{name}: {version.id} rejected (near-constant output)")
                await self._trained(version, "RETIRED", "near-constant output", ll)
                return
            if champion is None:
                came = await self._s.versions.newest(name, ModelStatus.CHAMPION)
                if came is not None:  # adopted or promoted during the run: not replaced ungated
                    why = f"not gated: {came.id} became the champion during the run"
                    await self._s.versions.set_status(
                        version.id, ModelStatus.RETIRED, reason=why, ts_ms=now
                    )
                    report.lines.append(f"{name}: {version.id} {why}")
                    await self._trained(version, "RETIRED", why, ll)
                    return
                await self._promote(version, why)
                report.lines.append(
                    f"{name}: {version.id} champion ({why}), log-loss {ll:.4f}{holdout_line(fit)}"
                )
                await self._trained(version, "CHAMPION", why, ll)
                return
            await self._to_shadow(version, why)
            report.lines.append(f"{name}: {version.id} in shadow ({why}){holdout_line(fit)}")
            await self._trained(version, "SHADOW", why, ll)
            return
        serving = await self._s.versions.newest(name, ModelStatus.CHAMPION)
        if serving is None or serving.id != champion.id:
            # rolled back or promoted meanwhile: the rows were scored against another model
            # than the one the candidate would replace; the next run gates it fairly
            why = (
                f"not gated: the champion changed during the run ({champion.id} -> "
                f"{serving.id if serving else 'none'})"
            )
            await self._s.versions.set_status(
                version.id, ModelStatus.RETIRED, reason=why, ts_ms=now
            )
            report.lines.append(f"{name}: {version.id} {why}")
            await self._trained(version, "RETIRED", why, ll)
            return
        both = np.isfinite(fit.champion_p)
        cand = log_losses(fit.p[both], fit.y[both])
        champ = log_losses(fit.champion_p[both], fit.y[both])
        result = gate(
            cand,
            champ,
            margin=self._settings.gate_margin,
            alpha=self._settings.gate_alpha,
            lag=max(0, self._s.horizon - 1),
            min_rows=self._settings.gate_min_rows,
            test=self._settings.gate_test,
        )
        champ_ll = float(champ.mean()) if len(champ) else None
        cand_ll = float(cand.mean()) if len(cand) else ll
        report.scores.append((name, cand_ll, champ_ll))
        line = (
            f"{name}: {version.id} log-loss {cand_ll:.4f} vs champion {champion.id} "
            f"{champ_ll if champ_ll is None else round(champ_ll, 4)} on {result.rows} rows; "
            f"{result.test} statistic {result.statistic:.2f}, p {result.p_value:.3g}"
            f"{holdout_line(fit)}"
        )
        passed, reason = result.passed, result.reason
        worse = self._backtest_worse(fit)
        if passed and worse:
            passed, reason = False, f"{reason}, but {worse}"
        if passed:
            await self._to_shadow(version, f"gate passed: {reason}")
            report.lines.append(f"{line}: passed, in shadow")
            status = "SHADOW"
        else:
            await self._s.versions.set_status(
                version.id, ModelStatus.RETIRED, reason=f"rejected: {reason}", ts_ms=now
            )
            report.lines.append(f"{line}: rejected ({reason})")
            status = "RETIRED"
        await self._publish(
            ModelTrained(
                ts_ms=now,
                member=name,
                version_id=version.id,
                status=status,
                reason=reason,
                log_loss=cand_ll,
                champion_id=champion.id,
                champion_log_loss=champ_ll,
                statistic=result.statistic,
                p_value=result.p_value,
            )
        )

    def _backtest_worse(self, fit: CandidateFit) -> str:
        """Return why the candidate's holdout backtest rules it out ("" when it does not: not
        backtested, no comparable champion, or within the margin of the champion's)."""
        mine, theirs = fit.backtest, fit.champion_backtest
        if mine is None or theirs is None:
            return ""
        margin = self._settings.backtest_margin_pct
        if mine["return_pct"] >= theirs["return_pct"] - margin:
            return ""
        return (
            f"its holdout backtest returned {mine['return_pct']:+.2f} % against the champion's "
            f"{theirs['return_pct']:+.2f} % (more than {margin:g} points less)"
        )

    async def _trained(self, version: ModelVersion, status: str, reason: str, ll: float) -> None:
        await self._publish(
            ModelTrained(
                ts_ms=self._clock.now_ms(),
                member=version.member,
                version_id=version.id,
                status=status,
                reason=reason,
                log_loss=ll,
            )
        )

    async def _to_shadow(self, version: ModelVersion, reason: str) -> None:
        now = self._clock.now_ms()
        # the newer candidate shadows instead (the registry's: another process's too)
        old = await self._s.versions.newest(version.member, ModelStatus.SHADOW)
        if old is not None and old.id != version.id:
            await self._s.versions.set_status(
                old.id, ModelStatus.RETIRED, reason=f"replaced in shadow by {version.id}", ts_ms=now
            )
        shadowing = await self._s.versions.set_status(
            version.id, ModelStatus.SHADOW, reason=reason, ts_ms=now
        )
        await self._watch_shadow(shadowing)

    async def _watch_shadow(self, version: ModelVersion) -> None:
        try:
            loaded = await asyncio.to_thread(load_version, self._s.data_dir, version)
        except ArtifactError as exc:
            await self._s.versions.set_status(
                version.id,
                ModelStatus.RETIRED,
                reason=f"unreadable: {exc}",
                ts_ms=self._clock.now_ms(),
            )
            return
        self._shadows[version.member] = _Shadow(loaded, version.status_ms or version.created_ms)

    # --- the live record -------------------------------------------------------------------

    async def record(self) -> int:
        """Store the serving members' and the shadows' new out-of-sample predictions; return
        how many were new."""
        shadows = [s.loaded for s in self._shadows.values()]
        # from the oldest watermark of what predicts now (a version new here: from the start);
        # a retired version's is forgotten, or every check would read from it on
        live = {*self._s.serving().values(), *(v.version.id for v in shadows)}
        self._recorded = {k: ts for k, ts in self._recorded.items() if k[0] in live}
        # per symbol: one computed later than another at this check keeps its own mark
        marks = {vid: [ts for (v, _), ts in self._recorded.items() if v == vid] for vid in live}
        since = min((min(m) if m else -1 for m in marks.values()), default=-1)
        rows = [(r, "champion") for r in await self._s.served(since)]
        if shadows:
            rows += [(r, "shadow") for r in await self._s.shadowed(shadows, since)]
        now = self._clock.now_ms()
        fresh = [
            Prediction(
                version_id=vid,
                member=member,
                symbol=symbol,
                ts_ms=ts,
                p_up=p,
                role=role,
                created_ms=now,
            )
            for (vid, member, symbol, ts, p), role in rows
            if ts > self._recorded.get((vid, symbol), -1)
        ]
        if not fresh:
            return 0
        added = await self._s.predictions.add_many(fresh)
        for row in fresh:
            key = (row.version_id, row.symbol)
            self._recorded[key] = max(self._recorded.get(key, -1), row.ts_ms)
        return added

    async def _paired(
        self,
        outcomes: Mapping[tuple[str, int], int],
        version_id: str,
        against: str,
        since_ms: int,
    ) -> tuple[Any, Any, Any]:
        """Return (P of version_id, P of against, y) on the candles both predicted after
        ``since_ms`` whose labels resolved."""
        mine = {
            (p.symbol, p.ts_ms): p.p_up
            for p in await self._s.predictions.list_predictions(version_id, since_ms=since_ms)
        }
        theirs = (
            {
                (p.symbol, p.ts_ms): p.p_up
                for p in await self._s.predictions.list_predictions(against, since_ms=since_ms)
            }
            if against
            else {}
        )
        # in time order (then symbol): the drift window is the newest rows of every symbol
        keys = sorted(
            (k for k in mine if k in outcomes and (not against or k in theirs)),
            key=lambda k: (k[1], k[0]),
        )
        return (
            np.array([mine[k] for k in keys]),
            np.array([theirs[k] for k in keys]) if against else None,
            np.array([outcomes[k] for k in keys], dtype=np.int8),
        )

    async def judge_shadows(self, outcomes: Mapping[tuple[str, int], int]) -> list[str]:
        """Promote or retire each shadow whose live record (labels: ``outcomes``) is long
        enough; return what was decided."""
        said = []
        now = self._clock.now_ms()
        for member, shadow in list(self._shadows.items()):
            champion = await self._s.versions.newest(member, ModelStatus.CHAMPION)
            vid = shadow.loaded.version.id
            p, q, y = await self._paired(
                outcomes, vid, champion.id if champion else "", shadow.started_ms
            )
            verdict = judge_shadow(
                log_losses(p, y) if len(y) else np.zeros(0),
                log_losses(q, y) if q is not None and len(y) else np.zeros(0),
                started_ms=shadow.started_ms,
                now_ms=now,
                min_ms=round(self._settings.shadow_hours * HOUR_MS),
                min_rows=self._settings.shadow_min_rows,
                margin=self._settings.shadow_margin,
            )
            if verdict.verdict is ShadowVerdict.WAIT:
                continue
            if self._shadows.get(member) is not shadow:
                continue  # replaced in shadow while its record was read: judged next check
            del self._shadows[member]
            if verdict.verdict is ShadowVerdict.PROMOTE:
                try:
                    await self._promote(shadow.loaded.version, f"shadow {verdict.reason}")
                except ArtifactError as exc:  # altered since it was loaded: never served
                    await self._s.versions.set_status(
                        vid, ModelStatus.RETIRED, reason=f"unreadable: {exc}", ts_ms=now
                    )
                    said.append(f"{vid} not promoted: its files are refused")
                    continue
                said.append(f"{vid} promoted ({verdict.reason})")
            else:
                async with self._lock:
                    await self._s.versions.set_status(
                        vid, ModelStatus.RETIRED, reason=f"shadow: {verdict.reason}", ts_ms=now
                    )
                await self._publish(
                    ModelRetired(ts_ms=now, member=member, version_id=vid, reason=verdict.reason)
                )
                said.append(f"{vid} retired ({verdict.reason})")
        return said

    async def look_for_drift(self, outcomes: Mapping[tuple[str, int], int]) -> list[str]:
        """Check each champion's live record (labels: ``outcomes``) against its validation;
        return what drifted."""
        said = []
        window = self._drift_policy.window_rows
        # the candle of the window's oldest label: only the rows from it on are read (a
        # champion's record since its promotion grows by the hour; the check looks at the
        # newest rows), all of them when a gap in the record leaves the window short
        resolved = sorted(ts for _symbol, ts in outcomes)
        recent = resolved[-window] if len(resolved) >= window else None
        for member in self._s.members:
            champion = await self._s.versions.newest(member, ModelStatus.CHAMPION)
            if champion is None:
                continue
            since = champion.status_ms or champion.created_ms
            p, _, y = await self._paired(outcomes, champion.id, "", max(since, recent or since))
            if p.size < window and recent is not None and recent > since:
                p, _, y = await self._paired(outcomes, champion.id, "", since)
            metrics = champion.metrics
            if "log_loss" not in metrics or "accuracy" not in metrics:
                continue
            was = self._drift.get(member)
            if was is not None and was[0] != champion.id:
                was = None  # another champion since: its own record is judged afresh
            # Hysteresis: a drifting champion is well again only under half the limits, so
            # a record hovering at a limit is said once, not at every other check.
            policy = self._drift_policy if was is None else self._relaxed
            shift = await self._feature_shift(champion)
            drift = drift_check(
                policy,
                live_p=p,
                live_y=y,
                expected_log_loss=metrics["log_loss"],
                expected_accuracy=metrics["accuracy"],
                feature_shift=shift,
            )
            if not drift.drifted:
                self._drift.pop(member, None)
                continue
            why = "; ".join(drift.reasons)
            self._drift[member] = (champion.id, why, drift.record)
            if was is None:  # said once, while it lasts
                await self._publish(
                    ModelDrifted(
                        ts_ms=self._clock.now_ms(),
                        member=member,
                        version_id=champion.id,
                        reasons=drift.reasons,
                    )
                )
                said.append(f"{champion.id} drifted: {why}")
                if self._settings.rollback_on_drift and drift.record:  # not a feature alone
                    said.append(
                        await self.rollback(member, f"drift: {why}", "the learning manager")
                    )
        return said

    async def _feature_shift(self, champion: ModelVersion) -> FeatureShift | None:
        """Return the champion's worst feature shift, or None (none asked for, too few live
        rows, or it could not be read: the record's drift is judged without it, the check
        goes on)."""
        if self._s.features is None:
            return None
        try:
            return await self._s.features(champion)
        except (QTError, OSError, ValueError) as exc:
            log.warning("feature drift of %s not checked: %s", champion.id, exc)
            return None

    def status_line(self, serving: bool) -> str:
        """Return one line for /status: training or not, the shadows, drift; ``serving``:
        whether a model serves now (none: the baseline trades until the first champions)."""
        sizer = self._s.sizer
        parts = ["training run under way" if self.training else "idle"]
        if sizer is not None and sizer.training:
            parts.append(f"{SIZER} training run under way")
        if not serving:
            parts.append("no champion serves: the baseline trades until the first is trained")
        shadows = [s.loaded.version.id for s in self._shadows.values()]
        if sizer is not None and sizer.shadow_id:
            shadows.append(sizer.shadow_id)
        if shadows:
            parts.append("in shadow: " + ", ".join(shadows))
        if self._drift:
            parts.append("drifting: " + ", ".join(sorted(self._drift)))
        return "learning: " + "; ".join(parts)

    def drifting(self) -> Mapping[str, str]:
        """Return the members whose champion's live record drifts, and why (the health
        input: a feature that only moved away from the training window retrains early, it
        does not make the process unhealthy)."""
        return {member: why for member, (_vid, why, record) in self._drift.items() if record}

    # --- promotion, rollback, retention ----------------------------------------------------

    async def promote(self, version_id: str, by: str) -> str:
        """Make ``version_id`` its member's champion (``qt models promote``)."""
        version = await self._s.versions.get(version_id)
        if version is None:
            raise DataError(f"no model version {version_id!r}: see `qt models list`")
        if version.status is ModelStatus.CHAMPION:
            return f"{version_id} is the champion already"
        if version.member == SIZER:
            return await self._sizer().promote(version, by)
        await self._promote(version, f"promoted by {by}")
        shadow = self._shadows.get(version.member)
        if shadow is not None and shadow.loaded.version.id == version_id:
            del self._shadows[version.member]  # promoted before its record was judged
        return f"{version_id} is {version.member}'s champion"

    async def rollback(self, member: str, reason: str, by: str) -> str:
        """Restore ``member``'s previous champion; return what happened (an unknown member:
        ``DataError``)."""
        self._known([member])
        if member == SIZER:
            return await self._sizer().rollback(reason, by)
        current = await self._s.versions.newest(member, ModelStatus.CHAMPION)
        if current is None:
            return f"{member} has no champion to roll back"
        earlier = earlier_champions(await self._s.versions.list_versions(member), current.id)
        for previous in earlier:
            try:
                loaded = await asyncio.to_thread(load_version, self._s.data_dir, previous)
            except ArtifactError as exc:
                log.warning("rollback of %s skips %s: %s", member, previous.id, exc)
                continue
            now = self._clock.now_ms()
            async with self._lock:
                await self._s.versions.promote(
                    previous.id, reason=f"restored by a rollback ({by})", ts_ms=now
                )
                await self._s.versions.set_status(
                    current.id, ModelStatus.RETIRED, reason=f"{ROLLED_BACK}: {reason}", ts_ms=now
                )
            await self._s.serve([loaded])
            self._drift.pop(member, None)  # the restored champion's record is its own
            await self._publish(
                ModelRolledBack(
                    ts_ms=now,
                    member=member,
                    version_id=previous.id,
                    rolled_back=current.id,
                    reason=reason,
                )
            )
            return f"{member}: {previous.id} serves again ({current.id} rolled back: {reason})"
        return f"{member}: no earlier champion is loadable; {current.id} serves on"

    async def _promote(self, version: ModelVersion, reason: str) -> None:
        loaded = await asyncio.to_thread(load_version, self._s.data_dir, version)
        self._drift.pop(version.member, None)  # the new champion's record is its own
        now = self._clock.now_ms()
        async with self._lock:
            champion, demoted = await self._s.versions.promote(version.id, reason=reason, ts_ms=now)
        await self._s.serve([LoadedVersion(champion, loaded.artifact)])
        await self._publish(
            ModelPromoted(
                ts_ms=now,
                member=version.member,
                version_id=version.id,
                previous=demoted.id if demoted else "",
                reason=reason,
            )
        )

    async def _adopt_registry(self) -> None:
        """Serve the registry's champions and watch its shadows where another process
        changed them (``qt models promote``, ``retrain``); a member with versions but no
        champion (trained by ``qt models train`` or the demo's first training, or a registry
        from before the manager) gets its newest candidate."""
        serving = self._s.serving()
        changed = []
        for member in self._s.members:
            shadow = await self._s.versions.newest(member, ModelStatus.SHADOW)
            watched = self._shadows.get(member)
            if shadow is None:
                self._shadows.pop(member, None)  # promoted or retired elsewhere
            elif watched is None or watched.loaded.version.id != shadow.id:
                await self._watch_shadow(shadow)
            champion = await self._s.versions.newest(member, ModelStatus.CHAMPION)
            if champion is None:
                newest = await self._s.versions.newest(member)
                # not while a run registers its candidates (it gives them their status)
                if newest is not None and newest.status is ModelStatus.CANDIDATE:
                    if not self.training:
                        await self._adopt(newest)
                continue
            if serving.get(member) == champion.id:
                continue  # served already (none serving it: the baseline trades, served now)
            try:
                changed.append(await asyncio.to_thread(load_version, self._s.data_dir, champion))
            except ArtifactError as exc:
                log.warning(
                    "champion %s is unreadable, %s serves on: %s",
                    champion.id,
                    serving.get(member, "the baseline"),
                    exc,
                )
        if changed:
            await self._s.serve(changed)

    async def _adopt(self, candidate: ModelVersion) -> None:
        """Make a member's only candidate its first champion; one whose files do not verify
        is retired instead (the loader passed over it too), never raised: the checks go on."""
        try:
            await self._promote(candidate, "adopted: the member had no champion")
        except ArtifactError as exc:
            log.warning(
                "model version %s not adopted, its files are refused: %s", candidate.id, exc
            )
            await self._s.versions.set_status(
                candidate.id,
                ModelStatus.RETIRED,
                reason=f"unreadable: {exc}",
                ts_ms=self._clock.now_ms(),
            )

    async def prune_plan(self) -> list[ModelVersion]:
        """Return what retention does not keep (``core.ml.learning.retention_plan``)."""
        versions = await self._s.versions.list_versions()
        plan = retention_plan(versions, keep_candidates=self._settings.keep_candidates)
        pruned = set(plan.prune)
        return [v for v in versions if v.id in pruned]

    async def prune(self) -> list[ModelVersion]:
        """Delete what retention does not keep (files, rows, predictions); return it."""
        async with self._lock:
            gone = await self.prune_plan()
            return await prune_versions(
                self._s.versions, self._s.predictions, self._s.data_dir, gone
            )

    async def _publish(self, event: Event) -> None:
        await self._bus.publish(event)


async def prune_versions(
    versions: ModelVersionRepo,
    predictions: PredictionRepo,
    data_dir: Path,
    gone: Sequence[ModelVersion],
) -> list[ModelVersion]:
    """Delete ``gone``'s rows, predictions and files (the files last: a row never points at
    nothing); return what was deleted."""
    root = (data_dir / "models").resolve()
    done = []
    for v in gone:
        await predictions.delete_version(v.id)
        await versions.delete(v.id)
        folder = (data_dir / v.artifact_path).resolve()
        # only models/<member>/<its id>: a hand-edited row naming the member's folder (or
        # another's) must not take every version's files with it
        if folder.parent == root / v.member and folder.name == v.id:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        else:
            log.warning("pruned %s, left its files alone: %s is not its own folder", v.id, folder)
        done.append(v)
    return done


def holdout_line(fit: CandidateFit) -> str:
    """Return the report's words on a candidate's holdout backtest and its champion's."""

    def said(score: Mapping[str, float] | None) -> str:
        if score is None:
            return "none"
        return f"{score['return_pct']:+.2f} % ({score['trades']:.0f} trades)"

    if fit.backtest is None and not fit.backtest_note:
        return ""  # not asked for (QT__LEARNING__BACKTEST_VALIDATION=false)
    note = f" [{fit.backtest_note}]" if fit.backtest_note else ""
    return (
        f"; holdout backtest {said(fit.backtest)} vs the champion's "
        f"{said(fit.champion_backtest)}{note}"
    )


def _trained_at(version: ModelVersion, now_ms: int) -> int:
    """Return when ``version`` was trained on this clock: its creation, or, stamped after now
    (trained by another process on the wall clock, while this one's market time is a
    replay's: a demo on a kept database), when it was adopted (``status_ms``), else now."""
    if version.created_ms <= now_ms:
        return version.created_ms
    if version.status_ms is not None and version.status_ms <= now_ms:
        return version.status_ms
    return now_ms
