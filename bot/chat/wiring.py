"""Build the command core and its dispatcher on a live process (the front ends share one)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.chat.dispatch import Access, Dispatcher
from bot.chat.notifier import Notifier
from core.domain.events import Event, LearningReported
from core.domain.market import fmt_ts
from core.services.commands import CommandCore, CommandServices

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from bot.app import TradingProcess

CONSOLE_USER = "console:local"  # whoever has the terminal has the process: admin


def build_dispatcher(process: TradingProcess) -> Dispatcher:
    """Return the dispatcher of ``process``'s commands, its allowlist from the settings."""
    settings = process.parts.settings
    brains = process.brains
    services = CommandServices(
        clock=process.clock,
        bus=process.bus,
        storage=process.storage,
        engine=process.engine,
        exchange=process.exchange,
        trading_state=process.trading_state,
        policy=process.policy,
        portfolio=process.portfolio,
        quote=settings.trading.quote_currency,
        mode_label=process.parts.mode_label,
        last_close=lambda: dict(process.market.stats.last_close),
        last_candle_ms=lambda: process.market.stats.last_candle_ms,
        risk_latest=None
        if brains is None
        else (lambda: (brains.risk.latest, brains.risk.latest_ms)),
        models=lambda: _models(process),
        health_latest=lambda: process.health.latest,
        brains=brains,
        learning=process.learning,
        trades=process.storage.trades,  # what closed before a restart too
    )
    users = {CONSOLE_USER: "admin", **settings.chat.users}
    return Dispatcher(
        CommandCore(services),
        Access(users),
        bus=process.bus,
        clock=process.clock,
        confirm_ttl_s=settings.chat.confirm_ttl_s,
        refusal_every_s=settings.chat.refusal_every_s,
    )


def attach_chat(process: TradingProcess) -> Dispatcher:
    """Give ``process`` its command dispatcher and its notifier, which pushes to every front
    end in ``process.push_targets`` by the time the process starts (Telegram, Discord: add
    them after this, before the start); return the dispatcher for the front ends."""
    dispatcher = process.commands = build_dispatcher(process)
    chat = process.parts.settings.chat
    notifier = Notifier(
        process.bus,
        process.push_targets,
        loudness=chat.alerts,
        min_interval_s=chat.push_interval_s,
    )
    process.notifier = notifier
    process.front_ends.append(notifier)

    drawing: set[asyncio.Task[None]] = set()

    async def send_report(event: LearningReported) -> None:
        from bot.chat.reports import learning_report  # matplotlib: when one comes

        await notifier.report(await learning_report(event))

    async def training_report(event: Event) -> None:
        # drawn in a task of its own: the bus delivers nothing else while a handler runs
        if isinstance(event, LearningReported) and notifier.lanes:
            task = asyncio.create_task(send_report(event), name="chat.training_report")
            drawing.add(task)
            task.add_done_callback(_report_sent)
            task.add_done_callback(drawing.discard)

    process.bus.subscribe(LearningReported.topic, training_report, name="chat.training_report")
    return dispatcher


def _models(process: TradingProcess) -> list[str]:
    """Return each serving model member: name, version, training end."""
    provider = process.engine.signals.provider
    provider = getattr(provider, "current", provider)  # a hand-over serves its current one
    out = []
    for candidate in getattr(provider, "candidates", (provider,)):
        for m in getattr(candidate, "members", ()):
            out.append(f"{m.name} {m.version_id or '-'} trained until {fmt_ts(m.trained_until_ms)}")
    return out


def _report_sent(task: asyncio.Task[None]) -> None:
    """Log a training report that could not be drawn or queued (nobody awaits its task)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the training report was not sent", exc_info=task.exception())
