"""``qt evaluate``'s verdict lines on hand-made evaluations (only what each line reads)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from bot.evaluate import SharpeVerdict
from bot.evaluate_report import chance_line, sharpe_line
from core.analytics.deflated_sharpe import sharpe_moments
from core.ml.evaluation import score


def _ev(groups: list[tuple[Any, Any]], control_seed: int | None = None, **sharpe: Any) -> Any:
    card = score("ensemble", groups, threshold=0.6, horizon=12)
    moments = sharpe_moments(np.random.default_rng(0).normal(0.001, 0.01, 60))
    verdict = {
        "moments": moments, "psr": 0.6, "trials": 1, "variance": None, "benchmark": 0.0,
        "dsr": 0.6, "ledger": Path("trials.jsonl"), "controls": 0, "unreadable": 0, "days": 60,
        **sharpe,
    }  # fmt: skip
    return SimpleNamespace(
        scores=(card,), ensemble=card, control_seed=control_seed, sharpe=SharpeVerdict(**verdict)
    )


def _rows(n: int, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    return rng.random(n), (rng.random(n) < 0.4).astype(np.int8)


def test_a_control_too_short_for_a_noise_band_is_inconclusive_not_a_failure() -> None:
    line = chance_line(_ev([_rows(30)], control_seed=0))  # < 4 horizons + 2 rows: no band
    assert "FAILS" not in line and "leak" not in line
    assert "the control is inconclusive" in line
    assert "too few rows" in line


def test_an_undefined_verdict_says_why() -> None:
    assert "too few rows" in chance_line(_ev([_rows(30)]))
    p, _ = _rows(400)
    assert "one class" in chance_line(_ev([(p, np.ones(400, dtype=np.int8))]))
    assert chance_line(_ev([_rows(400)])).endswith("within noise of chance")


def test_unreadable_ledger_lines_are_named_in_the_sharpe_verdict() -> None:
    assert "unreadable" not in sharpe_line(_ev([_rows(400)]))
    line = sharpe_line(_ev([_rows(400)], unreadable=2))
    assert "2 unreadable line(s) of trials.jsonl skipped" in line
    control = sharpe_line(_ev([_rows(400)], trials=None, dsr=None, unreadable=1))
    assert "1 unreadable line(s)" in control


def test_too_few_days_for_a_sharpe_is_not_called_a_flat_curve() -> None:
    assert "flat" in sharpe_line(_ev([_rows(400)], moments=None, psr=None, dsr=None, days=40))
    line = sharpe_line(_ev([_rows(400)], moments=None, psr=None, dsr=None, days=2))
    assert "flat" not in line and "only 2 daily return(s)" in line
    short = _ev([_rows(400)], moments=None, psr=None, dsr=None, days=2, unreadable=1)
    assert "1 unreadable line(s)" in sharpe_line(short)  # said however short the run
