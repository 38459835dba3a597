"""The RL sizer as a member of the model registry: a run's policy is registered (SHADOW when
its gate passed, RETIRED with the gate's reason when not), shadows the trading method's
entries without trading, is promoted or retired on its live record, sizes from the next
entry on without a restart, rolls back, and a refused artifact or a failed run leaves the
fallback sizing. Driven through the learning manager like its other members."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.sizing import no_champion, registry_source
from core.clock import SimClock
from core.config import LearningSettings, SizingSettings
from core.domain.events import (
    Event,
    LearningReported,
    ModelPromoted,
    ModelRetired,
    ModelRolledBack,
    ModelTrained,
    ModelTrainingFailed,
)
from core.domain.model_versions import ModelStatus
from core.domain.policy import Policy
from core.errors import ArtifactError, DataError
from core.ml.rl.gate import SizingGate
from core.ml.rl.policy import SizingPolicy, save_policy
from core.ml.rl.sizer_versions import SIZER, load_sizer, observation_digest
from core.ports import Storage
from core.services.bus import EventBus
from core.services.learning import LearningManager, LearningSources
from core.services.sizer_learning import (
    FIRST_RETRY_MS,
    SizerLearning,
    SizerSources,
    TrainedSizer,
    growth,
)
from core.services.sizing_service import SizingService
from core.services.sizing_sources import FallbackReason, PolicySizing, RefusedSizing
from storage import open_storage
from tests.unit.services.test_sizing_service import ENTRY, T0_MS, closed, tiny_policy

HOUR = 3_600_000
EQUITY = Decimal(10_000)


def gate(passed: bool) -> SizingGate:
    if passed:
        return SizingGate(
            passed=True, best_simple="kelly", reason="beat kelly", psr=0.99, sharpe_gain=0.5,
            margin=0.1,
        )  # fmt: skip
    return SizingGate(
        passed=False, best_simple="fixed", reason="not beyond noise", psr=0.6, sharpe_gain=0.0,
        margin=0.1,
    )  # fmt: skip


class Trainer:
    """A training run writing real sealed policies (or failing), in order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.plan: list[SizingPolicy | Exception] = []
        self.calls = 0

    async def __call__(self) -> TrainedSizer:
        self.calls += 1
        item = self.plan.pop(0)
        if isinstance(item, Exception):
            raise item
        folder = self.root / f"trained-{uuid.uuid4().hex[:6]}"
        save_policy(item, folder)
        return TrainedSizer(folder=folder, train_start_ms=T0_MS - 400 * 24 * HOUR,
                            symbols=("BTC/USDT",), lines=("3 folds",))  # fmt: skip


def policy(passed: bool | None, *, bias: int = 0) -> SizingPolicy:
    """A policy whose action is set by its last layer's bias: level ``bias`` always."""
    import torch

    p = tiny_policy(trained_until_ms=T0_MS)
    with torch.no_grad():
        last = p.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([10.0 if i == bias else 0.0 for i in range(4)]))
    return dataclasses.replace(p, gate=None if passed is None else gate(passed))


