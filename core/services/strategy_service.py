"""The Strategy Brain's review as a job (``strategy_review``): gather, review, record, publish,
and write what it changes through the policy store.

The input is the engine's closed trades (the review window is the brain's config), the
providers it chooses among (the meta-strategy's candidates; a lone provider is its only
choice: disabled, the engine enters nothing until it is enabled again), the model members'
resolved out-of-sample predictions (the ensemble's own computes, ``member_outcomes``, read
while no compute runs) and the choices in force (read from the policy snapshot); the trades
are those closed since the process started (``record_from_ms``: a restart is not taken for a
window without trades). The provider reads what it writes back (``SignalBook.follow_policy``
hands it each new snapshot). A review that changes nothing writes no policy version; each
review is recorded (``brain_decisions``, brain "strategy") and published (``StrategyReviewed``).
"""

from __future__ import annotations

from core.brains.strategy import review_strategies
from core.brains.strategy_input import StrategyReviewConfig
from core.clock import Clock
from core.domain.decisions import BrainDecision, record_body
from core.domain.events import StrategyReviewed
from core.ports import DecisionRepo
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.policy_store import PolicyStore
from core.services.strategy_review import review_input, state_from_policy, strategy_changes
from core.signals.handover import choosable, last_retrains, member_outcomes


class StrategyService:
    """Review the strategies now and put the changes in force (see module docstring)."""

    def __init__(
        self,
        *,
        engine: Engine,
        store: PolicyStore,
        repo: DecisionRepo,
        bus: EventBus,
        clock: Clock,
        candle_ms: int,
        config: StrategyReviewConfig | None = None,
    ) -> None:
        self._config = config or StrategyReviewConfig()
        # The engine knows the trades closed since this process started, none before.
        self._record_from_ms = clock.now_ms()
        self._engine = engine
        self._store = store
        self._repo = repo
        self._bus = bus
        self._clock = clock
        self._candle_ms = candle_ms

    async def review(self) -> str:
        """Review, write the changes, record and publish; return a one-line summary."""
        now = self._clock.now_ms()
        policy = self._store.current()
        provider = self._engine.signals.provider
        window = self._config.window_ms
        since = now - window if window else -1
        async with self._engine.signals.quiet():  # no compute in a worker thread meanwhile
            outcomes = member_outcomes(provider, since, now)
        review = review_strategies(
            review_input(
                [t for t in self._engine.closed_trades if t.closed_ms > since],
                outcomes,
                as_of_ms=now,
                match_ms=2 * self._candle_ms,
                current=state_from_policy(policy),
                config=self._config,
                providers=choosable(provider),
                last_retrain_ms=last_retrains(provider),
                default_provider=provider.name,
                record_from_ms=self._record_from_ms,
            )
        )
        changes = strategy_changes(review, policy)
        reasons = tuple(f"{r.kind.value} {r.subject}: {r.reason}" for r in review.recommendations)
        if changes:
            await self._store.apply_strategy(
                changes, source="strategy", reason="; ".join(r for r in reasons if r)[:500]
            )
        summary = f"{len(review.providers)} provider(s) reviewed, " + (
            f"changed {', '.join(sorted(changes))}" if changes else "nothing changed"
        )
        await self._repo.add_decision(
            BrainDecision(
                ts_ms=now,
                brain="strategy",
                summary=summary,
                body=record_body(review),
            )
        )
        await self._bus.publish(
            StrategyReviewed(
                ts_ms=now, changed=tuple(sorted(changes)), recommendations=reasons[:50]
            )
        )
        return summary
