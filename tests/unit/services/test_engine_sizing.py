"""The engine sizes each entry by the configured method's multiplier of the fixed-fractional
risk size, before the caps and the risk gate: a larger multiplier never gets past the
position cap, the open-position limit or PRESERVATION's and EMERGENCY's caps, a failing
method sizes fixed with one event, and the trade records how it was sized."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from bot.trading import policy_from
from core.brains.ceo import MODE_SETTINGS
from core.brains.regime import Regime
from core.brains.sizing import VOL_WINDOW, daily_vol_pct
from core.config import Settings, load_settings
from core.domain.enums import Mode, TradingState
from core.domain.events import EntryExplained, OrderDenied, SizingFallback
from core.domain.explanations import SizingNote
from core.domain.policy import Policy, apply_levers
from core.ml.rl.book import SizingAccount
from core.ml.rl.candidates import Candidates
from core.ml.rl.env import SizingEnvConfig
from core.ml.rl.gate import SizingGate
from core.ml.rl.observation import build_observation, entry_features
from core.ml.rl.policy import (
    SPEC_FILE,
    PpoParams,
    SizingPolicy,
    load_policy,
    save_policy,
    train_policy,
)
from core.services.trade_codec import decode_trades, encode_trades
from tests.unit.services import engine_harness
from tests.unit.services.engine_harness import (
    HOUR_MS,
    SYMBOL,
    T0_MS,
    Harness,
    ScriptedProvider,
    at,
    clean_settings,
)
from tests.unit.services.test_engine_explanations import WHY, Explaining
from tests.unit.services.test_sizing_service import Scripted

FLAT = (100.0, 100.2, 99.8, 100.0)  # a candle that hits no take-profit and no stop


def loose(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Return settings where the risk budget binds, not a cap: 0.5 % risk, every cap far."""
    clean_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("QT__RISK__RISK_PER_TRADE", "0.005")
    monkeypatch.setenv("QT__RISK__MAX_POSITION_NOTIONAL", "1000000")
    monkeypatch.setenv("QT__RISK__MAX_CORRELATION", "1")  # a second symbol needs no history
    return load_settings()


WARM = 30  # candles of history before an RL entry: its realised volatility is measurable


async def warm(h: Harness, candles: int = WARM) -> None:
    """Feed ``candles`` quiet zig-zag candles (0.3 % moves, no signal) ending at 100."""
    for i in range(candles):
        up = (candles - i) % 2 == 0
        o, c = (100.0, 100.3) if up else (100.3, 100.0)
        await h.candle(i, o, 100.4, 99.9, c)


async def entered(h: Harness, *, symbol: str = SYMBOL, first: int = 0) -> Decimal:
    """Enter on candle ``first`` and fill on the next; return the amount held (0: none)."""
    await h.candle(first, *FLAT, symbol=symbol)
    await h.candle(first + 1, *FLAT, symbol=symbol)
    trade = h.engine.trades.get(symbol)
    return Decimal(0) if trade is None else trade.amount


def enter_at_0() -> ScriptedProvider:
    return ScriptedProvider(entries={at(0): 1})


async def amount_with(
    settings: Settings, answer: float, policy: Policy | None = None, *, warmed: int = 0
) -> Decimal:
    h = Harness(
        settings,
        ScriptedProvider(entries={at(warmed): 1}),
        sizing=Scripted([answer] * 3),
        policy=None if policy is None else (lambda: policy),
    )
    await h.start()
    await warm(h, warmed)
    return await entered(h, first=warmed)


async def two_entries(settings: Settings, sizing: Scripted | None = None) -> Harness:
    """Return the process after BTC entered on candle 0 and ETH on candle 2."""
    provider = ScriptedProvider(entries={at(0): 1, at(2): 1})
    h = await Harness(settings, provider, sizing=sizing).start()
    await entered(h)
    await entered(h, symbol="ETH/USDT", first=2)
    return h


def amounts(h: Harness) -> list[Decimal]:
    return [h.engine.trades[s].amount for s in (SYMBOL, "ETH/USDT")]


async def test_by_default_entries_size_fixed_fractional_and_say_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await Harness(clean_settings(monkeypatch, tmp_path), enter_at_0()).start()
    assert await entered(h) == 50  # the harness's round position, as before
    trade = h.engine.trades[SYMBOL]
    assert trade.sizing == SizingNote(method="fixed", multiplier=1.0)
    assert decode_trades(encode_trades(h.engine.trades)).trades[SYMBOL].sizing == trade.sizing
    assert h.of(SizingFallback) == []