class Lane:
    """A sizing service and the sizer's lane on a real SQLite registry."""

    def __init__(self, storage: Storage, tmp: Path, **settings: object) -> None:
        self.clock = SimClock(T0_MS)
        self.bus = EventBus()
        self.events: list[Event] = []
        self.bus.subscribe("*", self._record, name="test.record")
        self.settings = SizingSettings(method="rl", max_age_days=0, **settings)  # type: ignore[arg-type]
        self.sizing = SizingService(bus=self.bus, clock=self.clock, source=no_champion("none yet"))
        self.data_dir = tmp / "data"
        self.trainer = Trainer(tmp)
        self.storage = storage
        self.lane = self.new_lane(self.sizing)
        self.trades = 0

    def new_lane(self, sizing: SizingService) -> SizerLearning:
        sources = SizerSources(
            versions=self.storage.model_versions,
            data_dir=self.data_dir,
            sizing=sizing,
            train=self.trainer,
            live=lambda p, v: registry_source(p, v, self.settings, sizing.account),
            fallback=no_champion,
            cadence_ms=168 * HOUR,
            shadow_trades=self.settings.shadow_trades,
        )
        return SizerLearning(sources, bus=self.bus, clock=self.clock)

    async def _record(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    async def run(self) -> str:
        said = await self.lane.check()
        line = await self.lane.wait()
        return f"{said} | {line}"

    async def trade(self, pnl_per_unit: float) -> None:
        """One entry sized by the service, closed at ``pnl_per_unit`` of equity per unit."""
        self.trades += 1
        tid = f"t{self.trades}"
        note = await self.sizing.decide(
            symbol="BTC/USDT", decision_ms=self.clock.now_ms(), entry=ENTRY, policy=Policy()
        )
        self.sizing.opened(tid, self.clock.now_ms(), note, EQUITY)
        self.advance(HOUR)
        pnl = EQUITY * Decimal(str(pnl_per_unit)) * Decimal(str(note.multiplier))
        await self.bus.publish(
            dataclasses.replace(closed(tid, str(pnl)), ts_ms=self.clock.now_ms())
        )

    def advance(self, ms: int) -> None:
        self.clock.advance_to(self.clock.now_ms() + ms)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    s = open_storage(f"sqlite+aiosqlite:///{tmp_path / 'qt.sqlite'}")
    await s.start()
    yield s
    await s.stop()


async def test_a_passed_policy_shadows_then_is_promoted_and_sizes_without_a_restart(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=4)
    rig.trainer.plan = [policy(True, bias=3)]  # always x1.5
    said = await rig.run()
    assert "training started" in said and "shadow (gate: beat kelly)" in said
    [v] = await storage.model_versions.list_versions(SIZER)
    assert v.status is ModelStatus.SHADOW and v.reason == "gate: beat kelly"
    assert v.feature_set_hash == observation_digest(tiny_policy().observation_names)
    assert v.metrics["gate_passed"] == 1.0 and v.metrics["gate_sharpe_gain"] == 0.5
    assert (rig.data_dir / v.artifact_path / "manifest.json").exists()
    [trained] = rig.of(ModelTrained)
    assert (trained.member, trained.status) == (SIZER, "SHADOW")  # type: ignore[attr-defined]
    [report] = rig.of(LearningReported)
    assert report.lines[0] == "3 folds"  # type: ignore[attr-defined]

    # shadowing: the fallback trades (fixed x1), the shadow's x1.5 is noted beside it
    await rig.trade(0.01)
    assert rig.sizing.shadow_id == v.id and rig.sizing.shadow_record == [(1.0, 1.5, 0.01)]
    for _ in range(3):
        await rig.trade(0.01)
    assert isinstance(rig.sizing.source, RefusedSizing)  # not promoted before its check
    said = await rig.lane.check()
    assert f"{v.id} promoted" in said
    now = await storage.model_versions.get(v.id)
    assert now is not None and now.status is ModelStatus.CHAMPION
    assert isinstance(rig.sizing.source, PolicySizing) and rig.sizing.shadow is None
    [promoted] = rig.of(ModelPromoted)
    assert promoted.version_id == v.id and "log growth" in promoted.reason  # type: ignore[attr-defined]
    note = await rig.sizing.decide(symbol="X", decision_ms=T0_MS, entry=ENTRY, policy=Policy())
    assert (note.method, note.multiplier, note.shadow) == ("rl", 1.5, None)
    assert "the registry's " + v.id in rig.sizing.status_line()


async def test_a_shadow_worse_than_the_trading_method_live_is_retired(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=3)
    rig.trainer.plan = [policy(True, bias=3)]
    await rig.run()
    for _ in range(3):
        await rig.trade(-0.02)  # x1.5 loses more than x1
    said = await rig.lane.check()
    [v] = await storage.model_versions.list_versions(SIZER)
    assert f"{v.id} retired" in said and v.status is ModelStatus.RETIRED
    assert v.reason.startswith("shadow record: log growth")
    assert rig.sizing.shadow is None and isinstance(rig.sizing.source, RefusedSizing)
    assert len(rig.of(ModelRetired)) == 1


async def test_a_failed_gate_is_retired_with_its_reason_and_never_shadows(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path)
    rig.trainer.plan = [policy(False)]
    said = await rig.run()
    [v] = await storage.model_versions.list_versions(SIZER)
    assert v.status is ModelStatus.RETIRED and v.reason == "gate: not beyond noise"
    assert "retired (gate: not beyond noise)" in said and rig.sizing.shadow is None
    # not due again before its cadence, then due
    rig.advance(167 * HOUR)
    assert "training started" not in await rig.lane.check()
    rig.advance(HOUR)
    rig.trainer.plan = [policy(None)]  # never judged: retired too
    await rig.run()
    newest = await storage.model_versions.newest(SIZER)
    assert newest is not None and newest.reason == "gate: never judged"


async def test_a_failed_run_changes_nothing_and_is_tried_again_later(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path)
    rig.trainer.plan = [DataError("no stored candles"), policy(True)]
    said = await rig.run()
    assert "not trained: no stored candles" in said
    [failed] = rig.of(ModelTrainingFailed)
    assert failed.member == SIZER  # type: ignore[attr-defined]
    assert await storage.model_versions.list_versions(SIZER) == []
    assert isinstance(rig.sizing.source, RefusedSizing)
    rig.advance(FIRST_RETRY_MS - HOUR)
    await rig.lane.check()
    assert rig.trainer.calls == 1
    rig.advance(HOUR)
    await rig.run()
    assert rig.trainer.calls == 2


async def test_rollback_restores_the_previous_champion_then_the_fallback(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=1)
    rig.trainer.plan = [policy(True, bias=2), policy(True, bias=3)]
    await rig.run()
    await rig.trade(0.01)
    await rig.lane.check()  # first promoted (x1.0 vs x1.0: not worse)
    first = await storage.model_versions.newest(SIZER, ModelStatus.CHAMPION)
    rig.advance(168 * HOUR)
    await rig.run()  # the second shadows
    await rig.trade(0.01)
    await rig.lane.check()
    second = await storage.model_versions.newest(SIZER, ModelStatus.CHAMPION)
    assert first is not None and second is not None and first.id != second.id
    assert rig.sizing.why.startswith(f"the registry's {second.id}")

    said = await rig.lane.rollback("worse live", "qt models rollback")
    assert said.startswith(f"{SIZER}: {first.id} sizes again")
    assert rig.sizing.why.startswith(f"the registry's {first.id}")
    [back] = rig.of(ModelRolledBack)
    assert (back.version_id, back.rolled_back) == (first.id, second.id)  # type: ignore[attr-defined]
    said = await rig.lane.rollback("worse still", "qt models rollback")
    assert "the fallback sizes" in said
    assert isinstance(rig.sizing.source, RefusedSizing)
    assert rig.sizing.source.reason is FallbackReason.NO_CHAMPION


async def test_a_tampered_champion_is_refused_and_the_fallback_sizes(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=1)
    rig.trainer.plan = [policy(True, bias=2)]
    await rig.run()
    await rig.trade(0.01)
    await rig.lane.check()
    champion = await storage.model_versions.newest(SIZER, ModelStatus.CHAMPION)
    assert champion is not None
    weights = rig.data_dir / champion.artifact_path / "policy.pt"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match=r"policy\.pt"):
        load_sizer(rig.data_dir, champion)
    # a restarted process: a new service and lane on the same registry
    sizing = SizingService(bus=rig.bus, clock=rig.clock, source=no_champion("none yet"))
    lane = rig.new_lane(sizing)
    said = await lane.check()
    assert "refused, the fallback sizes" in said
    assert isinstance(sizing.source, RefusedSizing)
    gone = await storage.model_versions.get(champion.id)
    assert gone is not None and gone.status is ModelStatus.RETIRED
    assert gone.reason.startswith("unreadable")


