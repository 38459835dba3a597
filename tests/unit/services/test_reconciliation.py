"""Start-up reconciliation: a position at the venue the engine did not open is reported and,
by default, fails closed (REDUCING until an operator resumes); it is never traded blindly and
never lifts a halt."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from core.domain.enums import OrderType, Side, TradingState
from core.domain.events import AlertRaised, TradingStateChanged
from core.domain.orders import OrderRequest
from core.domain.portfolio import Position
from core.errors import DependencyError, RateLimited, TemporaryError
from core.services.reconciliation import reconcile_positions, venue_positions
from tests.unit.services.engine_harness import Harness, ScriptedProvider, clean_settings


async def bought_by_hand(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Harness:
    """A process whose paper venue holds 10 SOL bought by hand (no trade of the engine's)."""
    h = await Harness(clean_settings(monkeypatch, tmp_path), ScriptedProvider()).start()
    await h.candle(0, 20, 20.5, 19.5, 20, symbol="SOL/USDT")
    await h.paper.create_order(
        OrderRequest(
            client_order_id="manual-1",
            symbol="SOL/USDT",
            side=Side.BUY,
            type=OrderType.MARKET,
            amount=D(10),
        )
    )
    await h.candle(1, 20, 20.5, 19.5, 20, symbol="SOL/USDT")  # the hand order fills
    return h


async def reconcile(h: Harness, rule: str) -> str:
    return await reconcile_positions(
        await h.engine.unknown_positions(),
        rule=rule,  # type: ignore[arg-type]
        trading_state=h.trading_state,
        bus=h.bus,
        clock=h.clock,
    )


async def test_an_unknown_position_makes_trading_reduce_with_a_critical_alert(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await bought_by_hand(monkeypatch, tmp_path)
    [unknown] = await h.engine.unknown_positions()
    assert unknown.symbol == "SOL/USDT" and unknown.amount == 10

    said = await reconcile(h, "reduce")

    assert await h.trading_state.current() is TradingState.REDUCING
    assert "SOL/USDT long 10" in said and "/resume" in said
    [alert] = h.of(AlertRaised)
    assert isinstance(alert, AlertRaised) and alert.severity == "critical"
    assert "SOL/USDT" in await h.trading_state.reason()
    assert "SOL/USDT" not in h.engine.trades  # reported, not traded


async def test_a_halt_stays_a_halt_and_warn_only_alerts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = await bought_by_hand(monkeypatch, tmp_path)
    await h.trading_state.set(TradingState.HALTED, reason="operator", actor="test")
    await reconcile(h, "reduce")
    assert await h.trading_state.current() is TradingState.HALTED  # never lifted to REDUCING

    w = await bought_by_hand(monkeypatch, tmp_path)
    said = await reconcile(w, "warn")
    assert await w.trading_state.current() is TradingState.ACTIVE
    assert w.of(TradingStateChanged) == [] and "left alone" in said
    [alert] = w.of(AlertRaised)
    assert isinstance(alert, AlertRaised) and alert.severity == "warning"


async def test_the_engines_own_positions_are_not_unknown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = ScriptedProvider(entries={1_704_067_200_000: 1})
    h = await Harness(clean_settings(monkeypatch, tmp_path), provider).start()
    await h.candle(0, 100, 100.5, 99.5, 100)
    await h.candle(1, 100, 100.5, 99.5, 100)  # the entry fills
    assert {p.symbol for p in await h.paper.fetch_positions()} == {"BTC/USDT"}
    assert await h.engine.unknown_positions() == []
    assert await reconcile(h, "reduce") == "" and h.of(AlertRaised) == []


async def test_a_venue_that_cannot_answer_is_asked_again_then_the_start_fails_saying_why() -> None:
    calls: list[float] = []
    answers: list[object] = [TemporaryError("timeout"), RateLimited("429"), []]

    async def read() -> list[Position]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    async def sleep(s: float) -> None:
        calls.append(s)

    assert await venue_positions(read, pauses_s=(1.0, 2.0, 4.0), sleep=sleep) == []
    assert calls == [1.0, 2.0]  # two failures, two pauses, then the answer

    answers[:] = [TemporaryError("down")] * 4
    with pytest.raises(DependencyError, match=r"4 tries, the last: down\): not trading"):
        await venue_positions(read, pauses_s=(1.0, 2.0, 4.0), sleep=sleep)

    async def broken() -> list[Position]:
        raise ValueError("a bug is not a venue that cannot answer")

    with pytest.raises(ValueError):
        await venue_positions(broken, sleep=sleep)
