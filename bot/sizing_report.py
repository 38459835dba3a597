"""``qt evaluate --sizing``'s output: the methods' table, the verdicts and a JSON file.

The file is ``evaluate-<name>-sizing.json`` beside the evaluation's: every method's figures,
the folds, the candidates' features, the RL budget and the gate's verdict, with a ``meaning``
of each figure. Beside it, ``evaluate-<name>-sizing-policy/``: the policy trained on every
candidate, sealed, its verdict inside (what ``QT__SIZING__POLICY_DIR`` loads; live sizing uses
it only when the verdict passed, ``core.ml.rl.gate``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from bot.atomic_files import atomic_files
from bot.evaluate import Evaluation
from bot.report import fmt_num, fmt_pct, table, to_jsonable
from bot.sizing_comparison import CONTROL, SizingComparison, compare_sizing
from core.domain.market import fmt_ts
from core.ml.rl.gate import LIVE_METHOD
from core.ml.rl.policy import save_policy
from core.ml.rl.scorecard import BEYOND_NOISE, MIN_TRADES_TO_JUDGE, MethodScore, beats_baseline
from core.ml.rl.walk_sizes import WalkSizesConfig

LABELS = {
    "fixed": "fixed-fractional",
    "vol_target": "volatility target",
    "kelly": "fractional Kelly",
    "rl": "RL (PPO)",
    CONTROL: "RL, shuffled rewards (control)",
}
MEANING = {
    "final_equity": "realised equity at the last close, starting at 1 at the first "
    "out-of-sample decision; each trade makes multiplier x its unit outcome x the realised "
    "equity at its decision",
    "cagr_pct": "compound annual growth over the out-of-sample span (the same for every method)",
    "max_drawdown_pct": "largest fall of the realised equity from its peak, percent",
    "calmar": "CAGR over the maximum drawdown",
    "sharpe": "mean over standard deviation of the daily returns, x sqrt(365); scale-free, so "
    "a constant multiplier has fixed sizing's Sharpe",
    "dsr": "Deflated Sharpe Ratio with the four methods as the trials (the control is none)",
    "above_baseline": "PSR against fixed sizing's daily Sharpe: the probability that the "
    f"method's true Sharpe is above it; above {BEYOND_NOISE} it beats fixed sizing; none "
    f"under {MIN_TRADES_TO_JUDGE} trades",
    "edge_pct": "sum(multiplier x unit outcome) / sum(multiplier), percent: the mean outcome "
    "per unit of size, fixed sizing's mean for any constant size; what the sizing selected",
    "turnover": "notional entered and exited per year, in equity",
    "mean_multiplier": "mean size multiplier over the out-of-sample candidates (1: the engine's)",
    "trades": "out-of-sample candidates sized above 0",
}


def control_passes(cmp: SizingComparison) -> bool:
    """Return whether the shuffled-reward control did no better than fixed sizing beyond
    noise (``core.ml.rl.scorecard.beats_baseline``)."""
    return not beats_baseline(cmp.score(CONTROL))


def _row(s: MethodScore) -> list[str]:
    return [
        LABELS[s.method],
        fmt_num(s.final_equity, 3),
        fmt_pct(s.cagr_pct),
        fmt_pct(s.max_drawdown_pct),
        fmt_num(s.calmar),
        fmt_num(s.sharpe),
        fmt_num(s.dsr, 3),
        fmt_num(s.above_baseline, 3),
        fmt_pct(s.edge_pct, 3),
        fmt_num(s.turnover, 1),
        fmt_num(s.mean_multiplier),
        str(s.trades),
    ]


def print_sizing(cmp: SizingComparison, console: Console) -> None:
    """Print the candidates, the folds, the table and the verdicts."""
    c = cmp.trades.candidates
    ppo = cmp.config.ppo
    console.print(
        f"sizing: {len(c)} closed trades as candidates (features: "
        f"{escape(', '.join(c.feature_names))}); {len(cmp.folds)} out-of-sample folds of "
        f"{', '.join(str(len(f.test)) for f in cmp.folds)} candidates from "
        f"{fmt_ts(cmp.folds[0].start_ms)}, each RL policy trained on the trades closed "
        f"before its fold ({', '.join(str(len(f.train)) for f in cmp.folds)}); "
        f"{2 * len(cmp.folds) + 1} PPO trainings (the folds', the control's, and the policy "
        f"of every candidate) of {ppo.total_timesteps:,} timesteps in {cmp.train_s:.0f} s"
    )
    headers = [
        "Method",
        "Final equity",
        "CAGR",
        "Max DD",
        "Calmar",
        "Sharpe",
        "DSR",
        "P(> fixed)",
        "Edge/size",
        "Turnover/yr",
        "Mean size",
        "Trades",
    ]
    console.print(table("Sizing, out of sample", headers, [_row(s) for s in cmp.scores]))
    rl, fixed, control = cmp.score("rl"), cmp.score("fixed"), cmp.score(CONTROL)
    console.print(
        f"RL against fixed sizing: {_judged(rl, fixed)}; final equity "
        f"{fmt_num(rl.final_equity, 3)} against {fmt_num(fixed.final_equity, 3)}, edge per "
        f"unit of size {fmt_pct(rl.edge_pct, 3)} against {fmt_pct(fixed.edge_pct, 3)}"
    )
    verdict = (
        "passes: no better than fixed sizing beyond noise"
        if control_passes(cmp)
        else "FAILS: better than fixed sizing on shuffled rewards (something other than the "
        "outcomes carries the answer: a leak into the state?)"
    )
    console.print(f"control (shuffled rewards): {_judged(control, fixed)}: {verdict}")


def _judged(s: MethodScore, fixed: MethodScore) -> str:
    if s.above_baseline is None:
        return f"{s.trades} trades taken, too few to judge its Sharpe (under {MIN_TRADES_TO_JUDGE})"
    better = "beats" if beats_baseline(s) else "does not beat"
    return (
        f"Sharpe {fmt_num(s.sharpe)} against {fmt_num(fixed.sharpe)}, P(true Sharpe above "
        f"fixed's) {fmt_num(s.above_baseline, 3)}: {better} it (beyond noise: above "
        f"{BEYOND_NOISE})"
    )


def sizing_json(cmp: SizingComparison) -> dict[str, Any]:
    """Return the comparison as plain data."""
    c = cmp.trades.candidates
    return {
        "candidates": len(c),
        "out_of_sample": cmp.out_of_sample,
        "features": list(c.feature_names),
        "folds": [
            {"start_ms": f.start_ms, "train": len(f.train), "test": len(f.test)} for f in cmp.folds
        ],
        "ppo": cmp.config.ppo.to_json(),
        "train_s": cmp.train_s,
        "control_passes": control_passes(cmp),
        "gate": cmp.gate.to_json(),
        "methods": {
            s.method: {k: getattr(s, k) for k in ("control", "daily_sharpe", *MEANING)}
            for s in cmp.scores
        },
        "meaning": MEANING,
    }


def write_sizing(cmp: SizingComparison, folder: Path, run_name: str) -> Path:
    """Write ``evaluate-<name>-sizing.json`` into ``folder`` and return its path."""
    path = folder / f"evaluate-{run_name}-sizing.json"
    text = json.dumps(to_jsonable(sizing_json(cmp)), indent=2, allow_nan=False)
    with atomic_files("sizing comparison") as batch:
        batch.temporary(path).write_text(text + "\n", encoding="utf-8")
    return path


def write_policy(cmp: SizingComparison, folder: Path, run_name: str) -> tuple[Path, str]:
    """Write the judged policy into ``evaluate-<name>-sizing-policy`` in ``folder`` (an
    earlier one replaced only once the new one is sealed); return it and its sha256."""
    dest = folder / f"evaluate-{run_name}-sizing-policy"
    fresh, old = (dest.with_name(f"{dest.name}.{kind}-{os.getpid()}") for kind in ("new", "old"))
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    sha = save_policy(cmp.policy, fresh)
    if dest.exists():
        dest.rename(old)
    fresh.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest, sha


def print_gate(cmp: SizingComparison, where: Path, sha: str, console: Console) -> None:
    """Say whether the policy may size live trades, and the settings that choose it."""
    gate = cmp.gate
    live = LIVE_METHOD[gate.best_simple]
    if gate.passed:
        console.print(
            f"RL gate: passed ({escape(gate.reason)}, margin {gate.margin:g}); to size live "
            f"trades with it: QT__SIZING__METHOD=rl QT__SIZING__POLICY_DIR={escape(str(where))} "
            f"QT__SIZING__POLICY_SHA256={sha}"
        )
        return
    console.print(
        f"RL gate: not passed ({escape(gate.reason)}); its policy, saved in "
        f"{escape(str(where))}, sizes no live trade (with QT__SIZING__METHOD=rl the "
        f"{LABELS[gate.best_simple]} method sizes instead): choose QT__SIZING__METHOD={live}"
    )


async def evaluate_sizing(
    ev: Evaluation,
    folder: Path,
    console: Console,
    config: WalkSizesConfig | None = None,
    *,
    margin: float = 0.0,
) -> SizingComparison:
    """Compare the sizing methods on the evaluation's trades, judge the policy by ``margin``
    of Sharpe over the best simple method, print and write both."""
    cmp = await compare_sizing(ev.result, config, margin=margin)
    print_sizing(cmp, console)
    where, sha = write_policy(cmp, folder, ev.run_name)
    print_gate(cmp, where, sha, console)
    console.print(f"sizing: {escape(str(write_sizing(cmp, folder, ev.run_name)))}")
    return cmp
