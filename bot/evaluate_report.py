"""``qt evaluate``'s output: rich tables, the verdicts, and the JSON and PNG files.

Files: ``evaluate-<name>.json`` (every score, the calibration tables, the trading metrics of
the strategy and of buy and hold, the Sharpe tests with where their trial count came from),
``-calibration.png`` and ``-equity.png``, written as one batch (``bot.atomic_files``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from bot.atomic_files import atomic_files
from bot.evaluate import Evaluation, SharpeVerdict
from bot.report import fmt_num, fmt_pct, table, to_jsonable
from bot.report_folder import check_report_folder
from core.analytics import BacktestMetrics
from core.domain.market import fmt_ts
from core.ml.evaluation import BAND_Z, ScoreCard

MEANING = {
    "rows": "candles with an out-of-sample prediction and a resolved label, in the traded range",
    "base_rate": "share of those rows whose label is 1 (TP1 before the stop within the horizon)",
    "accuracy": "share where P >= 0.5 agrees with the label; majority_accuracy: always saying "
    "the more frequent class",
    "balanced_accuracy": "mean of the true-positive and true-negative rates at P >= 0.5 "
    "(0.5 for a constant)",
    "log_loss": "mean negative log-likelihood; log_loss_constant: a constant at the rows' own "
    "base rate, a bar nobody could know in advance",
    "brier": "mean squared error of P; brier_constant: the same constant's",
    "auc": "ROC AUC: the chance a random label-1 row gets a higher P than a random label-0 row",
    "auc_sigma": "standard deviation of the AUC under the null, from circular shifts of each "
    "symbol's labels against its predictions (keeps the serial correlation of overlapping "
    "labels); auc_iid_sigma: the same for independent rows, too narrow here",
    "band": f"auc_null_mean +- {BAND_Z:g} auc_sigma: an AUC inside is within noise of chance; "
    "auc_null_mean, the mean AUC over the shifts, is 0.5 for one symbol, and above it when "
    "symbols pooled differ in P's level and base rate together (no timing skill)",
    "rows_at_threshold": "rows with P >= the ensemble threshold (where the strategy enters "
    "long); hit_rate_at_threshold: the share of them whose label was 1",
    "calibration": "equal-width bins of P: rows, mean P, observed share of label 1 and two "
    "standard errors of it; calibration_error: row-weighted mean |observed - mean P|",
    "psr": "Probabilistic Sharpe Ratio: P(true daily Sharpe > 0) given the estimate, its "
    "skewness and kurtosis and the number of days (Bailey and Lopez de Prado 2012)",
    "dsr": "Deflated Sharpe Ratio: PSR against sr0, the expected best daily Sharpe of `trials` "
    "luck-only configurations whose Sharpes vary by `variance` (Bailey and Lopez de Prado "
    "2014); `trials` counts the distinct configurations recorded on this data in `ledger`",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationFiles:
    """Paths of the files ``write_evaluation`` wrote (the PNGs None without charts)."""

    json_path: Path
    calibration_png_path: Path | None
    equity_png_path: Path | None


def _f3(value: float | None) -> str:
    return fmt_num(value, 3)


def _band(card: ScoreCard) -> str:
    band = card.band
    return "-" if band is None else f"{band[0]:.3f}-{band[1]:.3f}"


def _score_rows(cards: Sequence[ScoreCard]) -> list[list[str]]:
    return [
        [
            c.name,
            f"{c.rows:,}",
            _f3(c.base_rate),
            f"{_f3(c.accuracy)} ({_f3(c.majority_accuracy)})",
            _f3(c.balanced_accuracy),
            f"{fmt_num(c.log_loss, 4)} ({fmt_num(c.log_loss_constant, 4)})",
            f"{fmt_num(c.brier, 4)} ({fmt_num(c.brier_constant, 4)})",
            _f3(c.auc),
            _band(c),
            c.chance,
            f"{c.rows_at_threshold:,}",
            _f3(c.hit_rate_at_threshold),
        ]
        for c in cards
    ]


def _trading_rows(m: BacktestMetrics, hold: BacktestMetrics) -> list[tuple[str, str, str]]:
    t = m.trades
    return [
        ("Total profit %", fmt_pct(m.total_profit_pct), fmt_pct(hold.total_profit_pct)),
        ("CAGR %", fmt_pct(m.cagr_pct), fmt_pct(hold.cagr_pct)),
        ("Sharpe", fmt_num(m.sharpe), fmt_num(hold.sharpe)),
        ("Sortino", fmt_num(m.sortino), fmt_num(hold.sortino)),
        (
            "Max drawdown %",
            fmt_pct(m.drawdown.max_drawdown_pct),
            fmt_pct(hold.drawdown.max_drawdown_pct),
        ),
        ("Trades", str(t.total), "-"),
        ("Win rate", fmt_pct(t.win_rate_pct), "-"),
        ("Profit factor", fmt_num(t.profit_factor), "-"),
        ("Fees paid", fmt_num(m.fees_paid), "0.00"),
    ]


def chance_line(ev: Evaluation) -> str:
    """Return the verdict on the ensemble's AUC (for a control: whether the control passes)."""
    e = ev.ensemble
    auc = f"ensemble AUC {_f3(e.auc)} on {e.rows:,} rows (noise band {_band(e)})"
    chance = e.chance if e.chance != "undefined" else f"undefined ({_undefined_why(e)})"
    if ev.control_seed is None:
        return f"{auc}: {chance}"
    head = f"control (--shuffle-labels, seed {ev.control_seed}): {auc}: {chance}; "
    if e.chance == "undefined":  # no verdict either way: not a failure, not a pass
        return head + "the control is inconclusive: evaluate a longer range"
    return head + (
        "the control passes: trained on permuted labels, the ensemble knows nothing"
        if e.chance == "within noise of chance"
        else "the control FAILS: trained on permuted labels it should know nothing, so "
        "something other than the labels carries the answer (a leak?)"
    )


