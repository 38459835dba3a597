"""``qt evaluate``: the walk-forward ensemble scored honestly, out of sample.

The evaluation *is* the walk-forward backtest (``qt backtest --strategy ensemble
--walk-forward``): the learning manager on simulated time (its ``learning`` job:
``bot.walk_forward``) trains, gates, shadows and promotes the members, the
same Engine trading on them, net of fees and slippage. Afterwards the provider's final
``compute`` of each symbol's series gives every candle's ensemble P(up) and each member's;
the provider is causal, so those are the predictions the backtest traded on, each row's from
the newest set active at its close, trained on candles before it (checked here for every row
scored: a violation is an ``InvariantViolation``). The labels are the members' own (triple
barrier, the same horizon and exits). A row counts when it has a prediction and a resolved
label and its candle opens in the traded range.

Before anything is trained, the leak guard judges the features the provider will predict
from, per symbol: a column that is the label or a future value ends the command with one
line (``DataError``). The backtest's result gives the trading metrics and buy and hold; its
daily returns the Probabilistic and Deflated Sharpe Ratios, the latter against the distinct
configurations recorded on the same data (``bot.trials``). A shuffled-label run
(``shuffle_seed``) is a control: recorded, never counted as a trial, and it has no DSR.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from bot.backtest import BacktestResult
from bot.backtest_window import check_window, trading_start_ms
from bot.trials import Trial, configuration, digest, record, trials_on
from bot.walk_forward import Decision, WalkForward
from core.analytics import (
    BacktestInput,
    BacktestMetrics,
    EquityCurve,
    buy_and_hold_curve,
    compute_metrics,
)
from core.analytics.deflated_sharpe import (
    SharpeMoments,
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    sharpe_moments,
    trial_variance,
)
from core.analytics.periods import daily_series
from core.config import Settings
from core.domain.enums import CandleMarket
from core.domain.market import CandleSeries, timeframe_to_ms
from core.errors import DataError, InvariantViolation, OperationalError
from core.ml.ensemble import EnsembleProvider
from core.ml.evaluation import ScoreCard, score
from core.ml.features import feature_set
from core.ml.training import guard_features

if TYPE_CHECKING:
    from bot.cli_backtest import Run

Group = tuple[npt.NDArray[np.float64], npt.NDArray[np.int8]]


@dataclass(frozen=True, slots=True, kw_only=True)
class DataKey:
    """The data an evaluation ran on: what the ledger counts trials on."""

    symbols: tuple[str, ...]
    timeframe: str
    market: str
    start_ms: int  # the first traded candle's open
    end_ms: int  # the last candle's close
    detail: tuple[str, ...]  # "SYMBOL timeframe" of each detail series
    funded: tuple[str, ...]  # the symbols with funding rates

    def as_dict(self) -> dict[str, Any]:
        """Return the key as plain data."""
        return {
            "symbols": list(self.symbols),
            "timeframe": self.timeframe,
            "market": self.market,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "detail": list(self.detail),
            "funded": list(self.funded),
        }

    @property
    def key(self) -> str:
        """Return the key's digest."""
        return digest(self.as_dict())


@dataclass(frozen=True, slots=True, kw_only=True)
class SharpeVerdict:
    """The strategy's Sharpe against luck: PSR against 0, and DSR against the trials."""

    moments: SharpeMoments | None  # of the daily returns; None when flat or under 3 days
    days: int  # daily returns
    psr: float | None
    trials: int | None  # distinct configurations on this data (None: a control run)
    variance: float | None  # of their daily Sharpes (None: one trial)
    benchmark: float | None  # SR0: the expected best daily Sharpe of that many luck-only trials
    dsr: float | None
    ledger: Path
    controls: int
    unreadable: int

    @property
    def annualised(self) -> float | None:
        """Return the daily Sharpe times sqrt(365), as the report's Sharpe."""
        return None if self.moments is None else self.moments.sharpe * math.sqrt(365)


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """Everything ``qt evaluate`` found."""

    run_name: str
    control_seed: int | None  # the shuffled-label control's seed; None: a real evaluation
    data: DataKey
    config_hash: str
    config: Mapping[str, Any]
    scores: tuple[ScoreCard, ...]  # the ensemble first, then each member
    by_symbol: tuple[ScoreCard, ...]  # the ensemble per symbol (named by the symbol)
    result: BacktestResult
    hold: BacktestMetrics  # equal-weight buy and hold on the same candles, no fees
    sharpe: SharpeVerdict
    retrains: int  # training runs
    models: int  # candidates trained
    decisions: tuple[Decision, ...] = ()  # the learning manager's, in order
    elapsed_s: float

    @property
    def ensemble(self) -> ScoreCard:
        """Return the ensemble's scores."""
        return self.scores[0]