async def test_the_multiplier_scales_the_risk_size(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = loose(monkeypatch, tmp_path)
    fixed = await amount_with(settings, 1.0)
    step = Decimal("0.001")  # rounding down to the amount step may take a step off
    assert fixed > 10
    assert abs(await amount_with(settings, 1.5) - fixed * Decimal("1.5")) <= 2 * step
    assert abs(await amount_with(settings, 0.5) - fixed * Decimal("0.5")) <= 2 * step
    assert await amount_with(settings, 0.0) == 0  # the method skips it: nothing is sent


async def test_a_multiplier_of_1_5_is_still_capped_by_the_position_cap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)  # a 5,001 USDT position cap binds
    h = await Harness(settings, enter_at_0(), sizing=Scripted([1.5])).start()
    assert await entered(h) == 50  # what fixed sizing holds: the cap, not 1.5 times it
    assert h.engine.trades[SYMBOL].sizing == SizingNote(method="scripted", multiplier=1.5)


async def test_a_multiplier_of_1_5_is_still_denied_past_the_open_position_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = loose(monkeypatch, tmp_path)
    one = dataclasses.replace(policy_from(settings), max_open_positions=1)
    provider = ScriptedProvider(entries={at(0): 1, at(2): 1})
    h = await Harness(settings, provider, sizing=Scripted([1.5] * 3), policy=lambda: one).start()
    assert await entered(h) > 0
    assert await entered(h, symbol="ETH/USDT", first=2) == 0  # the gate says no

    [denied] = h.of(OrderDenied)
    assert isinstance(denied, OrderDenied) and denied.symbol == "ETH/USDT"
    assert denied.reason == "max_open_positions"


@pytest.mark.parametrize(
    ("mode", "reason"), [(Mode.PRESERVATION, "reducing_only"), (Mode.EMERGENCY, "halted")]
)
async def test_preservation_and_emergency_take_no_entry_whatever_the_multiplier(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: Mode, reason: str
) -> None:
    settings = loose(monkeypatch, tmp_path)
    policy = apply_levers(policy_from(settings), MODE_SETTINGS[mode], version=2)
    h = await Harness(settings, enter_at_0(), sizing=Scripted([1.5]), policy=lambda: policy).start()
    assert await entered(h) == 0
    [denied] = h.of(OrderDenied)
    assert isinstance(denied, OrderDenied) and denied.reason == reason


@pytest.mark.parametrize(("mode", "scale"), [(Mode.PRESERVATION, "0.5"), (Mode.EMERGENCY, "0.25")])
async def test_the_modes_size_caps_hold_with_the_agent_even_if_entries_were_let_through(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: Mode, scale: str
) -> None:
    settings = loose(monkeypatch, tmp_path)
    fixed = await amount_with(settings, 1.0)
    # The mode's size lever without its trading state: only the size cap stands between the
    # agent's 1.5 and the order, and it holds at the mode's fraction of the fixed size.
    levers = dataclasses.replace(MODE_SETTINGS[mode], state=TradingState.ACTIVE)
    policy = apply_levers(policy_from(settings), levers, version=2)
    held = await amount_with(settings, 1.5, policy)
    assert abs(held - fixed * Decimal(scale)) <= Decimal("0.002")


async def test_a_failing_method_sizes_fixed_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = loose(monkeypatch, tmp_path)
    fixed = amounts(await two_entries(settings))
    h = await two_entries(settings, Scripted([RuntimeError("boom"), RuntimeError("boom")]))

    assert amounts(h) == fixed and min(fixed) > 0
    assert {h.engine.trades[s].sizing for s in (SYMBOL, "ETH/USDT")} == {
        SizingNote(method="fixed", multiplier=1.0, fallback="error")
    }
    [event] = h.of(SizingFallback)  # two failures, one event
    assert isinstance(event, SizingFallback) and event.reason == "error"
    assert "boom" in event.detail


