"""The learning manager's hooks into the ensemble: a promoted member served from the next
candle on without a restart (the others serve on), the versions serving, and the members'
out-of-sample predictions recorded (each row by the version that served it)."""

from __future__ import annotations

import numpy as np

from core.ml.ensemble import EnsembleMember, EnsembleProvider
from core.signals.ema_rsi import EmaRsiCross
from core.signals.handover import (
    HandOverProvider,
    member_predictions,
    serve_members,
    serving_versions,
)
from tests.unit.ml.test_ensemble import Fake, series

HOUR_MS = 3_600_000


def _member(name: str, fake: Fake, until: int, vid: str) -> EnsembleMember:
    return EnsembleMember(name=name, member=fake, trained_until_ms=until, version_id=vid)  # type: ignore[arg-type]


def test_a_promoted_member_serves_rows_closing_after_it_and_the_others_serve_on() -> None:
    s = series(1200)
    trained = int(s.ts_ms[300])
    provider = EnsembleProvider(
        [_member("a", Fake(0.4), trained, "a-1"), _member("b", Fake(0.45), trained, "b-1")]
    )
    provider.compute(s.slice(0, 1000))
    now = int(s.ts_ms[999]) + HOUR_MS  # the newest candle's close
    assert serving_versions(provider) == {"a": "a-1", "b": "b-1"}

    assert serve_members(provider, [_member("a", Fake(0.6), now - HOUR_MS, "a-2")], now)
    assert serving_versions(provider) == {"a": "a-2", "b": "b-1"}
    # the same version again changes nothing (a registry re-read)
    assert not serve_members(provider, [_member("a", Fake(0.6), now - HOUR_MS, "a-2")], now + 1)

    frame = provider.compute(s)
    a = frame.members.index("a")
    before, after = frame.member_p[:1000, a], frame.member_p[1000:, a]
    assert np.nanmax(np.abs(before[320:] - 0.4)) <= 0.021  # a-1 on the rows before
    assert np.nanmin(np.abs(after - 0.6)) <= 0.021 and np.nanmax(np.abs(after - 0.6)) <= 0.021

    rows = member_predictions(provider)
    by_version = {vid for vid, *_ in rows}
    assert by_version == {"a-1", "a-2", "b-1"}
    for vid, _name, symbol, ts, p in rows:
        assert symbol == "BTC/USDT" and 0.0 <= p <= 1.0
        if vid == "a-2":
            assert ts >= now - HOUR_MS  # only rows a-2 served, all out of sample
        if vid == "a-1":
            assert trained <= ts < int(s.ts_ms[1000])
    newest = int(s.ts_ms[-1])
    assert {r[3] for r in member_predictions(provider, newest - HOUR_MS)} == {newest}


def test_a_hand_over_forwards_to_the_ensemble_and_a_baseline_takes_nothing() -> None:
    s = series(600)
    trained = int(s.ts_ms[300])
    baseline = HandOverProvider(EmaRsiCross())
    assert not serve_members(baseline, [_member("a", Fake(0.4), trained, "a-1")], trained)
    assert serving_versions(baseline) == {} and member_predictions(baseline) == []
    ensemble = EnsembleProvider([_member("a", Fake(0.4), trained, "a-1")])
    baseline.hand_over(ensemble)
    assert serve_members(baseline, [_member("a", Fake(0.5), trained, "a-2")], trained + 1)
    assert serving_versions(baseline) == {"a": "a-2"}
