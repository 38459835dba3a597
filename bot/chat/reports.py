"""Scheduled chat reports: the daily summary with its equity chart."""

from __future__ import annotations

import dataclasses

from bot.chat.charts import draw, line_png
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
