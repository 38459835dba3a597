"""Chat reports: the daily summary with its equity chart, a training run's with its scores."""

from __future__ import annotations

import dataclasses

from bot.chat.charts import bars_png, draw, line_png
from core.domain.events import LearningReported
from core.services.commands import CommandCore, Reply

REPORT_DAYS = 30


async def daily_report(core: CommandCore) -> Reply:
    """Return the day's summary (P&L, trades, risk, mode) with the month's equity chart."""
    reply = await core.daily_report()
    points = await core.equity_history(REPORT_DAYS)
    if len(points) < 2:
        return reply
    ts, equity = [p.ts_ms for p in points], [float(p.equity) for p in points]
    png = await draw(line_png, "equity, the last 30 days", ts, equity, core.s.quote)
    return dataclasses.replace(reply, photo=png)


async def learning_report(event: LearningReported) -> Reply:
    """Return a training run's report: each member's line, and a chart of the candidates'
    validation log-loss beside their champions' on the same rows (lower is better)."""
    reply = Reply(event.title, event.lines)
    if not event.scores:
        return reply
    nan = float("nan")
    members = [m for m, _, _ in event.scores]
    bars = [
        ("candidate", [c for _, c, _ in event.scores]),
        ("champion", [nan if old is None else old for _, _, old in event.scores]),
    ]
    png = await draw(bars_png, "log-loss on the same held-out rows", members, bars)
    return dataclasses.replace(reply, photo=png)
