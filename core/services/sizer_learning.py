"""The RL sizer's life in the model registry: trained, gated, shadowed, promoted, rolled back.

The learning manager (``core.services.learning``) drives it as its ``rl_sizer`` member: its
check calls ``check``, and ``qt models promote/rollback`` and ``/retrain rl_sizer`` reach
``promote``, ``rollback`` and ``request``. Each check:

1. serves the registry's champion (``sync``): its policy sizes entries from the next one
   on, without a restart (a champion changed by ``qt models`` too); none, or one whose
   files are refused: the configured fallback sizes (fixed, and ``/models`` says why). The
   registry's shadow sizes beside it (``SizingService.shadow_with``);
2. judges the shadow once it sized ``shadow_trades`` closed trades: on those trades, the
   outcome per unit of size times each one's multiplier compounds to its growth; the shadow
   is promoted when its growth is at least the trading method's, else retired (both said);
   one that would have sized none of them (x0 throughout) is retired: it "beats" any losing
   record, and as champion nothing would trade for a later shadow to be judged on;
3. starts a training run when due: no version yet, or the newest older than the cadence (a
   failed run: again after ``FIRST_RETRY_MS``), but not while a shadow that can size is
   still collecting its record (a new one would retire it unfinished: at this bot's trade
   rate none would ever finish; ``request`` still replaces it). The run (``train``, given by the
   composition root) is the walk-forward comparison of ``qt evaluate --sizing`` in its own
   process, killed at the timeout: its policy is registered SHADOW when its gate passed
   (it beat the best simple method out of sample by the margin) and this process would let
   it size (not stale at birth, trained on this account), else RETIRED with the reason. A
   failure leaves what sizes untouched.

Why the shadow's record is honest: the outcome per unit of size of a closed trade does not
depend on the size (fees and slippage scale with it), so multiplier x unit outcome is what
the shadow's size would have earned on that trade. Where a cap (position, exposure, cash)
cut the order, the record books the multiplier the cap bound at, and the shadow's cut to it
(``SizingService.opened``); a partial fill or a minimum the shadow's smaller size would have
missed is not modelled.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from core.clock import Clock
from core.domain.events import (
    Event,
    LearningReported,
    ModelPromoted,
    ModelRetired,
    ModelRolledBack,
    ModelTrained,
    ModelTrainingFailed,
)
from core.domain.model_versions import ROLLED_BACK, ModelStatus, ModelVersion, earlier_champions
from core.errors import ArtifactError, QTError
from core.ml.rl.policy import SizingPolicy
from core.ml.rl.sizer_versions import SIZER, load_sizer, register_sizer
from core.ports import ModelVersionRepo
from core.services.sizing_service import SizingService
from core.services.sizing_sources import SizingSource
from core.values import value_class

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
FIRST_RETRY_MS = 6 * HOUR_MS  # a failed run is tried again after this


@value_class(frozen=True, slots=True, kw_only=True)
class TrainedSizer:
    """What a training run produced: the sealed policy folder (its gate's verdict inside),
    the first candle of the data it walked, the symbols, and lines for the report."""

    folder: Path
    train_start_ms: int
    symbols: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()


@value_class(frozen=True, slots=True, kw_only=True)
class SizerSources:
    """What the sizer's lane reads and drives; the composition root builds it."""

    versions: ModelVersionRepo
    data_dir: Path
    sizing: SizingService
    train: Callable[[], Awaitable[TrainedSizer]]  # off the loop, killed at the timeout
    # the live source of a loaded policy and why it sizes (its gate; a not passed one: the
    # best simple method), or a refusal when it cannot size in this process
    live: Callable[[SizingPolicy, ModelVersion], tuple[SizingSource, str]]
    fallback: Callable[[str], SizingSource]  # what sizes with no usable champion, and why
    cadence_ms: int
    shadow_trades: int


def growth(record: Sequence[tuple[float, float, float]], which: int) -> float:
    """Return the log growth of the record's trades at multiplier ``which`` (0: applied, 1:
    the shadow's): sum of log(1 + multiplier x unit outcome); -inf when one wipes out."""
    total = 0.0
    for row in record:
        r = row[which] * row[2]
        if r <= -1:
            return -math.inf
        total += math.log1p(r)
    return total


class SizerLearning:
    """See the module docstring."""

    def __init__(self, sources: SizerSources, *, bus: Any, clock: Clock) -> None:
        self._s = sources
        self._bus = bus
        self._clock = clock
        self._serving: str | None = None  # the champion id sizing ("": the fallback)
        self._task: asyncio.Task[str] | None = None
        self._failed_ms: int | None = None
        self._stopped = False
        self._lock = asyncio.Lock()

    @property
    def training(self) -> bool:
        """Return whether a training run is under way."""
        return self._task is not None and not self._task.done()

    @property
    def shadow_id(self) -> str:
        """Return the version shadowing now ("" with none)."""
        return self._s.sizing.shadow_id if self._s.sizing.shadow is not None else ""

    async def stop(self) -> None:
        """Stop a run under way (its process is killed); none starts after."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def wait(self) -> str | None:
        """Wait for the run under way; return its line (None: none)."""
        return None if self._task is None else await self._task

    async def check(self) -> str:
        """Serve, judge the shadow, start a run when due; one line ("" when nothing)."""
        said = [await self.sync(), await self._judge()]
        if not self.training and not self._stopped and await self._due():
            self._start("scheduled")
            said.append(f"{SIZER}: training started")
        return "; ".join(s for s in said if s)

    def request(self, who: str) -> str:
        """Ask for a run now (``/retrain rl_sizer``)."""
        if self._stopped:
            return "the process is stopping: no training run starts now"
        if self.training:
            return f"{SIZER}: a training run is under way already"
        self._start(f"requested by {who}")
        return f"training {SIZER} (qt evaluate --sizing) in its own process"

    # --- serving ---------------------------------------------------------------------------

    async def sync(self) -> str:
        """Serve the registry's champion and shadow it its shadow (see module, 1)."""
        champion = await self._s.versions.newest(SIZER, ModelStatus.CHAMPION)
        said = ""
        if champion is None:
            if self._serving != "":
                self._s.sizing.serve(self._s.fallback("the registry has no rl_sizer champion"), "")
                said = f"{SIZER}: no champion, the fallback sizes" if self._serving else ""
                self._serving = ""
        elif champion.id != self._serving:
            try:
                policy = await asyncio.to_thread(load_sizer, self._s.data_dir, champion)
            except ArtifactError as exc:
                log.error("sizing: the rl_sizer champion %s is refused: %s", champion.id, exc)
                why = f"its champion {champion.id} is refused ({exc})"
                self._s.sizing.serve(self._s.fallback(why), "")
                await self._retire(champion, f"unreadable: {exc}")
                self._serving = ""
                return f"{SIZER}: champion {champion.id} refused, the fallback sizes"
            source, why = self._s.live(policy, champion)
            self._s.sizing.serve(source, why)
            self._serving = champion.id
            refused = self._refused_here()
            said = f"{SIZER}: {champion.id} " + (
                f"is the champion{refused}" if refused else "sizes"
            )
        await self._sync_shadow()
        return said

    async def _sync_shadow(self) -> None:
        shadow = await self._s.versions.newest(SIZER, ModelStatus.SHADOW)
        sizing = self._s.sizing
        if shadow is None:
            sizing.shadow_with(None)
            return
        if shadow.id == sizing.shadow_id and sizing.shadow is not None:
            return
        try:
            policy = await asyncio.to_thread(load_sizer, self._s.data_dir, shadow)
        except ArtifactError as exc:
            sizing.shadow_with(None)
            await self._retire(shadow, f"unreadable: {exc}")
            return
        source, _why = self._s.live(policy, shadow)
        sizing.shadow_with(source, shadow.id)

    async def _judge(self) -> str:
        sizing = self._s.sizing
        record = list(sizing.shadow_record)
        if sizing.shadow is None or len(record) < self._s.shadow_trades:
            return ""
        shadow = await self._s.versions.get(sizing.shadow_id)
        if shadow is None or shadow.status is not ModelStatus.SHADOW:
            return ""
        mine, live = growth(record, 1), growth(record, 0)
        figures = f"log growth {mine:+.4f} against {live:+.4f} over {len(record)} closed trades"
        if not any(row[1] > 0 for row in record):
            # out of every trade: "beats" a losing record, but as champion nothing would
            # trade, and no shadow after it could ever be judged
            figures += ", it would have sized none of them"
        elif mine >= live:
            try:
                await self._promote(shadow, f"shadow record: {figures}")
            except ArtifactError as exc:  # its files changed since it was loaded
                log.error("sizing: the rl_sizer shadow %s is refused: %s", shadow.id, exc)
                await self._retire(shadow, f"unreadable: {exc}")
                sizing.shadow_with(None)
                return f"{SIZER}: shadow {shadow.id} refused at its promotion ({exc})"
            return f"{SIZER}: {shadow.id} promoted ({figures})"
        await self._retire(shadow, f"shadow record: {figures}")
        sizing.shadow_with(None)
        return f"{SIZER}: {shadow.id} retired ({figures})"

    # --- registry changes ------------------------------------------------------------------

    async def promote(self, version: ModelVersion, by: str) -> str:
        """Make ``version`` the champion (``qt models promote``) and serve it."""
        await self._promote(version, f"promoted by {by}")
        return f"{version.id} is {SIZER}'s champion{self._refused_here()}"

    async def rollback(self, reason: str, by: str) -> str:
        """Restore the previous champion (none loadable: the fallback sizes)."""
        current = await self._s.versions.newest(SIZER, ModelStatus.CHAMPION)
        if current is None:
            return f"{SIZER} has no champion to roll back"
        earlier = earlier_champions(await self._s.versions.list_versions(SIZER), current.id)
        restored: ModelVersion | None = None
        for previous in earlier:
            try:
                await asyncio.to_thread(load_sizer, self._s.data_dir, previous)
            except ArtifactError as exc:
                log.warning("rollback of %s skips %s: %s", SIZER, previous.id, exc)
                continue
            restored = previous
            break
        now = self._clock.now_ms()
        async with self._lock:
            if restored is not None:
                await self._s.versions.promote(
                    restored.id, reason=f"restored by a rollback ({by})", ts_ms=now
                )
            await self._s.versions.set_status(
                current.id, ModelStatus.RETIRED, reason=f"{ROLLED_BACK}: {reason}", ts_ms=now
            )
        await self.sync()
        back = restored.id if restored is not None else ""
        await self._publish(
            ModelRolledBack(
                ts_ms=now, member=SIZER, version_id=back, rolled_back=current.id, reason=reason
            )
        )
        if restored is None:
            return f"{SIZER}: {current.id} rolled back ({reason}); the fallback sizes"
        back = f"({current.id} rolled back: {reason})"
        if refused := self._refused_here():
            return f"{SIZER}: {restored.id} is the champion again{refused} {back}"
        return f"{SIZER}: {restored.id} sizes again {back}"

    def _refused_here(self) -> str:
        """Return why the champion served sizes no entry in this process ("": it sizes)."""
        no = self._s.sizing.source.refusal(self._clock.now_ms())
        return "" if no is None else f", but it sizes no entry here ({no[0].value}: {no[1]})"

    async def _promote(self, version: ModelVersion, reason: str) -> None:
        await asyncio.to_thread(load_sizer, self._s.data_dir, version)  # refused: raises
        now = self._clock.now_ms()
        async with self._lock:
            previous = await self._s.versions.newest(SIZER, ModelStatus.CHAMPION)
            await self._s.versions.promote(version.id, reason=reason, ts_ms=now)
        await self.sync()
        await self._publish(
            ModelPromoted(
                ts_ms=now,
                member=SIZER,
                version_id=version.id,
                previous=previous.id if previous is not None else "",
                reason=reason,
            )
        )

    async def _retire(self, version: ModelVersion, reason: str) -> None:
        now = self._clock.now_ms()
        async with self._lock:
            await self._s.versions.set_status(
                version.id, ModelStatus.RETIRED, reason=reason, ts_ms=now
            )
        await self._publish(
            ModelRetired(ts_ms=now, member=SIZER, version_id=version.id, reason=reason)
        )

    # --- training --------------------------------------------------------------------------

    async def _due(self) -> bool:
        now = self._clock.now_ms()
        if self._failed_ms is not None and now - self._failed_ms < FIRST_RETRY_MS:
            return False
        sizing = self._s.sizing
        shadow = sizing.shadow
        if (
            shadow is not None
            and shadow.refusal(now) is None
            and len(sizing.shadow_record) < self._s.shadow_trades
        ):
            return False  # its record is under way: a new shadow would retire it unfinished
        newest = await self._s.versions.newest(SIZER)
        return newest is None or now - min(newest.created_ms, now) >= self._s.cadence_ms

    def _start(self, why: str) -> None:
        self._task = asyncio.create_task(self._run(why), name="sizer-training")

    async def _run(self, why: str) -> str:
        started = time.monotonic()  # wall seconds: a demo's market clock runs faster
        lines: tuple[str, ...] = ()
        trained: TrainedSizer | None = None
        try:
            trained = await self._s.train()
            lines = trained.lines
            line = await self._register(trained)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if trained is not None:  # refused before its registration moved it
                await asyncio.to_thread(shutil.rmtree, trained.folder, True)
            if not isinstance(exc, QTError):
                log.exception("the rl_sizer training run failed")
            self._failed_ms = self._clock.now_ms()
            reason = str(exc) if isinstance(exc, QTError) else f"{type(exc).__name__}: {exc}"
            await self._publish(
                ModelTrainingFailed(ts_ms=self._clock.now_ms(), member=SIZER, reason=reason)
            )
            line = f"{SIZER}: not trained: {reason}; what sizes is unchanged"
        else:
            self._failed_ms = None
        took = time.monotonic() - started
        await self._publish(
            LearningReported(
                ts_ms=self._clock.now_ms(),
                title=f"{SIZER} training run ({why}) in {took:.0f} s",
                lines=(*lines, line),
            )
        )
        return line

    async def _register(self, trained: TrainedSizer) -> str:
        now = self._clock.now_ms()
        version, policy = await register_sizer(
            self._s.versions,
            self._s.data_dir,
            trained.folder,
            created_ms=now,
            train_start_ms=trained.train_start_ms,
            status=ModelStatus.CANDIDATE,
            reason="registered",
            symbols=trained.symbols,
        )
        gate = policy.gate
        passed = gate is not None and gate.passed
        reason = f"gate: {gate.reason}" if gate is not None else "gate: never judged"
        refused = self._s.live(policy, version)[0].refusal(now) if passed else None
        if refused is not None:  # stale at birth, another account: it could never be judged
            passed = False
            reason = f"{reason}, but it sizes no entry here ({refused[0].value}: {refused[1]})"
        status = ModelStatus.SHADOW if passed else ModelStatus.RETIRED
        async with self._lock:
            if passed:
                # one shadow at a time: the one it replaces never finished its record
                old = await self._s.versions.newest(SIZER, ModelStatus.SHADOW)
                if old is not None:
                    await self._s.versions.set_status(
                        old.id, ModelStatus.RETIRED, reason=f"replaced by {version.id}", ts_ms=now
                    )
            await self._s.versions.set_status(version.id, status, reason=reason, ts_ms=now)
        await self._publish(
            ModelTrained(
                ts_ms=now,
                member=SIZER,
                version_id=version.id,
                status=status.value,
                reason=reason,
                log_loss=None,  # a sizer has no validation log-loss
            )
        )
        await self._sync_shadow()
        return f"{SIZER}: {version.id} {status.value.lower()} ({reason})"

    async def _publish(self, event: Event) -> None:
        await self._bus.publish(event)
