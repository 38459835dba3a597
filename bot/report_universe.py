"""A dynamic universe in the backtest report: how many symbols it held over time, and which."""

from __future__ import annotations

from typing import Any

from core.domain.market import fmt_ts
from core.services.universe import UniverseSummary


def universe_line(u: UniverseSummary) -> str:
    """Return one line for the console."""
    sizes = f"{u.min_size}" if u.min_size == u.max_size else f"{u.min_size}-{u.max_size}"
    ever = ", ".join(u.ever_selected) or "none"
    return (
        f"Universe: {sizes} symbol(s) over {u.refreshes} refresh(es), {u.changes} change(s); "
        f"ever selected ({len(u.ever_selected)}): {ever}"
    )


def universe_json(u: UniverseSummary) -> dict[str, Any]:
    """Return the JSON report's ``universe`` section: the counts and every change."""
    return {
        "refreshes": u.refreshes,
        "changes": u.changes,
        "min_size": u.min_size,
        "max_size": u.max_size,
        "ever_selected": list(u.ever_selected),
        "timeline": [
            {
                "from_utc": fmt_ts(c.at_ms),
                "size": len(c.members),
                "entered": list(c.entered),
                "left": list(c.left),
            }
            for c in u.timeline
        ],
    }
