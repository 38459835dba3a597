"""The Strategy Brain's job end to end: it reviews the providers the process chooses among and
the ensemble's own record, writes its choices through the policy store, and the provider
obeys them from its next compute (a brain's action enforced, not just logged)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from core.clock import SimClock
from core.domain.policy import Policy
from core.ml.ensemble import EnsembleMember, EnsembleProvider
from core.services.bus import EventBus
from core.services.policy_store import PolicyStore
from core.services.signal_book import SignalBook
from core.services.strategy_service import StrategyService
from core.signals.meta import MetaConfig, MetaStrategy
from storage.memory import MemoryStorage
from tests.unit.brains.strategy_builders import HOUR_MS, T0_MS, trades
from tests.unit.ml.test_ensemble import Fake
from tests.unit.signals.test_meta import EXITS, REGIME, Every, falling


def _service(provider: object, closed: list, now_ms: int) -> tuple[StrategyService, PolicyStore]:
    storage, bus, clock = MemoryStorage(), EventBus(), SimClock(now_ms)
    store = PolicyStore(storage.decisions, Policy(), bus=bus, clock=clock)
    book = SignalBook(provider)  # type: ignore[arg-type]
    book.follow_policy(store.current)
    engine = SimpleNamespace(signals=book, closed_trades=closed)
    service = StrategyService(
        engine=engine,  # type: ignore[arg-type]
        store=store,
        repo=storage.decisions,
        bus=bus,
        clock=clock,
        candle_ms=HOUR_MS,
    )
    return service, store


async def test_a_losing_candidate_is_disabled_and_the_meta_strategy_stops_picking_it() -> None:
    series = falling()  # "b" (short) has the better signal record here
    meta = MetaStrategy(
        [Every("a", 3), Every("b", 3, 1, short=True)],
        MetaConfig(min_record=5, horizon=12, fallback="a", regime=REGIME),
        exits=EXITS,
    )
    book_frame = meta.compute(series)
    assert book_frame.chosen is not None and (book_frame.chosen == 1).any()
    # but b's real trades lost (profit factor 0.2), a's made money
    closed = trades([0.002, -0.01] * 20, provider="b") + trades(
        [0.02, -0.01] * 20, provider="a", start=40
    )
    service, store = _service(meta, closed, T0_MS + 100 * HOUR_MS)
    await store.start()
    summary = await service.review()
    assert "changed" in summary and store.current().disabled_strategies == ("b",)
    assert store.current().primary_strategy == "a"
    book = SignalBook(meta)
    book.follow_policy(store.current)
    book.seed(series)
    frame = book.frame("BTC/USDT")
    assert frame is not None and frame.chosen is not None and not (frame.chosen == 1).any()
    # a second review on the same record changes nothing
    assert await service.review() == "2 provider(s) reviewed, nothing changed"


async def test_the_review_weighs_the_ensemble_members_by_their_own_record() -> None:
    series = falling(1500)
    start = int(series.ts_ms[0])
    provider = EnsembleProvider(
        [
            EnsembleMember(name="good", member=Fake(0.35), trained_until_ms=start),  # type: ignore[arg-type]
            EnsembleMember(name="bad", member=Fake(0.9), trained_until_ms=start),  # type: ignore[arg-type]
        ]
    )
    now = int(series.ts_ms[-1]) + HOUR_MS
    service, store = _service(provider, [], now)
    await store.start()
    book = SignalBook(provider)
    book.follow_policy(store.current)
    book.seed(series)
    book.frame("BTC/USDT")  # the process has computed its signals
    await service.review()
    weights = dict(store.current().ensemble_weights)
    assert set(weights) == {"good", "bad"} and weights["good"] > weights["bad"]
    assert abs(sum(weights.values()) - 1) < 1e-9
    frame = book.frame("BTC/USDT")  # the new policy: computed again
    assert frame is not None and frame.weights is not None
    active = frame.weights.sum(axis=1) > 0
    expected = [weights["good"], weights["bad"]]
    assert np.allclose(frame.weights[active], expected)  # obeyed on every row
