"""The Strategy Brain on real trades: does its primary pick say which baseline does better next?

Backtests each baseline (ema_rsi, mean_reversion) alone on the real candles (BTC/USDT and
ETH/USDT 1h from ../shared/data, 2024-01-01 to 2026-01-01, default settings), then rolls the
review every --step-days over the trades closed in the --window-days before, each review
starting from the previous one's choices (as a job would), and follows its primary over the
next step: the pnl of that provider's trades closed then, nothing while none is chosen. Prints
how often the choices changed and the pnl of following it against each baseline alone and
against a pick made with hindsight (the better one each step). Also the review's latency on
the whole record plus 4 members x 2,000 predictions (median and p99 of 50 runs).

A provider's trades are those it made trading alone: choosing it would have made the same
trades only while nothing else held the symbol, so this measures the pick, not a portfolio.

Usage: .venv/bin/python bench/strategy_review.py [--data ../shared/data] [--window-days 90]
       [--step-days 7]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.brains.strategy_input import MemberRecord
    from core.domain.trades import ClosedTrade

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAY_MS = 86_400_000
START_MS = 1_704_067_200_000  # 2024-01-01
END_MS = 1_767_225_600_000  # 2026-01-01
PROVIDERS = ("ema_rsi", "mean_reversion")


async def _trades(data: Path) -> list[ClosedTrade]:
    from bot.backtest import run_backtest
    from bot.market_rules import resolved
    from core.config import load_settings
    from core.market.importers import read_candle_file

    series = {}
    for name in ("BTC_USDT-1h.csv.gz", "ETH_USDT-1h.csv.gz"):
        loaded = read_candle_file(data / name).series
        series[loaded.symbol] = loaded
    out: list[ClosedTrade] = []
    for provider in PROVIDERS:
        settings = load_settings(
            None, strategy={"provider": provider}, trading={"symbols": list(series)}
        )
        rules = resolved(settings, series, series=series)
        started = time.perf_counter()
        result = await run_backtest(settings, series, start_ms=START_MS, end_ms=END_MS, rules=rules)
        pnl = sum(float(t.pnl) for t in result.trades)
        print(
            f"{provider}: {len(result.trades)} trades, pnl {pnl:+.2f} "
            f"({time.perf_counter() - started:.1f} s)"
        )
        out.extend(t if t.provider else _with(t, provider) for t in result.trades)
    return out


def _with(trade: ClosedTrade, provider: str) -> ClosedTrade:
    import dataclasses

    return dataclasses.replace(trade, provider=provider)


def _members(as_of_ms: int) -> tuple[MemberRecord, ...]:
    from core.brains.strategy_input import MemberRecord
    from core.brains.strategy_stats import Prediction

    rng = random.Random(7)
    return tuple(
        MemberRecord(
            member=name,
            predictions=tuple(
                Prediction(
                    ts_ms=as_of_ms - k * 3_600_000,
                    p_up=rng.random(),
                    up=rng.random() < 0.5,
                    regime=rng.choice(("trend_low_vol", "range_low_vol")),
                )
                for k in range(2_000)
            ),
        )
        for name in ("xgb", "lgbm", "nhits", "patchtst")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--window-days", type=int, default=90)
    parser.add_argument("--step-days", type=int, default=7)
    args = parser.parse_args()

    from core.brains.strategy import review_strategies
    from core.brains.strategy_input import (
        StrategyReviewConfig,
        StrategyReviewInput,
        StrategyState,
    )

    trades = asyncio.run(_trades(args.data))
    cfg = StrategyReviewConfig(window_ms=args.window_days * DAY_MS)
    state = StrategyState()
    step = args.step_days * DAY_MS
    followed, alone, hindsight = 0.0, dict.fromkeys(PROVIDERS, 0.0), 0.0
    aside = dict.fromkeys(PROVIDERS, 0.0)  # what the baselines made while none was chosen
    picked: dict[str, int] = {}
    steps = changes = disabled_steps = none_steps = 0
    as_of = START_MS + args.window_days * DAY_MS
    while as_of + step <= END_MS:
        seen = tuple(t for t in trades if t.closed_ms <= as_of)
        review = review_strategies(
            StrategyReviewInput(
                as_of_ms=as_of, trades=seen, providers=PROVIDERS, current=state, config=cfg
            )
        )
        changes += review.state.primary != state.primary
        state = review.state
        nxt = {
            p: sum(
                float(t.pnl)
                for t in trades
                if t.provider == p and as_of < t.closed_ms <= as_of + step
            )
            for p in PROVIDERS
        }
        for p in PROVIDERS:
            alone[p] += nxt[p]
        hindsight += max(0.0, *nxt.values())
        followed += nxt[state.primary] if state.primary else 0.0
        none_steps += state.primary is None
        picked[state.primary or "none"] = picked.get(state.primary or "none", 0) + 1
        if state.primary is None:
            for p in PROVIDERS:
                aside[p] += nxt[p]
        disabled_steps += bool(state.disabled)
        steps += 1
        as_of += step
    print(
        f"{steps} reviews every {args.step_days} days over {args.window_days}-day windows: "
        f"primary changed {changes} times, none chosen in {none_steps}, "
        f"something disabled in {disabled_steps}; primary per review {picked}"
    )
    print(
        "pnl over the following steps: following the primary "
        f"{followed:+.2f}; "
        + "; ".join(f"{p} alone {v:+.2f}" for p, v in alone.items())
        + f"; the better one with hindsight (or nothing) {hindsight:+.2f}"
    )
    print(
        "while none was chosen the baselines made "
        + "; ".join(f"{p} {v:+.2f}" for p, v in aside.items())
    )

    inp = StrategyReviewInput(
        as_of_ms=END_MS,
        trades=tuple(trades),
        members=_members(END_MS),
        providers=PROVIDERS,
        config=StrategyReviewConfig(window_ms=0),
    )
    times = []
    for _ in range(50):
        started = time.perf_counter()
        review_strategies(inp)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(
        f"one review of {len(trades)} trades and 4 x 2,000 predictions: "
        f"p50 {statistics.median(times):.1f} ms, p99 {times[int(0.99 * (len(times) - 1))]:.1f} ms"
    )


if __name__ == "__main__":
    main()