async def test_an_explained_entry_carries_its_sizing_to_the_why_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = clean_settings(monkeypatch, tmp_path)
    h = await Harness(settings, Explaining(entries={at(0): 1}), sizing=Scripted([1.25])).start()
    await entered(h)
    [explained] = h.of(EntryExplained)
    assert isinstance(explained, EntryExplained)
    assert explained.explanation == WHY  # the provider's, unchanged
    assert explained.sizing == SizingNote(method="scripted", multiplier=1.25)
    assert explained.sizing.text() == "scripted x1.25"


# --- a real policy, trained here on synthetic candidates -----------------------------------------


def live_candidates(n: int, seed: int) -> Candidates:
    """Synthetic candidates with features the engine gives, closing before the harness's
    first candle: above confidence 0.5 a trade pays, below it loses."""
    rng = np.random.default_rng(seed)
    decision = T0_MS - (n + 30) * 6 * HOUR_MS + np.arange(n) * 6 * HOUR_MS
    confidence = rng.uniform(0, 1, n)
    return Candidates(
        decision_ms=decision,
        close_ms=decision + rng.integers(1, 12, n) * HOUR_MS,
        features=np.column_stack([confidence, rng.uniform(1, 4, n)]),
        feature_names=("confidence", "realised_vol_pct"),
        unit_outcome=np.where(confidence > 0.5, 0.008, -0.006) + rng.normal(0, 0.003, n),
    )


TINY = PpoParams(total_timesteps=512, n_steps=256, batch_size=64, n_epochs=2, seed=0)


def gate(passed: bool) -> SizingGate:
    """A verdict as qt evaluate --sizing writes it into the policy it saves."""
    return SizingGate(
        passed=passed,
        best_simple="kelly",
        reason="beat kelly: PSR 0.990, Sharpe +0.50" if passed else "kelly sizes: not beyond noise",
        psr=0.99 if passed else 0.4,
        sharpe_gain=0.5 if passed else -0.1,
        margin=0.1,
    )


@pytest.fixture(scope="module")
def trained() -> SizingPolicy:
    return train_policy(live_candidates(200, seed=1), SizingEnvConfig(), TINY)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, trained: SizingPolicy) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("rl") / "policy"
    return folder, save_policy(dataclasses.replace(trained, gate=gate(True)), folder)


def rl_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, folder: Path, digest: str = ""
) -> Settings:
    loose(monkeypatch, tmp_path)
    monkeypatch.setenv("QT__SIZING__METHOD", "rl")
    monkeypatch.setenv("QT__SIZING__POLICY_DIR", str(folder))
    monkeypatch.setenv("QT__SIZING__POLICY_SHA256", digest)
    return load_settings()


async def test_a_saved_policy_loads_and_sizes_entries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, saved: tuple[Path, str]
) -> None:
    folder, digest = saved
    settings = rl_settings(monkeypatch, tmp_path, folder, digest)
    fixed = await amount_with(loose(monkeypatch, tmp_path), 1.0, warmed=WARM)
    h = await Harness(settings, ScriptedProvider(entries={at(WARM): 1})).start()
    await warm(h)
    held = await entered(h, first=WARM)

    # What the policy chooses for what the engine knew at the decision (the entry candle's
    # close): the scripted confidence, the regime, the volatility of the closes up to it.
    decided_ms = at(WARM) + HOUR_MS
    closes = h.engine.signals.closes_until(SYMBOL, decided_ms, VOL_WINDOW + 1)
    entry = entry_features(
        confidence=0.5,
        regime_id=int(h.engine.regimes.get(SYMBOL, Regime.UNKNOWN)),  # warm-up: unknown
        realised_vol_pct=daily_vol_pct(closes, 24),
    )
    policy = load_policy(folder, expected_sha256=digest)
    account = SizingAccount().features(decided_ms)  # nothing traded before
    chosen = policy.multiplier(build_observation(policy.observation_names, entry, account))

    assert len(closes) == WARM + 1 and chosen > 0
    assert h.engine.trades[SYMBOL].sizing == SizingNote(method="rl", multiplier=chosen)
    assert abs(held - fixed * Decimal(repr(chosen))) <= Decimal("0.002")
    assert h.of(SizingFallback) == []
    assert h.engine.sizing.account.exposure == chosen  # the live account saw it open
    assert h.engine.sizing.status_line() == (
        f"sizing: rl (the policy in {folder}: beat kelly: PSR 0.990, Sharpe +0.50)"
    )


