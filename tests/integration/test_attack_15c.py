"""Adversarial review of the RL sizer's registry lane (issue 15): our own classes on hand-made
inputs, trying to make it lose money or lie. Each test names what it attacks; a test that
found a bug was red before its fix."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bot.chat.render import Renderer
from bot.sizing import no_champion
from core.config import LearningSettings, Settings, load_settings
from core.domain.enums import Mode
from core.domain.events import ModelRetired, ModelRolledBack, ModelTrained
from core.domain.model_versions import ModelStatus
from core.domain.policy import Policy
from core.errors import DependencyError
from core.ml.learning import retention_plan
from core.ml.rl.policy import save_policy
from core.ml.rl.sizer_versions import SIZER, register_sizer
from core.ports import Storage
from core.services.learning import LearningManager, LearningSources, prune_versions
from core.services.sizer_learning import TrainedSizer
from core.services.sizing_service import SizingService
from core.services.sizing_sources import FallbackReason, PolicySizing, RefusedSizing
from core.services.trade_codec import decode_trades, encode_trades
from tests.integration.test_cli import Cli, flat
from tests.integration.test_cli import cli as cli  # the fixture
from tests.integration.test_sizer_learning import HOUR, Lane, policy
from tests.integration.test_sizer_learning import storage as storage  # the fixture
from tests.unit.services.test_sizing_service import ENTRY, T0_MS, closed
from tests.unit.services.test_trade_codec import full_trade


def tamper(rig: Lane, artifact_path: str) -> None:
    weights = rig.data_dir / artifact_path / "policy.pt"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))


async def shadowing(rig: Lane, *, bias: int = 3) -> str:
    """Train one passed policy into the shadow; return its id."""
    rig.trainer.plan = [policy(True, bias=bias)]
    await rig.run()
    assert rig.sizing.shadow is not None
    return rig.sizing.shadow_id


# --- bugs found (red before their fix) ---------------------------------------------------


async def test_a_shadow_tampered_before_its_judgement_is_retired_and_the_lane_goes_on(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: the judge's promotion re-read the files, raised ArtifactError out of every check
    (the learning job failed at each one, the lane never trained again)."""
    rig = Lane(storage, tmp_path, shadow_trades=2)
    sid = await shadowing(rig)
    await rig.trade(0.01)
    await rig.trade(0.01)  # the x1.5 shadow wins: its promotion is next
    version = await storage.model_versions.get(sid)
    assert version is not None
    tamper(rig, version.artifact_path)
    said = await rig.lane.check()
    assert f"{sid} refused" in said
    gone = await storage.model_versions.get(sid)
    assert gone is not None and gone.status is ModelStatus.RETIRED
    assert gone.reason.startswith("unreadable")
    assert rig.sizing.shadow is None and isinstance(rig.sizing.source, RefusedSizing)
    assert await storage.model_versions.newest(SIZER, ModelStatus.CHAMPION) is None
    assert any(isinstance(e, ModelRetired) for e in rig.events)


def test_a_rollback_to_the_fallback_is_not_pushed_as_a_version_serving_again() -> None:
    """Was: ``ROLLED BACK rl_sizer:  serves again, not v2`` (an empty id "serving")."""
    push = Renderer().render(
        ModelRolledBack(
            ts_ms=T0_MS, member=SIZER, version_id="", rolled_back="rl_sizer-v2", reason="worse"
        )
    )
    assert push is not None
    assert " serves again" not in push.text and "rl_sizer-v2" in push.text
    assert "no earlier champion" in push.text


