"""``qt evaluate --sizing`` on a real walk-forward: the ensemble's trades become candidates
with its explanation's confidence, every method sizes the same out-of-sample ones, PPO trains
in spawned workers (a tiny budget here), and the table, the verdicts and the JSON come out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bot.sizing_comparison import CONTROL, METHODS
from bot.sizing_report import evaluate_sizing
from core.config import Settings
from core.ml.rl.gate import LIVE_METHOD, best_simple
from core.ml.rl.policy import PpoParams, load_policy
from core.ml.rl.walk_sizes import WalkSizesConfig
from tests.integration.test_evaluate import _evaluate
from tests.integration.test_evaluate import settings as settings  # the fixture
from tests.planted import regimes

TINY = WalkSizesConfig(
    folds=3,
    min_train=5,
    ppo=PpoParams(total_timesteps=512, n_steps=256, batch_size=64, n_epochs=2),
)


@pytest.mark.slow
async def test_the_sizing_comparison_of_a_walk_forward(settings: Settings, tmp_path: Path) -> None:
    ev = await _evaluate(settings, regimes(seed=1, drift=0.7), tmp_path / "trials.jsonl")
    out = io.StringIO()
    cmp = await evaluate_sizing(ev, tmp_path, Console(file=out, width=250), TINY)

    trades = cmp.trades
    c = trades.candidates
    assert len(c) == len(ev.result.trades) >= 15
    assert c.feature_names[:2] == ("confidence", "agreement")  # the ensemble explained them
    assert (c.features[:, 0] >= 0.5).all()  # it enters long at P(up) >= its threshold
    assert len(cmp.folds) == 2  # three parts: the first only trains
    assert cmp.out_of_sample == sum(len(f.test) for f in cmp.folds)
    assert [s.method for s in cmp.scores] == list(METHODS)
    fixed = cmp.score("fixed")
    assert fixed.mean_multiplier == 1.0 and fixed.trades == cmp.out_of_sample
    # Fixed sizing replays the engine's own trades: its equity follows the backtest's from
    # the first out-of-sample decision (realised, not marked, so not to the cent).
    oos = np.concatenate([f.test for f in cmp.folds])
    engine = ev.result.curve
    start = float(engine.equity[np.searchsorted(engine.ts_ms, c.decision_ms[oos[0]])])
    end = float(engine.equity[-1])
    assert fixed.final_equity == pytest.approx(end / start, rel=0.02)

    text = out.getvalue()
    assert "Sizing, out of sample" in text and "RL, shuffled rewards (control)" in text
    assert "RL against fixed sizing: " in text and "control (shuffled rewards): " in text
    report = json.loads((tmp_path / "evaluate-t-sizing.json").read_text())
    assert set(report["methods"]) == set(METHODS)
    assert report["methods"][CONTROL]["control"] is True
    assert report["methods"][CONTROL]["dsr"] is None
    assert report["candidates"] == len(c) and report["features"][:1] == ["confidence"]

    # the gate: the policy trained on every candidate is saved with its verdict, which live
    # sizing reads (it sizes only when passed); the table names the settings that choose it
    gate = cmp.gate
    assert report["gate"] == gate.to_json()
    assert gate.best_simple == best_simple(cmp.scores)
    saved = load_policy(tmp_path / "evaluate-t-sizing-policy")
    # trained until its data ended: the walk's last candle, at or after its newest trade
    assert saved.gate == gate and saved.trained_until_ms == int(ev.result.curve.ts_ms[-1])
    assert saved.trained_until_ms >= int(c.close_ms.max())
    said = " ".join(text[text.index("RL gate: ") :].split())  # unwrapped
    if gate.passed:
        assert said.startswith("RL gate: passed") and "QT__SIZING__POLICY_SHA256=" in said
    else:
        live = LIVE_METHOD[gate.best_simple]
        assert said.startswith("RL gate: not passed")
        assert f"choose QT__SIZING__METHOD={live}" in said