async def test_a_policy_that_failed_its_gate_leaves_the_sizing_to_the_best_simple_method(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trained: SizingPolicy
) -> None:
    folder = tmp_path / "failed"
    digest = save_policy(dataclasses.replace(trained, gate=gate(False)), folder)

    h = await two_entries(rl_settings(monkeypatch, tmp_path, folder, digest))

    # Kelly without a record of 20 trades sizes 1: the fixed amounts, said as kelly's
    fixed = amounts(await two_entries(loose(monkeypatch, tmp_path)))
    assert amounts(h) == fixed
    assert h.engine.trades[SYMBOL].sizing == SizingNote(method="kelly", multiplier=1.0)
    assert h.of(SizingFallback) == []  # a choice the gate made, not a failure
    assert h.engine.sizing.status_line() == (  # what /models says
        "sizing: kelly (QT__SIZING__METHOD=rl, but its policy did not pass its gate: kelly "
        "sizes: not beyond noise)"
    )


async def test_a_policy_never_judged_sizes_fixed_with_one_event(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trained: SizingPolicy
) -> None:
    folder = tmp_path / "ungated"
    digest = save_policy(trained, folder)  # no verdict: trained by hand, never compared

    h = await two_entries(rl_settings(monkeypatch, tmp_path, folder, digest))

    [event] = h.of(SizingFallback)
    assert isinstance(event, SizingFallback) and (event.method, event.reason) == ("rl", "ungated")
    assert h.engine.trades[SYMBOL].sizing == SizingNote(
        method="fixed", multiplier=1.0, fallback="ungated"
    )
    assert h.engine.sizing.status_line().startswith(
        "sizing: rl; every entry sizes fixed now (ungated: it was never judged"
    )


async def test_a_tampered_or_missing_policy_sizes_fixed_with_one_event(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, saved: tuple[Path, str]
) -> None:
    folder, _ = saved
    copy = tmp_path / "tampered"
    copy.mkdir()
    for f in folder.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    spec = copy / SPEC_FILE
    spec.write_text(spec.read_text().replace('"gamma": 0.9', '"gamma": 0.8'))

    fixed = amounts(await two_entries(loose(monkeypatch, tmp_path)))
    for where in (copy, tmp_path / "missing"):
        h = await two_entries(rl_settings(monkeypatch, tmp_path, where))
        assert amounts(h) == fixed
        [event] = h.of(SizingFallback)
        assert isinstance(event, SizingFallback)
        assert (event.method, event.reason) == ("rl", "artifact")
        assert h.engine.trades[SYMBOL].sizing == SizingNote(
            method="fixed", multiplier=1.0, fallback="artifact"
        )


async def test_a_policy_older_than_its_age_falls_back_as_stale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, saved: tuple[Path, str]
) -> None:
    folder, digest = saved
    rl_settings(monkeypatch, tmp_path, folder, digest)
    monkeypatch.setenv("QT__SIZING__MAX_AGE_DAYS", "1")  # it learned from trades ~8 days old
    h = await Harness(load_settings(), ScriptedProvider(entries={at(WARM): 1})).start()
    await warm(h)
    await entered(h, first=WARM)
    [event] = h.of(SizingFallback)
    assert isinstance(event, SizingFallback) and event.reason == "stale"


async def test_a_restart_resumes_the_sizing_account_of_the_trades_it_reopens(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = loose(monkeypatch, tmp_path)
    provider = ScriptedProvider(entries={at(0): 1, at(2): 1})
    h = await Harness(settings, provider, sizing=Scripted([1.25, 0.75]), persist=True).start()
    await entered(h)
    await entered(h, symbol="ETH/USDT", first=2)
    assert h.engine.sizing.account.exposure == 2.0

    # the restart: a new process on the same storage (venue book, trades, state)
    monkeypatch.setattr(engine_harness, "MemoryStorage", lambda: h.storage)
    again = Harness(settings, ScriptedProvider(), persist=True)
    again.clock.advance_to(h.clock.now_ms())
    await again.start()
    await again.engine.start()
    assert set(again.engine.trades) == {SYMBOL, "ETH/USDT"}
    assert again.engine.sizing.account.exposure == 2.0  # not an empty account
    t = again.clock.now_ms()
    assert list(again.engine.sizing.account.features(t)) == list(
        h.engine.sizing.account.features(t)
    )