def guard(provider: EnsembleProvider, window: Mapping[str, CandleSeries]) -> None:
    """Refuse (``DataError``, one line) features the provider would predict from that the
    leak guard finds to hold the label or a future value."""
    for series in window.values():
        features, labels = provider.features_and_labels(series)
        guard_features(series, features, labels)


def _groups(
    provider: EnsembleProvider, window: Mapping[str, CandleSeries], trade_from: int
) -> tuple[dict[str, list[Group]], dict[str, Group]]:
    """Return each model's (P, label) rows per symbol, and the ensemble's by symbol."""
    models: dict[str, list[Group]] = {"ensemble": []}
    by_symbol: dict[str, Group] = {}
    for symbol, series in window.items():
        frame = provider.compute(series)
        _, labels = provider.features_and_labels(series)
        counted = labels.valid & (series.ts_ms >= trade_from)
        rows = np.flatnonzero(counted & np.isfinite(frame.p_up))
        _check_out_of_sample(provider, series, np.flatnonzero(np.isfinite(frame.member_p).any(1)))
        if len(rows):
            by_symbol[symbol] = (frame.p_up[rows], labels.y[rows])
            models["ensemble"].append(by_symbol[symbol])
        for j, name in enumerate(frame.members):
            mine = np.flatnonzero(counted & np.isfinite(frame.member_p[:, j]))
            if len(mine):
                models.setdefault(name, []).append((frame.member_p[mine, j], labels.y[mine]))
    return models, by_symbol


def _check_out_of_sample(
    provider: EnsembleProvider, series: CandleSeries, rows: npt.NDArray[np.int64]
) -> None:
    """Raise ``InvariantViolation`` unless every predicted row's set was trained on candles
    that all opened before the row's."""
    if not len(rows):
        return
    active = [st.active_from_ms for st in provider.sets]
    if any(a is None for a in active):
        raise InvariantViolation("a walk-forward evaluation holds a set active from the start")
    close_ms = series.ts_ms[rows] + timeframe_to_ms(series.timeframe)
    serving = np.searchsorted(np.asarray(active, dtype=np.int64), close_ms, side="left") - 1
    ends = np.array([max(m.trained_until_ms for m in st.members) for st in provider.sets])
    late = (serving < 0) | (ends[np.maximum(serving, 0)] > series.ts_ms[rows])
    if late.any():
        raise InvariantViolation(
            f"{series.symbol}: the prediction of the candle at {int(series.ts_ms[rows][late][0])} "
            "came from no set, or from one trained on that candle or later"
        )


def _check_retrains(result: BacktestResult, trainer: WalkForward) -> None:
    """Raise ``OperationalError`` when a learning check failed (it raised): the predictions
    after it were not the configuration's, so they are not evaluated."""
    runs = sum(1 for job, _ in result.job_runs if job == "learning")
    if runs > trainer.checks:
        raise OperationalError(
            f"{runs - trainer.checks} of {runs} walk-forward learning checks failed (see the "
            "log): nothing evaluated or recorded"
        )


def _hold_metrics(
    settings: Settings, result: BacktestResult, symbols: tuple[str, ...]
) -> BacktestMetrics:
    """Return the metrics of equal-weight buy and hold on the backtest's equity grid."""
    start = float(settings.paper.starting_balance)
    curve = buy_and_hold_curve(result.benchmarks, start)
    if curve is None:
        raise InvariantViolation("a backtest without benchmarks")
    return compute_metrics(
        BacktestInput(
            curve=EquityCurve.from_columns(result.curve.ts_ms, curve),
            starting_balance=start,
            trades=(),
            fees_paid=0.0,
            timeframe=result.metrics.timeframe,
            benchmarks=result.benchmarks,
            symbols=symbols,
        )
    )