def _undefined_why(card: ScoreCard) -> str:
    if card.auc is None:
        return "the labels scored are all of one class: no AUC"
    return "too few rows of a symbol to shift its labels by two horizons both ways: no noise band"


def _unreadable(s: SharpeVerdict) -> str:
    if not s.unreadable:
        return ""
    return f"; {s.unreadable} unreadable line(s) of {s.ledger} skipped"


def sharpe_line(ev: Evaluation) -> str:
    """Return the verdict on the strategy's Sharpe against luck."""
    s = ev.sharpe
    if s.moments is None:
        why = (
            f"only {s.days} daily return(s), so no PSR or DSR (they need 3)"
            if s.days < 3
            else "the equity curve is flat (no trade), so no PSR or DSR"
        )
        return f"Sharpe undefined: {why}{_unreadable(s)}"
    if s.trials is None or s.dsr is None:
        return (
            f"PSR {_f3(s.psr)} (a control: not counted as a trial, no DSR; {s.ledger})"
            + _unreadable(s)
        )
    return (
        f"PSR {_f3(s.psr)}, DSR {_f3(s.dsr)}: {s.trials} distinct configuration(s) evaluated on "
        f"this data, counted in {s.ledger} (shuffled-label controls not counted: {s.controls}); "
        + (
            "one trial: nothing to deflate yet, every further configuration raises the bar"
            if s.trials == 1
            else f"their daily Sharpes vary by {fmt_num(s.variance, 6)}, so luck alone would "
            f"show a best daily Sharpe of {fmt_num(s.benchmark, 4)}"
        )
        + ("; " + ("significant at 95 %" if s.dsr >= 0.95 else "not significant at 95 %"))
        + _unreadable(s)
    )


