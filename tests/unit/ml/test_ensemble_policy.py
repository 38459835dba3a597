"""The ensemble under the Strategy Brain: its weights in force replace the rolling ones, and
what it hands the brain to review (each member's resolved out-of-sample predictions)."""

from __future__ import annotations

import numpy as np

from core.domain.market import timeframe_to_ms
from core.domain.policy import Policy
from core.ml.ensemble import EnsembleConfig, EnsembleMember, EnsembleProvider
from core.services.signal_book import SignalBook
from tests.unit.ml.test_ensemble import Fake, ensemble, series

HOUR_MS = timeframe_to_ms("1h")
WEIGHTS = (("bad", 0.3), ("good", 0.7))


def test_the_policy_weights_replace_the_rolling_ones_and_a_recompute_equals_a_fresh_one() -> None:
    s = series()
    cfg = {"min_weight": 0.1, "max_weight": 0.9, "min_labels": 100}
    provider = ensemble(("good", Fake(0.35)), ("bad", Fake(0.9)), **cfg)
    own = provider.compute(s)
    assert np.allclose(own.weights[-200:], [0.9, 0.1])  # its own record: bounded at the limits
    assert provider.use_policy(Policy(ensemble_weights=WEIGHTS))
    assert not provider.use_policy(Policy(ensemble_weights=WEIGHTS[::-1]))  # the same ones
    ruled = provider.compute(s)
    active = ruled.weights.sum(axis=1) > 0
    assert np.allclose(ruled.weights[active], [0.7, 0.3])
    assert np.allclose(ruled.member_p, own.member_p, equal_nan=True)  # predictions stand
    p = 0.7 * ruled.member_p[active, 0] + 0.3 * ruled.member_p[active, 1]
    assert np.allclose(ruled.p_up[active], p)
    fresh = ensemble(("good", Fake(0.35)), ("bad", Fake(0.9)), **cfg)
    fresh.use_policy(Policy(ensemble_weights=WEIGHTS))
    assert np.allclose(fresh.compute(s).weights, ruled.weights)
    # back to none: the ensemble's own weights again, exactly as before
    assert provider.use_policy(Policy())
    assert np.allclose(provider.compute(s).weights, own.weights)


def test_rows_with_a_member_the_policy_does_not_weigh_keep_their_own_weights() -> None:
    s = series()
    provider = ensemble(("good", Fake(0.35)), ("bad", Fake(0.9)), ("new", Fake(0.4)))
    own = provider.compute(s)
    provider.use_policy(Policy(ensemble_weights=WEIGHTS))  # "new" unjudged
    assert np.allclose(provider.compute(s).weights, own.weights)


def test_a_member_left_out_leaves_its_policy_share_to_the_others() -> None:
    s = series()
    provider = ensemble(("good", Fake(0.35)), ("bad", Fake(0.9)), disabled=("bad",))
    provider.use_policy(Policy(ensemble_weights=WEIGHTS))
    frame = provider.compute(s)
    active = frame.weights.sum(axis=1) > 0
    assert active.any() and np.allclose(frame.weights[active], [1.0, 0.0])


def test_the_live_path_under_a_new_policy_equals_a_whole_compute() -> None:
    s = series(1300)
    cfg = EnsembleConfig(min_labels=24, window=48)
    start = int(s.ts_ms[0])

    def members() -> list[EnsembleMember]:
        return [
            EnsembleMember(name="good", member=Fake(0.35), trained_until_ms=start),  # type: ignore[arg-type]
            EnsembleMember(name="bad", member=Fake(0.9), trained_until_ms=start),  # type: ignore[arg-type]
        ]

    policy = [Policy()]
    live = EnsembleProvider(members(), cfg)
    book = SignalBook(live)
    book.follow_policy(lambda: policy[0])
    book.seed(s.slice(0, 1200))
    book.frame("BTC/USDT")
    for k in range(1200, 1260):
        if k == 1230:  # a review writes weights mid-way
            policy[0] = Policy(ensemble_weights=WEIGHTS, version=2)
        book.append("BTC/USDT", "1h", s.candle(k))
        assert book.signal_at("BTC/USDT", int(s.ts_ms[k])) is not None
    whole = EnsembleProvider(members(), cfg)
    whole.use_policy(policy[0])
    history = book._books["BTC/USDT"].history
    full, frame = whole.compute(history), book.frame("BTC/USDT")
    assert frame is not None
    assert np.allclose(frame.weights, full.weights) and np.array_equal(frame.entry, full.entry)


