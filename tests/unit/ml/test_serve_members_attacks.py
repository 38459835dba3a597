"""Attacks on ``EnsembleProvider.serve_members`` (the walk-forward review): a second member
change at one activation takes the newest set's place; what the provider computed before it
must not outlive it."""

from __future__ import annotations

import numpy as np
import pytest

from core.ml.ensemble import EnsembleMember, EnsembleProvider
from tests.unit.ml.test_ensemble import Fake, series

HOUR_MS = 3_600_000


def _member(fake: Fake, until: int, vid: str) -> EnsembleMember:
    return EnsembleMember(name="a", member=fake, trained_until_ms=until, version_id=vid)  # type: ignore[arg-type]


def test_a_second_change_at_one_activation_after_a_compute_serves_the_new_version() -> None:
    s = series(1200)
    provider = EnsembleProvider([_member(Fake(0.4), int(s.ts_ms[300]), "a-1")])
    now = int(s.ts_ms[799]) + HOUR_MS  # a candle's close, where market time is held
    assert provider.serve_members([_member(Fake(0.6), now - HOUR_MS, "a-2")], now)
    frame = provider.compute(s)  # e.g. /why, or the Strategy Brain's review, meanwhile
    after = np.flatnonzero(s.ts_ms + HOUR_MS > now)
    assert np.allclose(frame.member_p[after, 0], 0.6, atol=0.021)  # a-2 serves them

    assert provider.serve_members([_member(Fake(0.2), now - HOUR_MS, "a-3")], now)  # rollback
    assert [st.active_from_ms for st in provider.sets] == [None, now]  # took a-2's place
    frame = provider.compute(s)

    assert np.allclose(frame.member_p[after, 0], 0.2, atol=0.021)
    served = {vid: p for vid, _, _, ts, p in provider.member_predictions() if ts == s.ts_ms[900]}
    assert served == pytest.approx({"a-3": frame.member_p[900, 0]})
    assert abs(served["a-3"] - 0.2) <= 0.021


def test_a_second_change_at_one_activation_before_any_compute_serves_the_new_version() -> None:
    s = series(1200)
    provider = EnsembleProvider([_member(Fake(0.4), int(s.ts_ms[300]), "a-1")])
    now = int(s.ts_ms[799]) + HOUR_MS
    provider.compute(s.slice(0, 800))  # the rows up to now, before either change
    assert provider.serve_members([_member(Fake(0.6), now - HOUR_MS, "a-2")], now)
    assert provider.serve_members([_member(Fake(0.2), now - HOUR_MS, "a-3")], now)

    frame = provider.compute(s)

    after = np.flatnonzero(s.ts_ms + HOUR_MS > now)
    assert np.allclose(frame.member_p[after, 0], 0.2, atol=0.021)
    before = np.flatnonzero((s.ts_ms >= s.ts_ms[320]) & (s.ts_ms + HOUR_MS <= now))
    assert np.allclose(frame.member_p[before, 0], 0.4, atol=0.021)  # a-1's rows stand
    assert {r[0] for r in provider.member_predictions()} == {"a-1", "a-3"}  # a-2 served none