def _data_key(
    settings: Settings, run: Run, window: Mapping[str, CandleSeries], trade_from: int
) -> DataKey:
    timeframe = next(iter(window.values())).timeframe
    last = max(int(s.ts_ms[-1]) for s in window.values() if len(s))
    return DataKey(
        symbols=tuple(sorted(window)),
        timeframe=timeframe,
        market=str(CandleMarket.traded(settings.exchange.market_type)),
        start_ms=trade_from,
        end_ms=last + timeframe_to_ms(timeframe),
        detail=tuple(sorted(f"{s} {d.timeframe}" for s, d in (run.detail or {}).items())),
        funded=tuple(sorted(run.funding)),
    )


def _sharpe(moments: SharpeMoments | None, *, ledger: Path, trial: Trial) -> SharpeVerdict:
    """Record the trial and judge the strategy's daily Sharpe against luck."""
    record(ledger, trial)
    count = trials_on(ledger, trial.data_key)
    psr = None if moments is None else probabilistic_sharpe(moments)
    if trial.control:
        trials = variance = benchmark = dsr = None
    else:
        trials = count.trials
        variance = trial_variance(list(count.sharpes.values())) if trials > 1 else None
        benchmark = expected_max_sharpe(trials, variance or 0.0)
        dsr = None if moments is None else deflated_sharpe(moments, trials, variance or 0.0)
    return SharpeVerdict(
        moments=moments,
        days=trial.days,
        psr=psr,
        trials=trials,
        variance=variance,
        benchmark=benchmark,
        dsr=dsr,
        ledger=ledger,
        controls=count.controls,
        unreadable=count.unreadable,
    )


async def evaluate(
    settings: Settings,
    run: Run,
    provider: EnsembleProvider,
    trainer: WalkForward,
    *,
    start_ms: int | None,
    end_ms: int | None,
    full: bool,
    run_name: str,
    ledger: Path,
    control_seed: int | None = None,
) -> Evaluation:
    """Run the walk-forward backtest of ``run`` and score its out-of-sample predictions
    (``provider`` and ``trainer`` from ``bot.walk_forward.walk_forward_ensemble``, with
    ``control_seed`` as its shuffle seed for a control)."""
    check_window(
        run.series,
        start_ms=start_ms,
        end_ms=end_ms,
        detail=run.detail,
        funding=run.funding,
        sources=run.sources,
    )
    window = {s: ser.between(None, end_ms) for s, ser in run.series.items()}
    guard(provider, window)  # before anything is trained: a leak costs nothing
    started = time.perf_counter()
    result = await run.backtest(
        settings, start_ms=start_ms, end_ms=end_ms, full=full, provider=provider, trainer=trainer
    )
    elapsed_s = time.perf_counter() - started
    _check_retrains(result, trainer)
    trade_from = trading_start_ms(window, start_ms)
    # The backtest's own histories: the provider has every set's rows of them already.
    models, by_symbol = _groups(provider, result.window, trade_from)
    if not models["ensemble"]:
        from bot.walk_forward import summary

        raise DataError(f"no out-of-sample prediction to evaluate ({summary(trainer)})")
    cfg = provider.config
    scored = [
        score(name, groups, threshold=cfg.threshold, horizon=cfg.horizon)
        for name, groups in models.items()
    ]
    per_symbol = [
        score(symbol, [group], threshold=cfg.threshold, horizon=cfg.horizon)
        for symbol, group in by_symbol.items()
    ]
    data = _data_key(settings, run, window, trade_from)
    timeframe = data.timeframe
    config = configuration(
        settings,
        horizon=cfg.horizon,
        feature_set_hash=feature_set(provider.features, timeframe).hash,
    )
    config_hash = digest(config)
    candle_ms = timeframe_to_ms(timeframe)
    daily = daily_series(result.curve, float(settings.paper.starting_balance), candle_ms)
    moments = sharpe_moments(daily.returns)
    trial = Trial(
        data_key=data.key,
        config_hash=config_hash,
        daily_sharpe=None if moments is None else moments.sharpe,
        days=len(daily.returns),
        control=control_seed is not None,
        run_name=run_name,
        recorded_utc=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        data=data.as_dict(),
        config=config,
    )
    return Evaluation(
        run_name=run_name,
        control_seed=control_seed,
        data=data,
        config_hash=config_hash,
        config=config,
        scores=tuple(scored),
        by_symbol=tuple(per_symbol),
        result=result,
        hold=_hold_metrics(settings, result, tuple(window)),
        sharpe=_sharpe(moments, ledger=ledger, trial=trial),
        retrains=trainer.runs,
        models=trainer.trained,
        decisions=tuple(trainer.decisions),
        elapsed_s=elapsed_s,
    )
