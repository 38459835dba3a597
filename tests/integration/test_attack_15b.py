"""Adversarial tests of the RL sizing gate, its live use and the persisted sizing account.

Each test reproduces an attack with the project's own classes on hand-made inputs; a test
that fails means the attack found a bug (see the report in the commit for what was fixed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.sizing import sizing_from
from bot.sizing_report import write_policy
from core.clock import SimClock
from core.domain.events import TradeClosed
from core.domain.market import Candle
from core.errors import ArtifactError, DataError, StorageUnavailable
from core.ml.artifacts import MANIFEST, sha256_hex
from core.ml.rl.book import SizingAccount
from core.ml.rl.env import SizingEnvConfig
from core.ml.rl.gate import LIVE_METHOD, SizingGate, best_simple, sizing_gate
from core.ml.rl.policy import SPEC_FILE, SizingPolicy, load_policy, save_policy, train_policy
from core.ml.rl.scorecard import SIMPLE_METHODS, MethodScore
from core.ports import StateKey
from core.services.bus import EventBus
from core.services.sizing_service import SizingService
from core.services.sizing_sources import FallbackReason, RefusedSizing
from tests.unit.services import engine_harness
from tests.unit.services.engine_harness import (
    HOUR_MS,
    SYMBOL,
    T0_MS,
    Harness,
    ScriptedProvider,
    at,
)
from tests.unit.services.test_engine_sizing import (
    FLAT,
    TINY,
    live_candidates,
    loose,
    rl_settings,
)
from tests.unit.services.test_sizing_service import Scripted

NOW = 1_700_000_000_000


# --- the gate ---------------------------------------------------------------------------------


def score(method: str, sharpe: float | None, psr: float | None = None) -> MethodScore:
    return MethodScore(
        method=method,
        control=False,
        final_equity=1.0,
        cagr_pct=None,
        max_drawdown_pct=0.0,
        calmar=None,
        sharpe=sharpe,
        daily_sharpe=None if sharpe is None else sharpe / math.sqrt(365),
        dsr=None,
        above_baseline=psr,
        edge_pct=None,
        turnover=0.0,
        mean_multiplier=1.0,
        trades=100,
    )


def simple_scores(fixed: float | None, vol: float | None, kelly: float | None) -> list[MethodScore]:
    return [score("fixed", fixed), score("vol_target", vol), score("kelly", kelly)]


def test_attack_gate_nan_psr_never_passes() -> None:
    """A PSR that is NaN (a degenerate curve) is not evidence: the gate must fail closed."""
    vs_best = [score("kelly", 1.0), score("rl", 3.0, psr=math.nan)]
    verdict = sizing_gate(vs_best, "kelly", control_beat_fixed=False, margin=0.1)
    assert not verdict.passed


def test_attack_gate_nan_rl_sharpe_never_passes() -> None:
    vs_best = [score("kelly", 1.0), score("rl", math.nan, psr=0.99)]
    verdict = sizing_gate(vs_best, "kelly", control_beat_fixed=False, margin=0.1)
    assert not verdict.passed
    SizingGate.from_json(json.loads(json.dumps(verdict.to_json(), allow_nan=False)))


def test_attack_best_simple_ignores_a_nan_sharpe() -> None:
    """A NaN Sharpe compares false with everything: max() kept fixed although kelly had 1.0."""
    assert best_simple(simple_scores(math.nan, 0.5, 1.0)) == "kelly"
    assert best_simple(simple_scores(0.2, math.nan, 1.0)) == "kelly"


def test_attack_best_simple_all_flat_and_ties_go_to_the_simpler() -> None:
    assert best_simple(simple_scores(None, None, None)) == "fixed"
    assert best_simple(simple_scores(None, 0.0, None)) == "fixed"
    assert best_simple(simple_scores(-1.0, -2.0, -3.0)) == "fixed"
    assert best_simple(simple_scores(-1.0, None, -3.0)) == "vol_target"  # flat (0) beats a loss
    assert best_simple(simple_scores(1.0, 2.0, 2.0)) == "vol_target"


def test_attack_gate_edges() -> None:
    kelly = score("kelly", 1.0)
    # exactly the margin: "at least margin" passes
    assert sizing_gate(
        [kelly, score("rl", 1.5, 0.99)], "kelly", control_beat_fixed=False, margin=0.5
    ).passed
    # just under the margin fails
    assert not sizing_gate(
        [kelly, score("rl", 1.49, 0.99)], "kelly", control_beat_fixed=False, margin=0.5
    ).passed
    # rl identical to the best: PSR of a copy is ~0.5
    assert not sizing_gate(
        [kelly, score("rl", 1.0, 0.5)], "kelly", control_beat_fixed=False, margin=0
    ).passed
    # PSR exactly BEYOND_NOISE is not beyond it
    assert not sizing_gate(
        [kelly, score("rl", 3.0, 0.95)], "kelly", control_beat_fixed=False, margin=0
    ).passed
    # the control beat fixed: nothing passes, however good rl looks
    bad = sizing_gate([kelly, score("rl", 9.0, 1.0)], "kelly", control_beat_fixed=True, margin=0)
    assert not bad.passed and "control" in bad.reason
    # a flat rl curve: no gain, fails
    assert not sizing_gate(
        [kelly, score("rl", None, 0.99)], "kelly", control_beat_fixed=False, margin=0
    ).passed
    # a flat best simple method (Sharpe 0) and rl 0.05 with a 0.1 margin: fails
    flat = score("fixed", None)
    assert not sizing_gate(
        [flat, score("rl", 0.05, 0.99)], "fixed", control_beat_fixed=False, margin=0.1
    ).passed
    for margin in (math.nan, math.inf, -0.1):
        with pytest.raises(DataError):
            sizing_gate(
                [kelly, score("rl", 2.0, 0.99)], "kelly", control_beat_fixed=False, margin=margin
            )


GOOD = {
    "passed": False,
    "best_simple": "vol_target",
    "reason": "vol_target sizes: not beyond noise",
    "psr": 0.4,
    "sharpe_gain": -0.2,
    "margin": 0.1,
}


def test_attack_gate_from_json_types() -> None:
    assert SizingGate.from_json({**GOOD, "extra": 1}) == SizingGate.from_json(GOOD)  # ignored
    assert SizingGate.from_json({**GOOD, "psr": None, "sharpe_gain": None}).psr is None
    assert SizingGate.from_json({**GOOD, "margin": 0}).margin == 0.0  # an int is a number
    bads: tuple[Any, ...] = (
        {**GOOD, "passed": 1},
        {**GOOD, "passed": "true"},
        {**GOOD, "passed": None},
        {**GOOD, "psr": True},
        {**GOOD, "margin": False},
        {**GOOD, "margin": None},
        {**GOOD, "sharpe_gain": "0.5"},
        {**GOOD, "best_simple": "rl"},
        {**GOOD, "best_simple": "volatility"},  # the live name is not a comparison's
        {**GOOD, "best_simple": ["kelly"]},
        {**GOOD, "reason": None},
        {k: v for k, v in GOOD.items() if k != "margin"},
        [],
        None,
        "passed",
    )
    for bad in bads:
        with pytest.raises(DataError):
            SizingGate.from_json(bad)


@pytest.mark.parametrize(
    "figures",
    [
        {"psr": None, "sharpe_gain": None},  # never tested
        {"psr": 0.4, "sharpe_gain": 0.5},  # not beyond noise
        {"psr": 0.99, "sharpe_gain": 0.01},  # below its own margin
        {"psr": 1.7, "sharpe_gain": 0.5},  # not a probability
        {"psr": 0.99, "sharpe_gain": 0.5, "margin": -1.0},  # a margin sizing_gate refuses
    ],
)
def test_attack_gate_from_json_refuses_a_pass_its_figures_contradict(
    figures: dict[str, Any],
) -> None:
    """A verdict that says passed while its own figures say it could not have passed (a
    hand-edited policy.json re-sealed without QT__SIZING__POLICY_SHA256) must not load."""
    doc = {**GOOD, "passed": True, "best_simple": "kelly", "reason": "beat kelly", **figures}
    with pytest.raises(DataError):
        SizingGate.from_json(doc)


def test_attack_every_simple_method_maps_to_a_live_method() -> None:
    assert set(LIVE_METHOD) == set(SIMPLE_METHODS)


# --- the sealed policy and live sizing --------------------------------------------------------


def failed(best: str) -> SizingGate:
    return SizingGate(
        passed=False,
        best_simple=best,
        reason=f"{best} sizes: not beyond noise",
        psr=0.4,
        sharpe_gain=-0.1,
        margin=0.1,
    )


PASSED = SizingGate(
    passed=True, best_simple="kelly", reason="beat kelly", psr=0.99, sharpe_gain=0.5, margin=0.1
)


@pytest.fixture(scope="module")
def policy() -> SizingPolicy:
    return train_policy(live_candidates(200, seed=1), SizingEnvConfig(), TINY)


def test_attack_a_flipped_gate_is_refused_by_the_seal(tmp_path: Path, policy: SizingPolicy) -> None:
    folder = tmp_path / "p"
    sha = save_policy(dataclasses.replace(policy, gate=failed("kelly")), folder)
    spec = json.loads((folder / SPEC_FILE).read_text())
    assert spec["gate"]["passed"] is False
    spec["gate"]["passed"] = True
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    with pytest.raises(ArtifactError):
        load_policy(folder)  # the manifest's sha256 of policy.json no longer matches
    with pytest.raises(ArtifactError):
        load_policy(folder, expected_sha256=sha)

    # re-sealed by hand (the manifest rewritten to match): only the pinned sha256 refuses it
    manifest = json.loads((folder / MANIFEST).read_text())
    raw = (folder / SPEC_FILE).read_bytes()
    manifest["files"][SPEC_FILE] = {**manifest["files"][SPEC_FILE], "sha256": sha256_hex(raw)}
    if "size" in manifest["files"][SPEC_FILE]:
        manifest["files"][SPEC_FILE]["size"] = len(raw)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with pytest.raises(ArtifactError):
        load_policy(folder, expected_sha256=sha)


@pytest.mark.parametrize(("best", "live"), sorted(LIVE_METHOD.items()))
def test_attack_a_failed_gate_sizes_by_the_method_it_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy: SizingPolicy, best: str, live: str
) -> None:
    folder = tmp_path / "p"
    sha = save_policy(dataclasses.replace(policy, gate=failed(best)), folder)
    service = sizing_from(
        rl_settings(monkeypatch, tmp_path, folder, sha), bus=EventBus(), clock=SimClock(NOW)
    )
    assert service.method == live
    assert service.source.refusal(NOW) is None
    assert service.status_line().startswith(f"sizing: {live} (QT__SIZING__METHOD=rl, but its")


def test_attack_a_gate_naming_an_unknown_method_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy: SizingPolicy
) -> None:
    folder = tmp_path / "p"
    bogus = dataclasses.replace(failed("kelly"), best_simple="martingale")
    sha = save_policy(dataclasses.replace(policy, gate=bogus), folder)
    service = sizing_from(
        rl_settings(monkeypatch, tmp_path, folder, sha), bus=EventBus(), clock=SimClock(NOW)
    )
    assert isinstance(service.source, RefusedSizing)
    refused = service.source.refusal(NOW)
    assert refused is not None and refused[0] is FallbackReason.ARTIFACT


def test_attack_a_passed_gate_on_a_stale_policy_sizes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy: SizingPolicy
) -> None:
    folder = tmp_path / "p"
    old = dataclasses.replace(policy, gate=PASSED, trained_until_ms=NOW - 40 * 24 * HOUR_MS)
    sha = save_policy(old, folder)
    settings = rl_settings(monkeypatch, tmp_path, folder, sha)  # 30 days at most
    service = sizing_from(settings, bus=EventBus(), clock=SimClock(NOW))
    refused = service.source.refusal(NOW)
    assert refused is not None and refused[0] is FallbackReason.STALE
    assert "every entry sizes fixed now (stale" in service.status_line()


def test_attack_write_policy_twice_and_over_leftovers(tmp_path: Path, policy: SizingPolicy) -> None:
    cmp: Any = type("Cmp", (), {})()
    cmp.policy = dataclasses.replace(policy, gate=failed("fixed"))
    dest, sha1 = write_policy(cmp, tmp_path, "run")
    cmp.policy = dataclasses.replace(policy, gate=PASSED)
    # leftovers of a crashed run of this pid and of another one
    import os

    for kind in ("new", "old"):
        stale = tmp_path / f"{dest.name}.{kind}-{os.getpid()}"
        stale.mkdir()
        (stale / "junk").write_text("x")
    other = tmp_path / f"{dest.name}.new-1"  # a crashed run of another process: left alone
    other.mkdir()
    dest2, sha2 = write_policy(cmp, tmp_path, "run")
    assert dest2 == dest and sha2 != sha1
    assert load_policy(dest, expected_sha256=sha2).gate == PASSED
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dest.name, other.name])
    # a third run over a sealed one of the same content: the same sha256, still loadable
    dest3, sha3 = write_policy(cmp, tmp_path, "run")
    assert sha3 == sha2 and load_policy(dest3, expected_sha256=sha2).gate == PASSED


# --- the persisted account: SizingService.dump / load -----------------------------------------


def service(recent: int = 20) -> SizingService:
    return SizingService(
        bus=EventBus(), clock=SimClock(NOW), account=SizingAccount(recent_trades=recent)
    )


def closed(trade_id: str, pnl: str) -> TradeClosed:
    return TradeClosed(
        ts_ms=NOW,
        trade_id=trade_id,
        symbol=SYMBOL,
        side="long",
        opened_ms=NOW - HOUR_MS,
        closed_ms=NOW,
        amount=Decimal(1),
        entry_price=Decimal(100),
        exit_price=Decimal(101),
        fees=Decimal(0),
        pnl=Decimal(pnl),
        pnl_pct=0.0,
        exit_reason="TP",
        provider="scripted",
        exit_profile="default",
        explanation=None,
    )


async def test_attack_dump_load_round_trip_and_a_smaller_window() -> None:
    a = service(recent=5)
    for i in range(5):
        a.opened(f"t{i}", NOW + i, _note(1.0), Decimal(1000))
        await a._on_closed(closed(f"t{i}", str(i - 2)))
    a.opened("open", NOW + 9, _note(1.25), Decimal(990))
    b = service(recent=2)
    b.load(a.dump(), {"open"})
    assert b.account.recent_outcomes == a.account.recent_outcomes[-2:]
    assert b.account.exposure == 1.25
    c = service(recent=5)
    c.load(a.dump(), {"open"})
    assert c.dump() == a.dump()


def _note(m: float) -> Any:
    from core.domain.explanations import SizingNote

    return SizingNote(method="scripted", multiplier=m)


async def test_attack_a_dump_with_an_open_trade_not_in_sized_on_leaks_no_exposure() -> None:
    """The account lists a trade open that sized_on does not know and the engine does not
    hold: it must not count as exposure for ever."""
    doc = {
        "account": {
            "open": [["ghost", 1.5]],
            "recent": [],
            "equity": 1.0,
            "peak": 1.0,
            "last_trade_ms": NOW,
        },
        "sized_on": {},
    }
    s = service()
    s.load(json.dumps(doc), set())
    assert s.account.exposure == 0.0


@pytest.mark.parametrize("equity", ["NaN", "Infinity", "-1000", "0", "sNaN"])
async def test_attack_a_dump_with_an_unusable_equity_starts_empty_not_poisoned(
    equity: str, caplog: pytest.LogCaptureFixture
) -> None:
    """sized_on's equity divides the P&L at the close: NaN/inf/0/negative must not load
    (NaN poisons the account, whose next dump then raises in Engine._save)."""
    doc = {
        "account": {
            "open": [["t1", 1.0]],
            "recent": [0.01],
            "equity": 1.01,
            "peak": 1.01,
            "last_trade_ms": NOW,
        },
        "sized_on": {"t1": equity},
    }
    s = service()
    with caplog.at_level(logging.ERROR):
        s.load(json.dumps(doc), {"t1"})
    await s._on_closed(closed("t1", "5"))
    assert all(math.isfinite(v) for v in s.account.features(NOW))
    s.dump()  # still serialisable
    # unreadable: it starts empty, with an error in the log (no outcome booked on it)
    assert s.account.recent_outcomes == () and s.account.exposure == 0.0
    assert any("unreadable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "null",
        "[]",
        '{"account": {}, "sized_on": {}}',
        '{"account": null, "sized_on": {"t1": "1000"}}',
        '{"sized_on": {"t1": "x"}, "account": {"open": [["t1", 1.0]], "recent": [], '
        '"equity": 1.0, "peak": 1.0, "last_trade_ms": 1}}',
        '{"sized_on": {"t1": "1000"}, "account": {"open": [["t1", 1.0, 3]], "recent": [], '
        '"equity": 1.0, "peak": 1.0, "last_trade_ms": 1}}',
        '{"sized_on": {"t1": "1000"}, "account": {"open": [["t1", 1.0]], "recent": [NaN], '
        '"equity": 1.0, "peak": 1.0, "last_trade_ms": 1}}',
        '{"sized_on": {"t1": "1000"}, "account": {"open": [["t1", 1.0]], "recent": [], '
        '"equity": 2.0, "peak": 1.0, "last_trade_ms": 1}}',
        '{"sized_on": {"t1": "1000"}, "account": {"open": [["t1", 1.0]], "recent": [], '
        '"equity": 1.0, "peak": 1.0, "last_trade_ms": 1.5}}',
    ],
)
async def test_attack_a_corrupt_dump_starts_empty(text: str) -> None:
    s = service()
    s.load(text, {"t1"})
    assert s.account.exposure == 0.0 and s.account.recent_outcomes == ()
    assert s.account.equity == 1.0
    s.dump()


# --- the persisted account through the engine's restarts --------------------------------------

EXIT_AT = 3  # the exit signal's candle; its market exit fills on the next
LAST = 5
M = 1.25


def scenario() -> ScriptedProvider:
    return ScriptedProvider(entries={at(0): 1}, exit_long={at(EXIT_AT)})


def candle(i: int) -> Candle:
    o, h, low, c = FLAT
    return Candle(ts_ms=at(i), open=o, high=h, low=low, close=c, volume=1.0)


def account_of(h: Harness) -> dict[str, Any]:
    return h.engine.sizing.account.to_json()


async def uninterrupted(settings: Any) -> dict[str, Any]:
    h = await Harness(settings, scenario(), sizing=Scripted([M]), persist=True).start()
    for i in range(LAST + 1):
        await h.candle(i, *FLAT)
    assert h.engine.trades == {} and len(h.of(TradeClosed)) == 1
    return account_of(h)


async def restarted(h: Harness, monkeypatch: pytest.MonkeyPatch, *, start: bool = True) -> Harness:
    """A new process on ``h``'s storage (venue book, trades, state), its clock at h's."""
    monkeypatch.setattr(engine_harness, "MemoryStorage", lambda: h.storage)
    again = Harness(h.settings, scenario(), persist=True)
    again.clock.advance_to(h.clock.now_ms())
    await again.start()
    if start:
        await again.engine.start()
    return again


@pytest.mark.parametrize("crash_after", range(LAST))
async def test_attack_a_restart_at_any_step_of_a_trade_ends_with_the_same_account(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, crash_after: int
) -> None:
    """Restart after each candle of one trade's life (entry sent, filled, held, exit sent,
    closed): the account must end as the uninterrupted run's. After candle 0 the entry
    was sent but the stored account was written before the account heard of it."""
    settings = loose(monkeypatch, tmp_path)
    expected = await uninterrupted(settings)
    h = await Harness(settings, scenario(), sizing=Scripted([M]), persist=True).start()
    for i in range(crash_after + 1):
        await h.candle(i, *FLAT)
    again = await restarted(h, monkeypatch)
    for i in range(crash_after + 1, LAST + 1):
        await again.candle(i, *FLAT)
    assert again.engine.trades == {}
    assert account_of(again) == expected
    assert len(expected["recent"]) == 1 and expected["equity"] != 1.0


async def test_attack_a_trade_that_closed_while_away_is_booked_once_on_its_equity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = loose(monkeypatch, tmp_path)
    expected = await uninterrupted(settings)
    h = await Harness(settings, scenario(), sizing=Scripted([M]), persist=True).start()
    for i in range(EXIT_AT + 1):  # the market exit is sent on candle EXIT_AT
        await h.candle(i, *FLAT)
    again = await restarted(h, monkeypatch, start=False)
    # the venue fills the exit while no engine listens (the new one knows no trade yet)
    again.clock.advance_to(at(EXIT_AT + 1) + HOUR_MS)
    await again.paper.on_candle(SYMBOL, candle(EXIT_AT + 1))
    assert again.of(TradeClosed) == []
    await again.engine.start()  # sync_with_venue finds the fill, after the account's load
    assert len(again.of(TradeClosed)) == 1 and again.engine.trades == {}
    assert account_of(again) == expected
    # and it stays booked once across a further restart
    third = await restarted(again, monkeypatch)
    assert account_of(third) == expected


class FailingState:
    """The engine's state store: once armed, one write of the trades or the account goes
    through and the next raises StorageUnavailable (a database lost between the two)."""

    KEYS = (StateKey.ENGINE_TRADES, StateKey.SIZING_ACCOUNT)

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.armed = False
        self.passed = 0
        self.failed = 0

    async def get(self, key: StateKey) -> str | None:
        value: str | None = await self.inner.get(key)
        return value

    async def set(self, key: StateKey, value: str) -> None:
        if self.armed and key in self.KEYS:
            if self.passed == 1:
                self.armed = False
                self.failed += 1
                raise StorageUnavailable(f"{key}: the database is gone")
            self.passed += 1
        await self.inner.set(key, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_attack_the_database_lost_between_the_close_writes_loses_no_outcome(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """At the close one of the two writes lands and the other fails, and the process
    restarts before the next save: the trade's outcome must be booked once. Written trades
    first, account second, the stored account still holds the trade open while the stored
    trades no longer do: the restart drops it and the outcome is lost."""
    settings = loose(monkeypatch, tmp_path)
    expected = await uninterrupted(settings)
    h = await Harness(settings, scenario(), sizing=Scripted([M]), persist=True).start()
    for i in range(EXIT_AT + 1):
        await h.candle(i, *FLAT)
    state = FailingState(h.engine._state)
    h.engine._state = state
    h.bus.subscribe(TradeClosed.topic, _arm(state), name="test.arm")  # after sizing's handler
    h.clock.advance_to(at(EXIT_AT + 1) + HOUR_MS)
    await h.market.process(SYMBOL, candle(EXIT_AT + 1))  # the exit fills, the trade closes
    assert state.failed == 1 and len(h.of(TradeClosed)) == 1
    again = await restarted(h, monkeypatch)  # killed before any further save
    for i in range(EXIT_AT + 2, LAST + 1):
        await again.candle(i, *FLAT)
    assert again.engine.trades == {}
    assert account_of(again) == expected


def _arm(state: FailingState) -> Any:
    async def arm(event: object) -> None:
        state.armed = True

    return arm


async def test_attack_storage_failure_then_recovery_saves_the_account_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The account write fails at the close; the next save (here: stop) writes it."""
    settings = loose(monkeypatch, tmp_path)
    expected = await uninterrupted(settings)
    h = await Harness(settings, scenario(), sizing=Scripted([M]), persist=True).start()
    for i in range(EXIT_AT + 1):
        await h.candle(i, *FLAT)
    state = FailingState(h.engine._state)
    h.engine._state = state
    h.bus.subscribe(TradeClosed.topic, _arm(state), name="test.arm")
    h.clock.advance_to(at(EXIT_AT + 1) + HOUR_MS)
    await h.market.process(SYMBOL, candle(EXIT_AT + 1))
    assert state.failed == 1
    await h.engine.stop()  # the database is back
    stored = await h.storage.state.get(StateKey.SIZING_ACCOUNT)
    assert stored is not None and json.loads(stored)["account"] == expected
    again = await restarted(h, monkeypatch)
    assert account_of(again) == expected


