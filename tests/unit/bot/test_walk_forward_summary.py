"""The walk-forward's report lines: the learning manager's decisions, counted, with reasons."""

from __future__ import annotations

from bot.walk_forward import Decision, decision_lines, learning_json, summary, walk_forward_ensemble
from core.config import load_settings

DAY_MS = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def decided(day: int, kind: str, member: str, reason: str) -> Decision:
    return Decision(
        ts_ms=T0 + day * DAY_MS,
        kind=kind,
        member=member,
        version_id=f"{member}-{day}",
        reason=reason,
    )


def test_decisions_are_counted_by_kind_with_their_first_distinct_reasons() -> None:
    _, trainer = walk_forward_ensemble(load_settings())
    trainer.checks = 3
    trainer.decisions = [
        decided(0, "first champion", "xgb", "first version of xgb: no champion to beat"),
        decided(7, "rejected", "xgb", "not better: p 0.4"),
        decided(14, "rejected", "xgb", "not better: p 0.4"),  # the same reason: said once
        decided(14, "rejected", "lgbm", "not better: p 0.7"),
        decided(14, "failed", "lgbm", "DataError: too few rows"),
    ]

    line = summary(trainer)
    lines = decision_lines(trainer, most=1)
    report = learning_json(trainer)

    assert line.startswith("walk-forward (the learning manager): 3 check(s), ")
    assert "1 failed, 1 first champion, 3 rejected" in line
    assert lines == [
        "failed 1: 2024-01-15 00:00 lgbm: DataError: too few rows",
        "first champion 1: 2024-01-01 00:00 xgb: first version of xgb: no champion to beat",
        "rejected 3: 2024-01-08 00:00 xgb: not better: p 0.4 (+1 other reasons)",
    ]
    assert report["counts"] == {"failed": 1, "first champion": 1, "rejected": 3}
    assert report["checks"] == 3 and len(report["decisions"]) == 5
    assert report["decisions"][1] == {
        "utc": "2024-01-08 00:00",
        "kind": "rejected",
        "member": "xgb",
        "version_id": "xgb-7",
        "reason": "not better: p 0.4",
    }


def test_a_walk_forward_that_decided_nothing_says_so() -> None:
    _, trainer = walk_forward_ensemble(load_settings())
    assert summary(trainer).endswith(
        "0 check(s), 0 training run(s), 0 model(s) trained; no decision"
    )
