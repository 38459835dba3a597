"""What a replay asks of the jobs that fire on simulated time (``jobs.simulated`` builds them;
core knows only this protocol, so it never imports the scheduling layer)."""

from __future__ import annotations

from typing import Protocol


class DueJobs(Protocol):
    """Jobs due at points of simulated time. After a ``run_due``: ``signals_changed``, it ran
    a job that may change the signals (they must be computed again); ``policy_changed``, a
    job published more than a report (a policy, an order: what the engine watches may have
    moved)."""

    signals_changed: bool
    policy_changed: bool

    def next_due_ms(self) -> int | None:
        """Return when the next job is due (None: none is)."""
        ...

    async def run_due(self, until_ms: int) -> int:
        """Run every job due at or before ``until_ms`` in time order, the clock moved to each
        one's due time; return how many ran."""
        ...