async def test_attack_a_reopened_trade_absent_from_the_dump_is_not_counted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The stored account predates the trade (an old dump): the restart keeps its record and
    does not invent an exposure or an outcome for a trade it cannot book."""
    settings = loose(monkeypatch, tmp_path)
    h = await Harness(settings, scenario(), sizing=Scripted([M]), persist=True).start()
    old = json.dumps(
        {
            "account": {
                "open": [],
                "recent": [0.02],
                "equity": 1.02,
                "peak": 1.02,
                "last_trade_ms": T0_MS - HOUR_MS,
            },
            "sized_on": {},
        }
    )
    for i in range(2):
        await h.candle(i, *FLAT)
    await h.storage.state.set(StateKey.SIZING_ACCOUNT, old)
    again = await restarted(h, monkeypatch)
    assert again.engine.sizing.account.exposure == 0.0
    for i in range(2, LAST + 1):
        await again.candle(i, *FLAT)
    assert again.engine.trades == {}
    assert again.engine.sizing.account.recent_outcomes == (0.02,)
    assert again.bus.handler_failures == 0


async def test_attack_a_crash_right_after_the_entry_is_sent_keeps_its_sizing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The write-ahead save stores the trade before its order goes out, so that a crash
    right after the send leaves nothing the engine does not know. The account must be in
    that same save: written before the account heard of the entry, a process killed during
    the send restarts with the trade but not its size (no exposure, its outcome never
    booked)."""
    settings = loose(monkeypatch, tmp_path)
    expected = await uninterrupted(settings)
    h = await Harness(settings, scenario(), sizing=Scripted([M]), persist=True).start()
    inner = h.storage.state
    write_ahead: dict[StateKey, str] = {}
    set_ = inner.set

    async def spy(key: StateKey, value: str) -> None:
        if key is StateKey.ENGINE_TRADES and '"trade_id"' in value and not write_ahead:
            write_ahead[key] = value
        elif key is StateKey.SIZING_ACCOUNT and write_ahead and len(write_ahead) == 1:
            write_ahead[key] = value
        await set_(key, value)

    monkeypatch.setattr(inner, "set", spy)
    await h.candle(0, *FLAT)  # the entry: write-ahead save, then the order is sent
    assert h.engine.sizing.account.exposure == M
    # killed during the send: the storage holds what the write-ahead save wrote
    for key in (StateKey.ENGINE_TRADES, StateKey.SIZING_ACCOUNT):
        if key in write_ahead:
            await set_(key, write_ahead[key])
    again = await restarted(h, monkeypatch)
    assert set(again.engine.trades) == {SYMBOL}
    assert again.engine.sizing.account.exposure == M
    for i in range(1, LAST + 1):
        await again.candle(i, *FLAT)
    assert again.engine.trades == {}
    assert account_of(again) == expected
