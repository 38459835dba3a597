"""The RL policy's gate: it sizes live trades only when it beat the best simple sizer out of
sample beyond noise and by the margin, with a control that learned nothing."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.errors import DataError
from core.ml.rl.gate import SizingGate, best_simple, sizing_gate
from core.ml.rl.scorecard import MethodScore


def score(method: str, sharpe: float | None, above: float | None = None) -> MethodScore:
    return MethodScore(
        method=method,
        control=False,
        final_equity=1.1,
        cagr_pct=5.0,
        max_drawdown_pct=4.0,
        calmar=1.25,
        sharpe=sharpe,
        daily_sharpe=None if sharpe is None else sharpe / 19.1,
        dsr=0.5,
        above_baseline=above,
        edge_pct=0.1,
        turnover=3.0,
        mean_multiplier=1.0,
        trades=80,
    )


SIMPLE = [score("fixed", 0.8), score("vol_target", 1.1), score("kelly", 0.9)]


def test_the_best_simple_method_has_the_highest_sharpe_and_ties_go_to_the_simpler() -> None:
    assert best_simple(SIMPLE) == "vol_target"
    assert best_simple([score("fixed", 1.0), score("vol_target", 1.0), score("kelly", None)]) == (
        "fixed"
    )
    assert best_simple([score("fixed", None), score("vol_target", -0.5), score("kelly", None)]) == (
        "fixed"  # flat counts as 0: above a losing curve
    )
    with pytest.raises(DataError, match="kelly"):
        best_simple(SIMPLE[:2])


@pytest.mark.parametrize(
    ("rl", "control_beat_fixed", "passed", "why"),
    [
        (score("rl", 1.5, 0.99), False, True, "beat vol_target: PSR 0.990, Sharpe +0.40"),
        (score("rl", 1.5, 0.99), True, False, "control beat fixed sizing too"),
        (score("rl", 1.5, None), False, False, "too few trades"),
        (score("rl", 1.5, 0.95), False, False, "not beyond noise: PSR 0.950"),
        (score("rl", 1.15, 0.97), False, False, "Sharpe gain over vol_target +0.05 < the margin"),
        (score("rl", None, 0.99), False, False, "Sharpe gain over vol_target none"),
    ],
)
def test_the_gate_passes_only_when_every_condition_holds(
    rl: MethodScore, control_beat_fixed: bool, passed: bool, why: str
) -> None:
    gate = sizing_gate(
        [SIMPLE[1], rl], "vol_target", control_beat_fixed=control_beat_fixed, margin=0.1
    )
    assert gate.passed is passed and gate.best_simple == "vol_target"
    assert why in gate.reason
    assert gate.reason.startswith("beat" if passed else "vol_target sizes: ")


def test_the_verdict_round_trips_and_a_malformed_one_is_refused() -> None:
    gate = sizing_gate(
        [SIMPLE[1], score("rl", 1.5, 0.99)], "vol_target", control_beat_fixed=False, margin=0.1
    )
    doc = json.loads(json.dumps(gate.to_json()))
    assert SizingGate.from_json(doc) == gate
    for bad in (
        {**doc, "passed": "yes"},
        {**doc, "best_simple": "rl"},
        {**doc, "psr": float("nan")},
        {**doc, "margin": None},
        {k: v for k, v in doc.items() if k != "reason"},
        [],
    ):
        with pytest.raises(DataError):
            SizingGate.from_json(bad)  # type: ignore[arg-type]
    # a PSR of None round-trips on a failed verdict; a passed one needs its figures
    unjudged = {**doc, "passed": False, "psr": None}
    assert dataclasses.replace(gate, passed=False, psr=None) == SizingGate.from_json(unjudged)
    with pytest.raises(DataError, match="passed"):
        SizingGate.from_json({**doc, "psr": None})


def test_a_bad_margin_or_missing_scores_are_refused() -> None:
    with pytest.raises(DataError, match="margin"):
        sizing_gate(SIMPLE, "fixed", control_beat_fixed=False, margin=-1.0)
    with pytest.raises(DataError, match="'rl'"):
        sizing_gate(SIMPLE, "fixed", control_beat_fixed=False, margin=0.1)