def test_member_outcomes_are_out_of_sample_resolved_and_inside_the_window() -> None:
    s = series()
    trained = int(s.ts_ms[1000])  # "late" was trained until candle 1000
    start = int(s.ts_ms[0])
    provider = EnsembleProvider(
        [
            EnsembleMember(name="early", member=Fake(0.35), trained_until_ms=start),  # type: ignore[arg-type]
            EnsembleMember(name="late", member=Fake(0.6), trained_until_ms=trained),  # type: ignore[arg-type]
        ],
        EnsembleConfig(),
    )
    frame = provider.compute(s)  # a backtest's whole series: the future is in the cache
    as_of = int(s.ts_ms[1400]) + HOUR_MS  # now: candle 1400 just closed
    since = int(s.ts_ms[900])
    out = provider.member_outcomes(since, as_of)
    _, labels = provider.features_and_labels(s)
    for name, first in (("early", 900), ("late", 1000)):  # closed after since; OOS
        got = out[name]
        assert got, name
        ts = np.array([o.ts_ms for o in got])
        assert ts.min() >= int(s.ts_ms[first]) and ts.max() <= int(s.ts_ms[1400])
        rows = np.searchsorted(s.ts_ms, ts)
        # resolved by now: the label's last candle closed by as_of; nothing from the future
        assert (labels.end_ts_ms[rows] + HOUR_MS <= as_of).all()
        assert [o.up for o in got] == [bool(y == 1) for y in labels.y[rows]]
        j = frame.members.index(name)
        assert np.allclose([o.p_up for o in got], frame.member_p[rows, j])
    # the rows left out are the unresolved ones at the end only
    assert len(out["early"]) < 1400 - 900 and len(out["early"]) > 400
    assert provider.last_retrains() == {"early": start, "late": trained}


class Broken(Fake):
    """A member whose P(up) leaves [0, 1] (the ensemble leaves it out as unhealthy)."""

    def predict_proba(self, x, *, columns, feature_set_hash):  # type: ignore[no-untyped-def]
        return super().predict_proba(x, columns=columns, feature_set_hash=feature_set_hash) + 0.5


def test_member_outcomes_leave_out_broken_predictions_and_members_with_none() -> None:
    s = series()
    provider = ensemble(
        ("good", Fake(0.35)), ("broken", Broken(0.6)), ("off", Fake(0.4)), disabled=("off",)
    )
    provider.compute(s)
    out = provider.member_outcomes(-1, int(s.ts_ms[-1]) + HOUR_MS)
    assert set(out) == {"good"}  # broken: every P(up) above 1; off: disabled, no prediction
    assert all(0.0 <= o.p_up <= 1.0 for o in out["good"])


async def test_the_review_waits_for_a_compute_in_a_worker_thread() -> None:
    import asyncio
    import threading

    from core.signals.base import SignalFrame

    release, entered = threading.Event(), threading.Event()

    class Slow:
        name, warmup_candles = "slow", 1

        def compute(self, series):  # type: ignore[no-untyped-def]
            entered.set()
            release.wait(5)
            return SignalFrame(
                ts_ms=series.ts_ms,
                entry=np.zeros(len(series), np.int8),
                exit_long=np.zeros(len(series), bool),
                exit_short=np.zeros(len(series), bool),
                confidence=np.zeros(len(series)),
                atr=np.zeros(len(series)),
            )

    book = SignalBook(Slow(), offload=True)  # type: ignore[arg-type]
    book.seed(series(300))
    computing = asyncio.create_task(book.prepare("BTC/USDT"))
    while not entered.is_set():
        await asyncio.sleep(0.01)
    order: list[str] = []

    async def review() -> None:
        async with book.quiet():
            order.append("review")

    reading = asyncio.create_task(review())
    await asyncio.sleep(0.05)
    assert order == []  # held while the thread computes
    order.append("compute done")
    release.set()
    await asyncio.gather(computing, reading)
    assert order == ["compute done", "review"]
