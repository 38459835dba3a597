"""Live sizing fails closed: every way a method can fail sizes the entry fixed-fractional and
says so once per reason while it lasts; what it does size is bounded by the policy, and the
account it reads is built from the trades it saw open and close."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from core.brains.sizing_policies import KellyParams, VolTargetParams
from core.clock import SimClock
from core.domain.enums import Mode, TradingState
from core.domain.events import Event, SizingFallback, TradeClosed
from core.domain.explanations import SizingNote
from core.domain.policy import Policy
from core.errors import ConfigError, InvariantViolation
from core.ml.rl.book import PORTFOLIO_FEATURES
from core.ml.rl.observation import entry_features
from core.ml.rl.policy import PpoParams, SizingPolicy, build_net
from core.services.bus import EventBus
from core.services.sizing_service import SizingService
from core.services.sizing_sources import (
    DAY_MS,
    FallbackReason,
    KellySizing,
    PolicySizing,
    RefusedSizing,
    SizingState,
    VolatilitySizing,
)

T0_MS = 1_704_067_200_000
ENTRY = entry_features(confidence=0.6, regime_id=1, realised_vol_pct=2.5)
LIVE_NAMES = ("confidence", "realised_vol_pct", *PORTFOLIO_FEATURES)


@dataclass
class Scripted:
    """A sizing method answering from a list: a number, or an exception to raise."""

    answers: list[float | Exception]
    method: str = "scripted"
    seen: list[SizingState] = field(default_factory=list)

    def refusal(self, now_ms: int) -> tuple[FallbackReason, str] | None:
        return None

    def multiplier(self, state: SizingState) -> float:
        self.seen.append(state)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def tiny_policy(
    names: tuple[str, ...] = LIVE_NAMES, trained_until_ms: int | None = T0_MS
) -> SizingPolicy:
    """An untrained network of the real architecture: enough to size, refuse or go stale."""
    levels = (0.0, 0.5, 1.0, 1.5)
    return SizingPolicy(
        net=build_net(len(names), (8,), len(levels)).eval(),
        observation_names=names,
        levels=levels,
        params=PpoParams(hidden=(8,)),
        env={},
        metrics={},
        libraries={},
        trained_until_ms=trained_until_ms,
    )


class Rig:
    """A sizing service on a bus, recording the events."""

    def __init__(self, make: Callable[[EventBus, SimClock], SizingService]) -> None:
        self.clock = SimClock(T0_MS)
        self.bus = EventBus()
        self.events: list[Event] = []
        self.bus.subscribe("*", self._record, name="test.record")
        self.service = make(self.bus, self.clock)

    async def _record(self, event: Event) -> None:
        self.events.append(event)

    def fallbacks(self) -> list[SizingFallback]:
        return [e for e in self.events if isinstance(e, SizingFallback)]

    async def decide(self, policy: Policy | None = None, **entry: float) -> SizingNote:
        return await self.service.decide(
            symbol="BTC/USDT",
            decision_ms=self.clock.now_ms(),
            entry={**ENTRY, **entry},
            policy=policy or Policy(),
        )


def rig_of(source: object, **kwargs: object) -> Rig:
    return Rig(lambda bus, clock: SizingService(bus=bus, clock=clock, source=source, **kwargs))  # type: ignore[arg-type]


FIXED_FALLBACK = {"method": "fixed", "multiplier": 1.0}


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (RuntimeError("the policy's device is gone"), "error"),
        (InvariantViolation("corrupt"), "error"),
        (math.nan, "non_finite"),
        (math.inf, "non_finite"),
        (-math.inf, "non_finite"),
    ],
)
async def test_a_method_that_raises_or_answers_nonsense_sizes_fixed_with_one_event(
    answer: float | Exception, reason: str
) -> None:
    rig = rig_of(Scripted([answer, answer, answer]))
    notes = [await rig.decide() for _ in range(3)]

    assert {(n.method, n.multiplier, n.fallback) for n in notes} == {("fixed", 1.0, reason)}
    [event] = rig.fallbacks()  # said once while it lasts, not on every entry
    assert (event.method, event.reason, event.symbol) == ("scripted", reason, "BTC/USDT")
    assert event.detail


async def test_a_reason_is_said_again_after_a_recovery_or_another_reason() -> None:
    rig = rig_of(Scripted([math.nan, 1.25, math.nan, RuntimeError("x"), math.nan, math.nan]))
    notes = [await rig.decide() for _ in range(6)]

    assert [n.fallback for n in notes] == ["non_finite", "", "non_finite", "error"] + [
        "non_finite"
    ] * 2
    assert notes[1] == SizingNote(method="scripted", multiplier=1.25)
    assert [e.reason for e in rig.fallbacks()] == [
        "non_finite",
        "non_finite",
        "error",
        "non_finite",
    ]


async def test_what_a_method_sizes_is_bounded_by_the_cap_and_the_brains_cut() -> None:
    rig = rig_of(Scripted([9.0, -2.0, 1.5, 1.5, 1.5]), cap=1.5)
    preservation = Policy(mode=Mode.PRESERVATION, size_multiplier=Decimal("0.5"))
    tier = Policy(size_multiplier=Decimal("0.75"))
    emergency = Policy(
        mode=Mode.EMERGENCY, size_multiplier=Decimal("0.25"), state=TradingState.HALTED
    )

    assert [(await rig.decide()).multiplier for _ in range(2)] == [1.5, 0.0]
    assert [(await rig.decide(p)).multiplier for p in (preservation, tier, emergency)] == [1.0] * 3
    assert rig.fallbacks() == []


async def test_a_policy_whose_training_is_too_old_or_unrecorded_is_stale() -> None:
    rig = rig_of(PolicySizing(tiny_policy(trained_until_ms=T0_MS), max_age_ms=10 * DAY_MS))
    fresh = await rig.decide()
    assert fresh.method == "rl" and fresh.multiplier in (0.0, 0.5, 1.0, 1.5)

    rig.clock.advance_to(T0_MS + 10 * DAY_MS + 1)
    stale = await rig.decide()
    assert stale == SizingNote(method="fixed", multiplier=1.0, fallback="stale")
    [event] = rig.fallbacks()
    assert "10.0 days ago" in event.detail

    unrecorded = rig_of(PolicySizing(tiny_policy(trained_until_ms=None), max_age_ms=DAY_MS))
    assert (await unrecorded.decide()).fallback == "stale"
    any_age = rig_of(PolicySizing(tiny_policy(trained_until_ms=None), max_age_ms=0))
    assert (await any_age.decide()).method == "rl"


async def test_a_policy_reading_what_the_engine_cannot_give_is_refused_before_it_runs() -> None:
    names = ("confidence", "noise", *PORTFOLIO_FEATURES)
    rig = rig_of(PolicySizing(tiny_policy(names), max_age_ms=0))
    notes = [await rig.decide() for _ in range(2)]

    assert {n.fallback for n in notes} == {"spec_mismatch"}
    [event] = rig.fallbacks()
    assert "noise" in event.detail


async def test_an_entry_whose_state_cannot_be_built_falls_back_without_guessing() -> None:
    rig = rig_of(PolicySizing(tiny_policy(), max_age_ms=0))
    unmeasured = await rig.decide(realised_vol_pct=math.nan)  # too little history
    measured = await rig.decide()

    assert unmeasured.fallback == "observation" and measured.method == "rl"
    assert [e.reason for e in rig.fallbacks()] == ["observation"]


async def test_a_refused_artifact_sizes_every_entry_fixed_and_says_so_once() -> None:
    rig = rig_of(RefusedSizing("rl", FallbackReason.ARTIFACT, "policy.pt has sha256 ..."))
    notes = [await rig.decide() for _ in range(3)]
    assert {n.fallback for n in notes} == {"artifact"}
    assert [(e.method, e.reason) for e in rig.fallbacks()] == [("rl", "artifact")]


def closed(trade_id: str, pnl: str) -> TradeClosed:
    return TradeClosed(
        ts_ms=T0_MS,
        trade_id=trade_id,
        symbol="BTC/USDT",
        side="long",
        opened_ms=T0_MS,
        closed_ms=T0_MS,
        amount=Decimal(1),
        entry_price=Decimal(100),
        exit_price=Decimal(101),
        fees=Decimal(0),
        pnl=Decimal(pnl),
        pnl_pct=0.0,
        exit_reason="TP1",
    )


async def test_the_account_books_each_closed_trade_as_a_return_at_multiplier_one() -> None:
    source = Scripted([1.5, 1.0])
    rig = rig_of(source)
    note = await rig.decide()
    rig.service.opened("t1", T0_MS, note, Decimal(10_000))
    rig.service.opened("t0", T0_MS, SizingNote(method="x", multiplier=0.0), Decimal(10_000))
    await rig.bus.publish(closed("t1", "300"))  # +3 % of equity at 1.5: +2 % at multiplier 1
    await rig.bus.publish(closed("elsewhere", "999"))  # opened before a restart: not ours

    assert rig.service.account.recent_outcomes == pytest.approx((0.02,))
    assert rig.service.account.equity == pytest.approx(1.03)
    await rig.decide()
    state = source.seen[-1]
    assert state.recent_outcomes == pytest.approx((0.02,))
    assert state.account[PORTFOLIO_FEATURES.index("exposure")] == 0.0


async def test_a_trade_forgotten_without_a_close_leaves_the_exposure() -> None:
    rig = rig_of(Scripted([]))
    rig.service.opened("t1", T0_MS, SizingNote(method="x", multiplier=1.25), Decimal(10_000))
    assert rig.service.account.exposure == 1.25
    rig.service.forgot("t1")
    await rig.bus.publish(closed("t1", "50"))  # too late: nothing is booked
    assert rig.service.account.exposure == 0.0 and rig.service.account.recent_outcomes == ()


async def test_the_simple_methods_size_from_the_entry_and_the_record() -> None:
    vol = rig_of(VolatilitySizing(VolTargetParams(target_vol=2.0, floor=0.25, cap=1.5)))
    assert (await vol.decide(realised_vol_pct=4.0)).multiplier == 0.5
    assert (await vol.decide(realised_vol_pct=math.nan)).multiplier == 0.25  # its floor
    assert vol.fallbacks() == []

    kelly = rig_of(KellySizing(KellyParams(fraction=0.5, cap=1.5, min_trades=2)))
    assert (await kelly.decide()).multiplier == 1.0  # no record yet: the base size
    for i, pnl in enumerate(["200", "-100", "200"]):  # +2 %, -1 %, +2 %
        kelly.service.opened(
            f"t{i}", T0_MS, SizingNote(method="kelly", multiplier=1.0), Decimal(10_000)
        )
        await kelly.bus.publish(closed(f"t{i}", pnl))
    # p = 2/3, W = 2 %, L = 1 %: m* = 2/3 / 0.01 - 1/3 / 0.02 = 50, half of it capped at 1.5
    assert (await kelly.decide()).multiplier == 1.5


@pytest.mark.parametrize("cap", [0.0, -1.0, math.nan])
def test_a_bad_cap_is_refused_at_start(cap: float) -> None:
    with pytest.raises(ConfigError, match="cap"):
        SizingService(bus=EventBus(), clock=SimClock(T0_MS), cap=cap)


def test_the_default_is_fixed_fractional() -> None:
    service = SizingService(bus=EventBus(), clock=SimClock(T0_MS))
    assert service.method == "fixed"


async def test_a_real_policy_reads_its_observation_in_its_own_order(tmp_path: Path) -> None:
    names = ("realised_vol_pct", "confidence", *PORTFOLIO_FEATURES)
    policy = tiny_policy(names)
    rig = rig_of(PolicySizing(policy, max_age_ms=0))
    note = await rig.decide()
    obs = [2.5, 0.6, *rig.service.account.features(T0_MS)]
    assert note.multiplier == policy.multiplier(obs)


async def test_a_restart_resumes_the_same_account_from_what_was_saved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    note = SizingNote(method="scripted", multiplier=1.25)
    before = rig_of(Scripted([]))
    before.service.opened("t1", T0_MS, note, Decimal(10_000))
    before.service.opened(
        "t2", T0_MS + 1, dataclasses.replace(note, multiplier=0.75), Decimal(9_000)
    )
    before.service.opened("t3", T0_MS + 2, note, Decimal(9_500))
    await before.bus.publish(closed("t1", "250"))  # +2.5 % at 1.25: unit outcome 0.02
    saved = before.service.dump()

    # t3 closed while the process was away: only t2 is still open at the restart
    after = rig_of(Scripted([]))
    after.service.load(saved, {"t2"})
    assert after.service.account.exposure == 0.75
    assert after.service.account.recent_outcomes == pytest.approx((0.02,))
    before.service.account.dropped("t3")
    for bus in (before.bus, after.bus):
        await bus.publish(closed("t2", "-90"))  # -1 % of the 9,000 it was sized on, at 0.75
    t = T0_MS + 86_400_000
    assert after.service.account.features(t) == pytest.approx(before.service.account.features(t))
    assert after.service.account.recent_outcomes == pytest.approx((0.02, -0.01 / 0.75))

    # an unreadable account starts empty, said in the log, and moves nothing
    for bad in ("{", '{"account": {"open": [["t2", -1]]}, "sized_on": {}}', "[]"):
        empty = rig_of(Scripted([]))
        empty.service.load(bad, {"t2"})
        assert empty.service.account.exposure == 0 and empty.service.account.recent_outcomes == ()
    assert "the saved account is unreadable" in caplog.text


async def test_a_trade_a_cap_cut_books_the_multiplier_it_really_had() -> None:
    rig = rig_of(Scripted([1.5]))
    rig.service.shadow_with(Scripted([0.5, 1.2]), "shadow-v1")
    note = await rig.decide()
    assert (note.multiplier, note.shadow) == (1.5, 0.5)
    # the position cap let only 0.8 of the unit budget through: the trade had x0.8
    rig.service.opened("t1", T0_MS, note, Decimal(10_000), cap=0.8)
    assert rig.service.account.multiplier_of("t1") == pytest.approx(0.8)
    await rig.bus.publish(closed("t1", "80"))  # +0.8 % of equity at x0.8: +1 % a unit
    assert rig.service.account.recent_outcomes == (pytest.approx(0.01),)
    # the shadow below the cap keeps its own; the shadow's record books the real x0.8
    assert rig.service.shadow_record == [(pytest.approx(0.8), 0.5, pytest.approx(0.01))]
    rig.service.source = Scripted([1.0])
    note = await rig.decide()
    rig.service.opened("t2", T0_MS, note, Decimal(10_000), cap=0.9)
    assert rig.service._shadowed["t2"] == (pytest.approx(0.9), pytest.approx(0.9))  # 1.2 cut too