async def test_the_shadow_record_survives_a_restart_for_the_same_version(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=3)
    rig.trainer.plan = [policy(True, bias=1)]
    await rig.run()
    await rig.trade(0.02)
    note = await rig.sizing.decide(symbol="X", decision_ms=T0_MS, entry=ENTRY, policy=Policy())
    rig.sizing.opened("open-1", T0_MS, note, EQUITY)
    saved = rig.sizing.dump()

    sizing = SizingService(bus=EventBus(), clock=rig.clock, source=no_champion("none yet"))
    sizing.load(saved, open_trades={"open-1"})
    lane = rig.new_lane(sizing)
    await lane.sync()
    assert sizing.shadow_id == rig.sizing.shadow_id
    assert sizing.shadow_record == [(1.0, 0.5, pytest.approx(0.02))]
    assert sizing._shadowed == {"open-1": (1.0, 0.5)}


def test_growth_compounds_the_record_at_either_multiplier() -> None:
    record = [(1.0, 0.5, 0.1), (1.0, 0.5, -0.1)]
    assert growth(record, 0) == pytest.approx(math.log(1.1 * 0.9))
    assert growth(record, 1) == pytest.approx(math.log(1.05 * 0.95))
    assert growth([(2.0, 0.0, -0.6)], 0) == -float("inf")


async def test_the_learning_manager_drives_the_sizer_as_a_member(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path)

    async def nothing(*_a: object) -> list[tuple[str, str, str, int, float]]:
        return []

    async def no_outcomes(_since: int) -> dict[tuple[str, int], int]:
        return {}

    async def not_served(_loaded: object) -> bool:
        return False

    async def no_training(*_a: object) -> object:
        raise AssertionError("the ensemble's members are not trained here")

    def manager(sizer: SizerLearning | None) -> LearningManager:
        sources = LearningSources(
            members=("xgb",),
            versions=storage.model_versions,
            predictions=storage.predictions,
            data_dir=rig.data_dir,
            train=no_training,  # type: ignore[arg-type]
            history=nothing,  # type: ignore[arg-type]
            served=nothing,  # type: ignore[arg-type]
            shadowed=nothing,  # type: ignore[arg-type]
            outcomes=no_outcomes,
            new_candles=lambda _since: {},
            serve=not_served,
            serving=dict,
            sizer=sizer,
        )
        return LearningManager(sources, LearningSettings(), bus=rig.bus, clock=rig.clock)

    m = manager(rig.lane)
    rig.trainer.plan = [policy(True, bias=3)]
    assert "in its own process" in m.request("alice", [SIZER])
    await rig.lane.wait()
    [v] = await storage.model_versions.list_versions(SIZER)
    assert await m.promote(v.id, "qt models promote") == f"{v.id} is {SIZER}'s champion"
    assert isinstance(rig.sizing.source, PolicySizing)
    assert "fallback sizes" in await m.rollback(SIZER, "by hand", "qt models rollback")
    assert isinstance(rig.sizing.source, RefusedSizing)
    # a process whose sizing is not the registry's: the member is unknown, said clearly
    with pytest.raises(DataError, match="unknown member 'rl_sizer'"):
        await manager(None).rollback(SIZER, "x", "y")
    await m.stop()
