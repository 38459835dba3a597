"""The cost-aware half of a candidate's validation: the strategy that uses the member,
backtested on the training run's held-out candles through the same Engine.

The member trades alone as the ensemble (its only member, the configured threshold, exits
and sizing; the brains off: the strategy, not the risk layer), from the run's first
validation candle to the last candle closed, net of the ``QT__PAPER__*`` fees and slippage,
as ``qt backtest --strategy ensemble`` trades. The
candidate's weights were fitted on the rows before that window, but the window chose when
early stopping stopped, so its figure leans optimistic; its champion's, trained before the
window, does not (a champion whose training reaches into the window is not backtested: the
two would not be comparable). The learning manager records both with the candidate and
rejects one that loses clearly more than its champion (``QT__LEARNING__BACKTEST_MARGIN_PCT``).

Each backtest runs in a worker process (``holdout_backtest`` is module level: it is sent to
a spawned one), all of a run's at once, bounded by the run's timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence

from bot.candidate_training import WorkerPool
from core.config import Settings
from core.domain.market import CandleSeries, timeframe_to_ms
from core.ml.training import CandidateFit, CandidateRun, ChampionRef

HoldoutScore = dict[str, float]


def holdout_backtest(
    settings: Settings,
    series: Sequence[CandleSeries],
    member: str,
    files: Mapping[str, bytes],
    start_ms: int,
) -> HoldoutScore:
    """Backtest ``member`` (rebuilt from ``files``) alone from ``start_ms`` on ``series``;
    return its net return, trades, max drawdown and fees."""
    return asyncio.run(_backtest(settings, series, member, files, start_ms))


async def _backtest(
    settings: Settings,
    series: Sequence[CandleSeries],
    member: str,
    files: Mapping[str, bytes],
    start_ms: int,
) -> HoldoutScore:
    from bot.backtest import run_backtest
    from bot.trading import ensemble_config_from, exit_config_from
    from core.ml.ensemble import EnsembleMember, EnsembleProvider
    from core.ml.members import MEMBERS

    # the member's strategy, not the risk layer: the brains' hourly assessments would cost
    # four times the rest of the run
    settings = settings.model_copy(
        update={"brains": settings.brains.model_copy(update={"enabled": False})}
    )
    provider = EnsembleProvider(
        [
            EnsembleMember(
                name=member,
                member=MEMBERS[member].from_files(dict(files)),
                # fitted on the rows before the window (the window chose the stopping point)
                trained_until_ms=start_ms,
                version_id=f"{member}@holdout",
            )
        ],
        ensemble_config_from(settings),
        exits=exit_config_from(settings.exits),
        timeframe=settings.trading.timeframe,
    )
    # the window and the candles its features look back on: the older ones change nothing
    lead_ms = provider.warmup_candles * timeframe_to_ms(settings.trading.timeframe)
    result = await run_backtest(
        settings,
        {
            s.symbol: s.between(start_ms - lead_ms, None)
            for s in series
            if len(s) and int(s.ts_ms[-1]) >= start_ms
        },
        start_ms=start_ms,
        provider=provider,
    )
    m = result.metrics
    return {
        "return_pct": float(m.total_profit_pct),
        "trades": float(len(result.trades)),
        "max_drawdown_pct": float(m.drawdown.max_drawdown_pct),
        "fees": float(m.fees_paid),
    }


async def backtest_candidates(
    workers: WorkerPool,
    settings: Settings,
    series: Sequence[CandleSeries],
    run: CandidateRun,
    champions: Mapping[str, ChampionRef],
    *,
    timeout_s: float,
) -> CandidateRun:
    """Return ``run`` with each fit's holdout backtest and its champion's (see the module
    docstring); one that fails or outlasts ``timeout_s`` is left out with a note, never
    failing the candidate (the workers of one still running are stopped)."""
    loop = asyncio.get_running_loop()
    pool = workers.get()
    start = run.data.valid_start_ms
    jobs: dict[tuple[str, str], asyncio.Future[HoldoutScore]] = {}
    for name, fit in run.fits.items():
        jobs[(name, "candidate")] = loop.run_in_executor(
            pool, holdout_backtest, settings, list(series), name, fit.fit.files, start
        )
        champion = champions.get(name)
        if champion is not None and champion.trained_until_ms <= start:
            jobs[(name, "champion")] = loop.run_in_executor(
                pool, holdout_backtest, settings, list(series), name, champion.files, start
            )
    done: dict[tuple[str, str], HoldoutScore] = {}
    notes: dict[tuple[str, str], str] = {}
    if jobs:
        _, pending = await asyncio.wait(jobs.values(), timeout=timeout_s)
        if pending:
            await workers.discard()  # a backtest still running must not outlive its run
        for key, job in jobs.items():
            if job in pending:
                job.cancel()
                notes[key] = f"timed out after {timeout_s:g} s"
            elif (exc := job.exception()) is not None:
                notes[key] = " ".join(f"{type(exc).__name__}: {exc}".split())
            else:
                done[key] = job.result()
    fits: dict[str, CandidateFit] = {}
    for name, fit in run.fits.items():
        why = [
            f"{who}: {notes[(name, who)]}"
            for who in ("candidate", "champion")
            if (name, who) in notes
        ]
        if name in champions and (name, "champion") not in jobs:
            why.append("champion: trained into the window, not comparable")
        fits[name] = dataclasses.replace(
            fit,
            backtest=done.get((name, "candidate")),
            champion_backtest=done.get((name, "champion")),
            backtest_note="; ".join(why),
        )
    return dataclasses.replace(run, fits=fits)
