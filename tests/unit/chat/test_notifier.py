"""Push alerts: rendered, batched under the rate limit, loud/silent/off per kind, retried with
backoff on failure without losing anything, a storm collapsed, one failing target delaying
no other."""

from __future__ import annotations

import asyncio
import typing
from decimal import Decimal

from bot.chat.notifier import Notifier
from bot.chat.render import ALERT_KINDS
from core.config import ChatSettings
from core.domain.events import (
    Event,
    ModeChanged,
    OrderFilled,
    RiskAssessed,
    TradeClosed,
    TradingStateChanged,
)
from core.services.bus import EventBus


class Target:
    def __init__(self, name: str, fail: int = 0) -> None:
        self.name, self.fail = name, fail
        self.sent: list[tuple[str, bool]] = []
        self.at: list[float] = []  # the wall time of each send
        self.clock: Time | None = None

    async def push(self, text: str, *, silent: bool = False, photo: bytes | None = None) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("429 Too Many Requests")
        self.sent.append((text, silent))
        if self.clock is not None:
            self.at.append(self.clock.t)


class Time:
    """A wall clock the notifier's sleeps move forward (no real waiting)."""

    def __init__(self) -> None:
        self.t, self.slept = 0.0, list[float]()

    def wall(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s
        await asyncio.sleep(0)


def fill(i: int) -> OrderFilled:
    return OrderFilled(
        ts_ms=i,
        fill_ts_ms=i,
        client_order_id=f"qt-{i}",
        symbol="BTC/USDT",
        side="buy",
        amount=Decimal("0.1"),
        price=Decimal(40_000),
        fee=Decimal("0.4"),
        liquidity="taker",
    )


def closed(pnl: str) -> TradeClosed:
    return TradeClosed(
        ts_ms=5,
        trade_id="t",
        symbol="ETH/USDT",
        side="long",
        opened_ms=1,
        closed_ms=5,
        amount=Decimal(1),
        entry_price=Decimal(2000),
        exit_price=Decimal(2040),
        fees=Decimal(2),
        pnl=Decimal(pnl),
        pnl_pct=0.019,
        exit_reason="TP2",
    )


def risk(level: str) -> RiskAssessed:
    return RiskAssessed(
        ts_ms=9, score=60.0, level=level, drawdown=0.07, exposure_pct=1.0, tier=1,
        measures=("pause",), notes=(), var_99_daily=0.02, es_99_daily=0.03,
    )  # fmt: skip


async def settle(n: int = 30) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def started(*targets: Target, **kw: typing.Any) -> tuple[Notifier, EventBus, Time]:
    bus, clock = EventBus(), Time()
    notifier = Notifier(bus, targets, sleep=clock.sleep, wall=clock.wall, **kw)
    for t in targets:
        t.clock = clock
    await notifier.start()
    return notifier, bus, clock


async def publish(bus: EventBus, *events: Event) -> None:
    for e in events:
        await bus.publish(e)


async def test_a_burst_goes_out_as_few_messages_loud_if_any_is_loud() -> None:
    t = Target("telegram")
    notifier, bus, clock = await started(t)
    await publish(bus, fill(1))
    await settle()
    await publish(bus, *(fill(i) for i in range(2, 40)), closed("38.5"))
    await settle()
    await notifier.stop()
    assert len(t.sent) == 2  # the first at once, the burst after one interval, together
    first, second = t.sent
    assert first == ("BUY BTC/USDT 0.1 @ 40,000 (fee 0.4) qt-1", True)  # fills: silent
    assert (
        second[0].count("\n") == 38
        and "CLOSED ETH/USDT long: +38.50 (+1.90%), exit TP2" in (second[0])
    )
    assert second[1] is False  # a trade closed is loud
    assert clock.slept and clock.slept[0] <= 1.0


async def test_off_kinds_are_not_sent_and_only_risk_level_changes_are() -> None:
    t = Target("discord")
    notifier, bus, _ = await started(t, loudness={"fill": "off"})
    await publish(bus, fill(1), risk("LOW"), risk("LOW"), risk("HIGH"))
    await publish(
        bus,
        ModeChanged(ts_ms=1, previous="OPTIMIZATION", current="OPTIMIZATION", reasons=(), manual=1),
        TradingStateChanged(
            ts_ms=2, previous="active", current="halted", reason="/halt", actor="x"
        ),
    )
    await settle()
    await notifier.stop()
    text = "\n".join(m for m, _ in t.sent)
    assert "BUY" not in text and text.count("RISK") == 1
    assert "RISK LOW -> HIGH (60/100), drawdown 7.0%; pause" in text
    assert "MODE" not in text and "TRADING active -> halted by x: /halt" in text


async def test_a_failing_target_retries_with_backoff_loses_nothing_and_delays_no_other() -> None:
    bad, good = Target("telegram", fail=3), Target("discord")
    notifier, bus, clock = await started(bad, good)
    await publish(bus, closed("1"), closed("-2"))
    await settle(300)
    await notifier.stop()
    assert len(good.at) == 1 and good.at[0] < bad.at[0] and bad.at[0] >= 7.0  # not held up
    assert notifier.lanes[0].failures == 3
    assert [s for s in clock.slept if s >= 1.0][:3] == [1.0, 2.0, 4.0]  # backoff doubles
    sent = "\n".join(m for m, _ in bad.sent)
    assert sent.count("CLOSED") == 2  # both, after the failures: nothing lost


async def test_a_storm_is_collapsed_not_dropped_silently() -> None:
    t = Target("telegram", fail=1_000_000)  # down: the backlog grows
    notifier, bus, _ = await started(t, max_backlog=50)
    await publish(bus, *(fill(i) for i in range(500)))
    lane = notifier.lanes[0]
    assert len(lane.pending) <= 51
    t.fail = 0
    await settle(400)
    await notifier.stop()
    text = "\n".join(m for m, _ in t.sent)
    assert "older messages collapsed:" in text and "fill" in text
    assert "qt-499" in text  # the newest survive whole


def test_the_settings_know_exactly_the_alert_kinds() -> None:
    field = ChatSettings.model_fields["alerts"]
    assert field.description is None  # documented in .env.example instead
    ChatSettings(alerts=dict.fromkeys(ALERT_KINDS, "off"))  # every kind accepted
    try:
        ChatSettings(alerts={"nonsense": "loud"})
    except ValueError as e:
        assert "unknown alert kind" in str(e)
    else:
        raise AssertionError("an unknown kind was accepted")


async def test_a_training_report_reaches_chat_with_old_and_new_scores_and_a_chart() -> None:
    from bot.chat.reports import learning_report
    from core.domain.events import LearningReported, ModelPromoted

    event = LearningReported(
        ts_ms=1,
        title="training run (schedule): 2 trained in 40 s",
        lines=("xgb: x-2 log-loss 0.6500 vs champion x-1 0.6700 ...: passed, in shadow",),
        scores=(("xgb", 0.65, 0.67), ("lgbm", 0.66, None)),
    )
    reply = await learning_report(event)
    assert reply.photo is not None and reply.photo.startswith(b"\x89PNG")
    assert "0.6500 vs champion" in reply.text()
    target = Target("tg")
    photos: list[bytes | None] = []
    push = target.push

    async def keep(text: str, *, silent: bool = False, photo: bytes | None = None) -> None:
        photos.append(photo)
        await push(text, silent=silent, photo=photo)

    target.push = keep  # type: ignore[method-assign]
    notifier, bus, _ = await started(target)
    assert await notifier.report(reply) == 1
    await publish(bus, ModelPromoted(ts_ms=2, member="xgb", version_id="x-2", previous="x-1",
                                     reason="shadow held up"))  # fmt: skip
    await settle()
    await notifier.stop()
    texts = " ".join(t for t, _ in target.sent)
    assert "TRAINING RUN" in texts.upper() and "PROMOTED xgb x-2 (replaces x-1)" in texts
    assert any(p is not None and p.startswith(b"\x89PNG") for p in photos)