async def test_a_shadow_this_process_refuses_says_so_in_models(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: a shadow gone stale (QT__SIZING__MAX_AGE_DAYS) is refused at every entry, so it
    sizes none, while /models said nothing of it (the fallback's line returned first) or only
    "shadow v: 0 closed trade(s) sized"."""
    rig = Lane(storage, tmp_path, shadow_trades=2)
    rig.settings = rig.settings.model_copy(update={"max_age_days": 5.0})
    sid = await shadowing(rig, bias=3)
    assert f"shadow {sid}: 0 closed trade(s) sized" in rig.sizing.status_line()
    rig.advance(6 * 24 * HOUR)
    await rig.trade(0.01)
    assert rig.sizing.shadow_record == []  # it sized nothing
    line = rig.sizing.status_line()
    assert f"shadow {sid}" in line and "it sizes no entry now (stale" in line


async def test_a_policy_trained_on_another_account_is_retired_at_registration(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: registered SHADOW though this process refuses it at every entry (trained on
    another QT__SIZING__RECENT_TRADES): a shadow never judged, for ever."""
    rig = Lane(storage, tmp_path, shadow_trades=2)
    rig.trainer.plan = [dataclasses.replace(policy(True, bias=3), env={"recent_trades": 5})]
    said = await rig.run()
    [v] = await storage.model_versions.list_versions(SIZER)
    assert v.status is ModelStatus.RETIRED and "sizes no entry here (spec_mismatch" in v.reason
    assert "retired" in said and rig.sizing.shadow is None


async def test_a_scheduled_run_does_not_replace_a_shadow_still_collecting_its_record(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: every QT__SIZING__RETRAIN_HOURS the new run's shadow retired the old one, whose
    record restarted at 0: at fewer than QT__SIZING__SHADOW_TRADES closed trades a cadence
    (the README's 136 trades in eight years against 30 a week) no shadow ever finished."""
    rig = Lane(storage, tmp_path, shadow_trades=3)
    first = await shadowing(rig)
    await rig.trade(0.01)
    await rig.trade(0.01)
    rig.advance(200 * HOUR)
    rig.trainer.plan = [policy(True, bias=1)]
    said = await rig.lane.check()
    assert "training started" not in said and rig.trainer.calls == 1
    await rig.trade(0.01)
    said = await rig.lane.check()
    # judged: the cadence runs again, in the same check
    assert f"{first} promoted" in said and "training started" in said
    await rig.lane.wait()
    # /retrain still replaces a shadow at once (asked for by hand)
    second = rig.sizing.shadow_id
    assert second and second != first
    rig.trainer.plan = [policy(True, bias=2)]
    rig.lane.request("alice")
    await rig.lane.wait()
    assert rig.sizing.shadow_id not in ("", second)


async def test_a_stale_shadow_does_not_hold_the_cadence_back(
    storage: Storage, tmp_path: Path
) -> None:
    """The hold above must not keep a shadow that can never size (stale) for ever."""
    rig = Lane(storage, tmp_path, shadow_trades=3)
    rig.settings = rig.settings.model_copy(update={"max_age_days": 5.0})
    await shadowing(rig)
    rig.advance(200 * HOUR)  # older than 5 days: the shadow refuses every entry now
    assert "training started" in await rig.lane.check()
    await rig.lane.wait()


async def test_a_run_whose_registration_fails_leaves_no_policy_folder_behind(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: the trained folder handed over (``.trained-*`` in the models folder) stayed for
    ever when the registration refused it."""
    rig = Lane(storage, tmp_path)
    untimed = dataclasses.replace(policy(True), trained_until_ms=None)
    rig.trainer.plan = [untimed]
    said = await rig.run()
    assert "not trained" in said and "no training time" in said
    assert not list(tmp_path.glob("trained-*"))
    assert await storage.model_versions.list_versions(SIZER) == []


async def test_the_sizer_s_model_trained_event_is_strict_json_in_the_audit_trail(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: ``log_loss`` NaN (no log-loss for a sizer) stored as the token NaN, which the
    payload column's JSON (RFC 8259, SQLite's json_valid) does not allow."""
    rig = Lane(storage, tmp_path)
    rig.bus.subscribe("model.trained", storage.events.append, name="test.audit")
    await shadowing(rig)
    [trained] = [e for e in rig.events if isinstance(e, ModelTrained)]
    db = sqlite3.connect(tmp_path / "qt.sqlite")
    try:
        [(payload,)] = db.execute(
            "SELECT payload FROM events WHERE topic = ?", (ModelTrained.topic,)
        ).fetchall()
    finally:
        db.close()

    def refuse(token: str) -> object:
        raise ValueError(f"not JSON: {token}")

    doc = json.loads(payload, parse_constant=refuse)
    assert doc["version_id"] == trained.version_id and doc["log_loss"] is None  # type: ignore[attr-defined]


async def test_a_shadow_that_would_have_sized_none_of_its_trades_is_not_promoted(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: an x0 shadow "beat" a losing record (log growth 0 against a loss) and was
    promoted; as champion it sizes every entry 0, so nothing trades, no shadow after it ever
    closes a trade to be judged on, and the lane is stuck on "do not trade" for good."""
    rig = Lane(storage, tmp_path, shadow_trades=3)
    sid = await shadowing(rig, bias=0)  # always x0
    for _ in range(3):
        await rig.trade(-0.01)
    assert [r[1] for r in rig.sizing.shadow_record] == [0.0, 0.0, 0.0]
    said = await rig.lane.check()
    assert f"{sid} retired" in said and "sized none" in said
    assert await storage.model_versions.newest(SIZER, ModelStatus.CHAMPION) is None


async def test_a_champion_this_process_refuses_is_not_announced_as_sizing(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: ``qt models promote`` / ``rollback`` answered "v is the champion" / "v sizes
    again" while every entry sized fixed (trained on another account here)."""
    rig = Lane(storage, tmp_path, shadow_trades=1)
    rig.trainer.plan = [dataclasses.replace(policy(True, bias=3), env={"recent_trades": 7})]
    await rig.run()
    [other] = await storage.model_versions.list_versions(SIZER)
    said = await rig.lane.promote(other, "qt models promote")
    assert "sizes no entry here (spec_mismatch" in said
    rig.advance(200 * HOUR)
    second = await shadowing(rig, bias=2)
    await rig.trade(0.01)
    assert f"{second} promoted" in await rig.lane.check()
    said = await rig.lane.rollback("worse", "qt models rollback")
    assert said.startswith(f"{SIZER}: {other.id} is the champion again")
    assert "sizes no entry here (spec_mismatch" in said


async def test_a_policy_stale_at_birth_does_not_replace_the_shadow(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: a run whose newest training trade closed longer ago than QT__SIZING__MAX_AGE_DAYS
    (few trades: weeks between them) registered a SHADOW that refuses every entry, and it
    retired the shadow it replaced, mid-record: the lane traded a working shadow for one
    that can never be judged."""
    rig = Lane(storage, tmp_path, shadow_trades=3)
    rig.settings = rig.settings.model_copy(update={"max_age_days": 5.0})
    first = await shadowing(rig, bias=3)
    await rig.trade(0.01)
    old = dataclasses.replace(policy(True, bias=1), trained_until_ms=T0_MS - 10 * 24 * HOUR)
    rig.trainer.plan = [old]
    rig.lane.request("alice")
    said = await rig.lane.wait()
    assert said is not None and "retired" in said and "stale" in said
    assert rig.sizing.shadow_id == first and len(rig.sizing.shadow_record) == 1
    kept = await storage.model_versions.get(first)
    assert kept is not None and kept.status is ModelStatus.SHADOW


async def engine_round_trip(settings: Settings) -> tuple[float, float, float]:
    """One long entered at 100 beside an x1.5 shadow (the method: x1), exited at ~101;
    return the shadow record's row."""
    from tests.unit.services.engine_harness import Harness, ScriptedProvider, at
    from tests.unit.services.test_sizing_service import Scripted

    h = Harness(
        settings, ScriptedProvider(entries={at(0): 1}, exit_long={at(2)}), sizing=Scripted([1.0])
    )
    await h.start()
    h.engine.sizing.shadow_with(Scripted([1.5] * 3), "shadow-v")
    await h.candle(0, 100.0, 100.2, 99.8, 100.0)
    await h.candle(1, 100.0, 100.2, 99.8, 100.0)  # filled
    assert h.engine.trades["BTC/USDT"].sizing is not None
    for i in (2, 3, 4):
        await h.candle(i, 101.0, 101.1, 100.9, 101.0)  # the exit signal, its fill
    [row] = h.engine.sizing.shadow_record
    return row


async def test_a_trade_a_cap_cut_books_the_shadow_what_the_cap_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: the harness's 5,001 USDT position cap holds x1 at 50 units, and x1.5 would have
    met the same cap, yet the record booked the shadow 1.5 times the trade's outcome: on
    winning trades a larger shadow was credited gains it could not have had, and promoted."""
    from tests.unit.services.engine_harness import clean_settings as capped

    applied, mine, unit = await engine_round_trip(capped(monkeypatch, tmp_path))
    assert unit > 0
    assert mine == pytest.approx(applied)  # both at the cap
    assert applied < 1.0  # the cap bound below the x1 the method asked for


async def test_an_engine_restart_between_open_and_close_books_the_trade_to_its_shadow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the engine's own save: the open trade's shadow figures survive the restart
    and its close lands in the same version's record."""
    from tests.unit.services import engine_harness
    from tests.unit.services.engine_harness import Harness, ScriptedProvider, at
    from tests.unit.services.test_engine_sizing import loose
    from tests.unit.services.test_sizing_service import Scripted

    settings = loose(monkeypatch, tmp_path)
    h = Harness(settings, ScriptedProvider(entries={at(0): 1}), sizing=Scripted([1.0]),
                persist=True)  # fmt: skip
    await h.start()
    h.engine.sizing.shadow_with(Scripted([1.5]), "shadow-v")
    await h.candle(0, 100.0, 100.2, 99.8, 100.0)
    await h.candle(1, 100.0, 100.2, 99.8, 100.0)  # filled
    assert h.engine.trades["BTC/USDT"].sizing.shadow == 1.5  # type: ignore[union-attr]

    monkeypatch.setattr(engine_harness, "MemoryStorage", lambda: h.storage)
    again = Harness(settings, ScriptedProvider(exit_long={at(2)}), sizing=Scripted([1.0]),
                    persist=True)  # fmt: skip
    again.clock.advance_to(h.clock.now_ms())
    await again.start()
    await again.engine.start()
    sizing = again.engine.sizing
    assert sizing.shadow_id == "shadow-v"  # restored until the registry names its shadow
    sizing.shadow_with(Scripted([1.5]), "shadow-v")  # the lane's first sync: the same one
    for i in (2, 3, 4):
        await again.candle(i, 101.0, 101.1, 100.9, 101.0)
    assert "BTC/USDT" not in again.engine.trades
    [(applied, mine, unit)] = sizing.shadow_record
    assert (applied, mine) == (1.0, 1.5) and unit > 0


async def test_a_trade_the_risk_budget_sized_books_the_shadow_its_own_multiplier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.services.test_engine_sizing import loose

    applied, mine, unit = await engine_round_trip(loose(monkeypatch, tmp_path))
    assert (applied, mine) == (1.0, 1.5) and unit > 0


# --- attacks the lane withstood (guards) ----------------------------------------------------


async def test_a_trade_opened_before_the_shadow_started_is_not_in_its_record(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=1)
    note = await rig.sizing.decide(symbol="X", decision_ms=T0_MS, entry=ENTRY, policy=Policy())
    assert note.shadow is None
    rig.sizing.opened("early", T0_MS, note, rig_equity())
    await shadowing(rig)
    await close(rig, "early", 0.05, note.multiplier)
    assert rig.sizing.shadow_record == []
    assert "promoted" not in await rig.lane.check()  # nothing to judge it on


async def test_a_shadow_replaced_mid_trade_does_not_inherit_the_open_trade(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=1)
    first = await shadowing(rig, bias=3)
    note = await rig.sizing.decide(symbol="X", decision_ms=T0_MS, entry=ENTRY, policy=Policy())
    assert note.shadow == 1.5
    rig.sizing.opened("mid", T0_MS, note, rig_equity())
    rig.trainer.plan = [policy(True, bias=0)]
    rig.lane.request("alice")  # a new shadow replaces the first while "mid" is open
    await rig.lane.wait()
    assert rig.sizing.shadow_id != first
    await close(rig, "mid", -0.05, note.multiplier)
    # the x1.5 figure of the first shadow is not booked as the second's x0
    assert rig.sizing.shadow_record == []
    replaced = await storage.model_versions.get(first)
    assert replaced is not None and replaced.status is ModelStatus.RETIRED


async def test_a_forgotten_entry_never_reaches_the_record(storage: Storage, tmp_path: Path) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=1)
    await shadowing(rig)
    note = await rig.sizing.decide(symbol="X", decision_ms=T0_MS, entry=ENTRY, policy=Policy())
    rig.sizing.opened("never-filled", T0_MS, note, rig_equity())
    rig.sizing.forgot("never-filled")
    await close(rig, "never-filled", 0.05, note.multiplier)
    assert rig.sizing.shadow_record == []


async def test_a_restart_between_open_and_close_books_the_trade_to_the_same_shadow(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=1)
    sid = await shadowing(rig, bias=1)
    note = await rig.sizing.decide(symbol="X", decision_ms=T0_MS, entry=ENTRY, policy=Policy())
    rig.sizing.opened("across", T0_MS, note, rig_equity())
    saved = rig.sizing.dump()
    # the note travels with the open trade through the engine's codec
    trade = dataclasses.replace(full_trade(), sizing=note)
    back = decode_trades(encode_trades({trade.symbol: trade})).trades[trade.symbol]
    assert back.sizing == note and back.sizing.shadow == 0.5
    assert note.text() == "fixed x1.00 (fell back: no_champion), shadow x0.50"

    sizing = SizingService(bus=rig.bus, clock=rig.clock, source=no_champion("none yet"))
    lane = rig.new_lane(sizing)
    await lane.sync()  # the manager's start may come before the engine's load ...
    sizing.load(saved, open_trades={"across"})  # ... or after: the same version either way
    assert sizing.shadow_id == sid
    rig.sizing = sizing
    rig.lane = lane
    await close(rig, "across", -0.04, 1.0)
    assert sizing.shadow_record == [(1.0, 0.5, pytest.approx(-0.04))]
    assert f"{sid} promoted" in await lane.check()  # x0.5 lost less than x1


async def test_a_restart_onto_another_shadow_drops_the_saved_record(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=5)
    first = await shadowing(rig, bias=3)
    await rig.trade(0.01)
    saved = rig.sizing.dump()
    rig.trainer.plan = [policy(True, bias=0)]
    rig.lane.request("qt models retrain")  # another process's shadow while this one is down
    await rig.lane.wait()
    sizing = SizingService(bus=rig.bus, clock=rig.clock, source=no_champion("none yet"))
    sizing.load(saved, open_trades=set())
    assert sizing.shadow_id == first  # restored, until the registry names its shadow
    await rig.new_lane(sizing).sync()
    assert sizing.shadow_id != first and sizing.shadow_record == []


async def test_preservation_caps_the_shadow_s_multiplier_as_the_method_s(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path)
    await shadowing(rig, bias=3)  # x1.5 asked
    for mode in (Mode.PRESERVATION, Mode.EMERGENCY):
        note = await rig.sizing.decide(
            symbol="X", decision_ms=T0_MS, entry=ENTRY, policy=Policy(mode=mode)
        )
        assert note.shadow == 1.0 and note.multiplier <= 1.0
    note = await rig.sizing.decide(symbol="X", decision_ms=T0_MS, entry=ENTRY, policy=Policy())
    assert note.shadow == 1.5


async def test_a_champion_whose_gate_failed_promoted_by_hand_sizes_the_simple_method(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path)
    rig.trainer.plan = [policy(False, bias=3)]  # would size x1.5; its gate said fixed
    await rig.run()
    [v] = await storage.model_versions.list_versions(SIZER)
    assert v.status is ModelStatus.RETIRED
    await rig.lane.promote(v, "qt models promote")
    note = await rig.sizing.decide(symbol="X", decision_ms=T0_MS, entry=ENTRY, policy=Policy())
    assert (note.method, note.multiplier) == ("fixed", 1.0)
    assert "did not pass its gate" in rig.sizing.status_line()


async def test_a_champion_trained_on_another_account_is_refused(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path)
    rig.trainer.plan = [dataclasses.replace(policy(True, bias=3), env={"idle_cap_days": 3.0})]
    await rig.run()
    [v] = await storage.model_versions.list_versions(SIZER)
    await rig.lane.promote(v, "qt models promote")
    source = rig.sizing.source
    assert isinstance(source, RefusedSizing) and source.reason is FallbackReason.SPEC_MISMATCH
    note = await rig.sizing.decide(symbol="X", decision_ms=T0_MS, entry=ENTRY, policy=Policy())
    assert (note.method, note.multiplier, note.fallback) == ("fixed", 1.0, "spec_mismatch")


async def test_rollback_passes_over_a_tampered_earlier_champion_to_fixed(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=1)
    first = await shadowing(rig, bias=2)
    await rig.trade(0.01)
    await rig.lane.check()
    rig.advance(200 * HOUR)
    second = await shadowing(rig, bias=3)
    await rig.trade(0.01)
    assert f"{second} promoted" in await rig.lane.check()
    earlier = await storage.model_versions.get(first)
    assert earlier is not None
    tamper(rig, earlier.artifact_path)
    said = await rig.lane.rollback("worse", "qt models rollback")
    assert "the fallback sizes" in said
    assert isinstance(rig.sizing.source, RefusedSizing)
    assert rig.sizing.source.reason is FallbackReason.NO_CHAMPION
    now = await storage.model_versions.get(first)
    assert now is not None and now.status is not ModelStatus.CHAMPION


async def test_a_promotion_while_a_run_is_under_way_keeps_both_honest(
    storage: Storage, tmp_path: Path
) -> None:
    """The judged shadow is promoted while a training run computes; the run's shadow then
    registers: the champion is not retired as "replaced", the new shadow starts empty."""
    rig = Lane(storage, tmp_path, shadow_trades=2)
    first = await shadowing(rig, bias=3)
    release = asyncio.Event()
    train = rig.trainer

    async def slow() -> TrainedSizer:
        await release.wait()
        return await train()

    rig.lane._s = dataclasses.replace(rig.lane._s, train=slow)
    rig.trainer.plan = [policy(True, bias=1)]
    rig.lane.request("alice")
    await rig.trade(0.01)
    await rig.trade(0.01)
    said = await rig.lane.check()
    assert f"{first} promoted" in said and "training started" not in said
    release.set()
    await rig.lane.wait()
    champion = await storage.model_versions.get(first)
    assert champion is not None and champion.status is ModelStatus.CHAMPION
    assert rig.sizing.shadow_id not in ("", first) and rig.sizing.shadow_record == []
    assert isinstance(rig.sizing.source, PolicySizing)


async def test_prune_keeps_the_serving_champion_the_shadow_and_a_run_s_staging(
    storage: Storage, tmp_path: Path
) -> None:
    rig = Lane(storage, tmp_path, shadow_trades=1)
    champion = await shadowing(rig, bias=2)
    await rig.trade(0.01)
    await rig.lane.check()
    for _ in range(3):  # three gate-failed versions: retired, prunable beyond keep=1
        rig.advance(200 * HOUR)
        rig.trainer.plan = [policy(False)]
        await rig.run()
    rig.advance(200 * HOUR)
    shadow = await shadowing(rig, bias=1)
    staging = rig.data_dir / "models" / SIZER / ".train-deadbeef"
    staging.mkdir()
    versions = await storage.model_versions.list_versions()
    plan = retention_plan(versions, keep_candidates=1)
    gone = [v for v in versions if v.id in plan.prune]
    assert len(gone) == 2 and {champion, shadow}.isdisjoint(v.id for v in gone)
    await prune_versions(storage.model_versions, storage.predictions, rig.data_dir, gone)
    for vid in (champion, shadow):
        kept = await storage.model_versions.get(vid)
        assert kept is not None and (rig.data_dir / kept.artifact_path / "policy.pt").exists()
    assert staging.exists()
    assert isinstance(rig.sizing.source, PolicySizing) and rig.sizing.shadow_id == shadow


async def test_the_ensemble_s_adoption_never_makes_an_ungated_sizer_candidate_champion(
    storage: Storage, tmp_path: Path
) -> None:
    """A run stopped between its row and its gate's status leaves a CANDIDATE: the manager's
    adoption (a member's only candidate becomes its champion) must not size with it."""
    rig = Lane(storage, tmp_path)
    folder = tmp_path / "left-by-a-stop"
    save_policy(policy(None, bias=3), folder)
    version, _ = await register_sizer(
        storage.model_versions, rig.data_dir, folder, created_ms=T0_MS, train_start_ms=0,
        status=ModelStatus.CANDIDATE, reason="registered",
    )  # fmt: skip
    manager = LearningManager(
        dataclasses.replace(quiet_sources(storage, rig.data_dir), sizer=rig.lane),
        LearningSettings(),
        bus=rig.bus,
        clock=rig.clock,
    )
    await manager.start()
    await manager._adopt_registry()
    kept = await storage.model_versions.get(version.id)
    assert kept is not None and kept.status is ModelStatus.CANDIDATE
    assert isinstance(rig.sizing.source, RefusedSizing)
    assert [v.id for v in await manager.prune_plan()] == []  # kept among keep_candidates
    await manager.stop()


async def test_a_process_not_learning_the_sizer_says_how_to_when_asked_to_roll_it_back(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: ``qt models rollback rl_sizer`` from a shell without QT__SIZING__METHOD=rl said
    only "unknown member 'rl_sizer'" beside a ``qt models list`` full of rl_sizer rows."""
    from core.errors import DataError

    rig = Lane(storage, tmp_path)
    manager = LearningManager(
        quiet_sources(storage, tmp_path), LearningSettings(), bus=rig.bus, clock=rig.clock
    )
    said = r"unknown member 'rl_sizer'.*QT__SIZING__METHOD=rl"
    with pytest.raises(DataError, match=said):
        await manager.rollback(SIZER, "worse", "qt models rollback")
    with pytest.raises(DataError, match=said):
        manager.request("alice", [SIZER])


async def test_status_says_the_sizer_trains_and_names_its_shadow(
    storage: Storage, tmp_path: Path
) -> None:
    """Was: /status said "learning: idle" through a sizer run (up to the hour's timeout) and
    named the ensemble's shadows only."""
    rig = Lane(storage, tmp_path)
    release = asyncio.Event()
    train = rig.trainer

    async def slow() -> TrainedSizer:
        await release.wait()
        return await train()

    rig.lane._s = dataclasses.replace(rig.lane._s, train=slow)
    manager = LearningManager(
        dataclasses.replace(quiet_sources(storage, rig.data_dir), sizer=rig.lane),
        LearningSettings(),
        bus=rig.bus,
        clock=rig.clock,
    )
    rig.trainer.plan = [policy(True, bias=3)]
    manager.request("alice", [SIZER])
    await asyncio.sleep(0)
    assert f"{SIZER} training run under way" in manager.status_line(True)
    release.set()
    await rig.lane.wait()
    line = manager.status_line(True)
    assert "under way" not in line and f"in shadow: {rig.sizing.shadow_id}" in line
    await manager.stop()


async def test_the_sizer_s_rows_leave_the_ensemble_s_schedule_and_retention_alone(
    storage: Storage, tmp_path: Path
) -> None:
    """An rl_sizer version trained just now neither postpones the ensemble's due retrain nor
    takes a place among its kept candidates."""
    from storage.memory import MemoryStorage

    rig = Lane(storage, tmp_path)

    def manager(on: Storage) -> LearningManager:
        sources = dataclasses.replace(quiet_sources(on, rig.data_dir), sizer=rig.lane)
        return LearningManager(sources, LearningSettings(), bus=rig.bus, clock=rig.clock)

    for _ in range(3):
        rig.advance(200 * HOUR)
        rig.trainer.plan = [policy(False)]
        await rig.run()  # the newest: trained just now
    without = await manager(MemoryStorage())._due_now()
    assert await manager(storage)._due_now() == without
    plan = retention_plan(await storage.model_versions.list_versions(), keep_candidates=1)
    assert len(plan.prune) == 2  # the sizer's own oldest, nothing of another member


async def test_a_timed_out_run_kills_its_whole_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk-forward's workers are the child's children: a kill of the child alone would
    leave them computing."""
    from bot.sizer_training import LOG, train_sizer
    from core.clock import SimClock

    pidfile = tmp_path / "worker.pid"
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\nsleep 30 &\necho $! > {pidfile}\ncat > /dev/null\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    settings = clean_settings(tmp_path, monkeypatch)
    settings = settings.model_copy(
        update={"learning": settings.learning.model_copy(update={"timeout_minutes": 0.01})}
    )
    with pytest.raises(DependencyError, match="timed out") as failed:
        await train_sizer(settings, data_dir=tmp_path / "d", clock=SimClock(T0_MS))
    assert LOG in str(failed.value)
    worker = int(pidfile.read_text())
    for _ in range(50):
        if not alive(worker):
            break
        await asyncio.sleep(0.05)
    assert not alive(worker)


async def test_failed_runs_keep_only_the_newest_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: every failed run (every 6 h while there are no candles, a kill) left its staging
    folder for ever in the models folder."""
    from bot.sizer_training import KEEP_FAILED, train_sizer
    from core.clock import SimClock
    from core.errors import DataError

    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\ncat > /dev/null\necho 'no stored candles'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    settings = clean_settings(tmp_path, monkeypatch)
    for _ in range(KEEP_FAILED + 2):
        with pytest.raises(DataError, match="no stored candles"):
            await train_sizer(settings, data_dir=tmp_path / "d", clock=SimClock(T0_MS))
    left = list((tmp_path / "d" / "models" / SIZER).glob(".train-*"))
    assert len(left) == KEEP_FAILED


def test_qt_models_lists_shows_promotes_and_prunes_rl_sizer_rows(cli: Cli, tmp_path: Path) -> None:
    """``qt models`` on the sizer's rows, end to end: listed and verified, shown with its
    gate's figures (not an empty log-loss), promoted from the command line, kept by prune."""
    import asyncio as aio

    from storage import open_storage

    async def registry() -> tuple[str, str]:
        s = open_storage(f"sqlite+aiosqlite:///{cli.db_file}")
        await s.start()
        try:
            ids = []
            for i, (passed, status) in enumerate(
                ((True, ModelStatus.SHADOW), (False, ModelStatus.RETIRED))
            ):
                folder = tmp_path / f"p{i}"
                save_policy(policy(passed, bias=3), folder)
                v, _ = await register_sizer(
                    s.model_versions, cli.data_dir, folder, created_ms=T0_MS + i * HOUR,
                    train_start_ms=0, status=status, reason="gate: x",
                )  # fmt: skip
                ids.append(v.id)
            return ids[0], ids[1]
        finally:
            await s.stop()

    cli.data_dir.mkdir(parents=True)
    shadow, retired = aio.run(registry())
    out = flat(cli("models", "list").stdout)
    assert out.count("verified") == 2 and "SHADOW" in out and "RETIRED" in out
    shown = cli("models", "show", shadow)
    assert shown.exit_code == 0, shown.output
    out = flat(shown.stdout)
    assert "gate passed" in out and "Sharpe gain +0.50" in out and "log-loss" not in out
    assert "gate not passed" in flat(cli("models", "show", retired).stdout)
    rl = {"QT__SIZING__METHOD": "rl"}
    promoted = cli("models", "promote", shadow, **rl)
    assert promoted.exit_code == 0, promoted.output
    assert f"{shadow} is rl_sizer's champion" in flat(promoted.stdout)
    pruned = cli("models", "prune", **rl)
    assert pruned.exit_code == 0 and "nothing to prune" in flat(pruned.stdout)
    out = flat(cli("models", "list").stdout)
    assert "CHAMPION" in out and out.count("verified") == 2


# --- helpers ---------------------------------------------------------------------------------


def rig_equity() -> Decimal:
    return Decimal(10_000)


async def close(rig: Lane, trade_id: str, unit: float, multiplier: float) -> None:
    pnl = rig_equity() * Decimal(str(unit)) * Decimal(str(multiplier))
    await rig.bus.publish(dataclasses.replace(closed(trade_id, str(pnl)), ts_ms=rig.clock.now_ms()))


def clean_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    return load_settings(app={"data_dir": str(tmp_path / "d")})


def quiet_sources(storage: Storage, data_dir: Path) -> LearningSources:
    """The manager's sources with one ensemble member and nothing to record or train."""

    async def nothing(*_a: object) -> list[tuple[str, str, str, int, float]]:
        return []

    async def no_outcomes(_since: int) -> dict[tuple[str, int], int]:
        return {}

    async def not_served(_loaded: object) -> bool:
        return False

    async def no_training(*_a: object) -> object:
        raise AssertionError("the ensemble's members are not trained here")

    return LearningSources(
        members=("xgb",),
        versions=storage.model_versions,
        predictions=storage.predictions,
        data_dir=data_dir,
        train=no_training,  # type: ignore[arg-type]
        history=nothing,  # type: ignore[arg-type]
        served=nothing,  # type: ignore[arg-type]
        shadowed=nothing,  # type: ignore[arg-type]
        outcomes=no_outcomes,
        new_candles=lambda _since: {},
        serve=not_served,
        serving=dict,
    )


def alive(pid: int) -> bool:
    """Return whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