def print_evaluation(ev: Evaluation, console: Console) -> None:
    """Print the scores, the ensemble's calibration, trading against buy and hold, the Sharpe
    tests and the verdicts."""
    headers = (
        "Model", "Rows", "Base rate", "Accuracy (majority)", "Bal. acc.",
        "Log-loss (constant)", "Brier (constant)", "AUC", f"Noise band ±{BAND_Z:g}σ",
        "vs chance", f"P ≥ {ev.ensemble.threshold:g}", "Hit rate",
    )  # fmt: skip
    kind = (
        "control: labels shuffled in every retrain"
        if ev.control_seed is not None
        else "walk-forward"
    )
    title = (
        f"Out-of-sample predictions ({kind}; {ev.retrains} retrains, {ev.models} models; "
        f"{fmt_ts(ev.data.start_ms)} to {fmt_ts(ev.data.end_ms)})"
    )
    console.print(table(title, headers, _score_rows(ev.scores)))
    if len(ev.by_symbol) > 1:
        console.print(table("The ensemble per symbol", headers, _score_rows(ev.by_symbol)))
    bins = [
        (
            f"{b.lo:.1f}-{b.hi:.1f}",
            f"{b.rows:,}",
            _f3(b.mean_p),
            _f3(b.observed),
            f"±{_f3(b.observed_2se)}",
        )
        for b in ev.ensemble.calibration
        if b.rows
    ]
    console.print(
        table(
            f"Calibration of the ensemble (error {_f3(ev.ensemble.calibration_error)})",
            ("P(up)", "Rows", "Mean P", "Observed", "2 s.e."),
            bins,
        )
    )
    console.print(
        table(
            "Trading, net of fees and slippage",
            ("Metric", "Ensemble", "Buy and hold"),
            _trading_rows(ev.result.metrics, ev.hold),
        )
    )
    s = ev.sharpe
    m = s.moments
    sharpe_rows = [
        ("Sharpe (daily x √365)", fmt_num(s.annualised)),
        ("Daily Sharpe / days", f"{fmt_num(m.sharpe if m else None, 4)} / {m.n if m else '-'}"),
        (
            "Skew / kurtosis (daily)",
            f"{fmt_num(m.skew if m else None)} / {fmt_num(m.kurtosis if m else None)}",
        ),
        ("PSR (P true Sharpe > 0)", _f3(s.psr)),
        ("Trials on this data", "- (a control)" if s.trials is None else str(s.trials)),
        ("Variance of their daily Sharpes", fmt_num(s.variance, 6)),
        ("SR0: best daily Sharpe by luck", fmt_num(s.benchmark, 4)),
        ("DSR (P true Sharpe > SR0)", _f3(s.dsr)),
    ]
    console.print(table("Sharpe against luck", ("Test", "Value"), sharpe_rows))
    for line in (chance_line(ev), sharpe_line(ev)):
        console.print(escape(line), soft_wrap=True)  # one line each, however long


def _card_json(card: ScoreCard) -> dict[str, Any]:
    data: dict[str, Any] = to_jsonable(card)
    data["band"] = None if card.band is None else list(card.band)
    return data


def evaluation_json(ev: Evaluation) -> dict[str, Any]:
    """Return the evaluation as JSON-able data."""
    s = ev.sharpe
    m = s.moments
    return {
        "run_name": ev.run_name,
        "kind": "evaluation" if ev.control_seed is None else "control: shuffled labels",
        "control_seed": ev.control_seed,
        "data": {
            **ev.data.as_dict(),
            "start_utc": fmt_ts(ev.data.start_ms),
            "end_utc": fmt_ts(ev.data.end_ms),
        },
        "data_key": ev.data.key,
        "config_hash": ev.config_hash,
        "config": to_jsonable(ev.config),
        "walk_forward": {"retrains": ev.retrains, "models": ev.models},
        "predictions": [_card_json(c) for c in ev.scores],
        "ensemble_by_symbol": [_card_json(c) for c in ev.by_symbol],
        "trading": {
            "strategy": to_jsonable(ev.result.metrics),
            "buy_and_hold": to_jsonable(ev.hold),
        },
        "sharpe": {
            "annualised": s.annualised,
            "daily": None if m is None else to_jsonable(m),
            "days": s.days,
            "psr": s.psr,
            "trials": s.trials,
            "variance": s.variance,
            "sr0": s.benchmark,
            "dsr": s.dsr,
            "ledger": str(s.ledger),
            "controls_not_counted": s.controls,
            "unreadable_ledger_lines": s.unreadable,
        },
        "verdict": {"chance": chance_line(ev), "sharpe": sharpe_line(ev)},
        "meaning": MEANING,
    }


def write_evaluation(ev: Evaluation, folder: Path, *, charts: bool = True) -> EvaluationFiles:
    """Write ``evaluate-<name>.json`` and (with ``charts``) its two PNGs, all or none."""
    check_report_folder(folder, ev.run_name)
    stem = f"evaluate-{ev.run_name}"
    files = EvaluationFiles(
        json_path=folder / f"{stem}.json",
        calibration_png_path=folder / f"{stem}-calibration.png" if charts else None,
        equity_png_path=folder / f"{stem}-equity.png" if charts else None,
    )
    text = json.dumps(to_jsonable(evaluation_json(ev)), indent=2, allow_nan=False)
    with atomic_files("evaluation") as batch:
        batch.temporary(files.json_path).write_text(text + "\n", encoding="utf-8")
        if files.calibration_png_path and files.equity_png_path:
            from bot.report_charts import calibration_chart, equity_chart

            calibration_chart(batch.temporary(files.calibration_png_path), ev.scores)
            r = ev.result
            equity_chart(batch.temporary(files.equity_png_path), r.metrics, r.curve, r.benchmarks)
    return files
