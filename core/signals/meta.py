"""The meta-strategy: per candle, the signal of the provider with the best record in the regime.

Every candidate (the EMA/RSI and mean-reversion baselines, the ML ensemble when there is one)
computes its signals on the same candles. Each of a candidate's entries is scored as a trade
of its side would have gone: the triple-barrier outcome (``core.ml.labels``: the Exit Brain's
TP1 against its stop, within ``horizon`` candles, entering at the next open) as a return. An
outcome counts only from the candle where it resolved (TP1 or the stop touched, or the
horizon reached) and only in the regime its entry was made in (``core.brains.regime``).

At candle ``t`` in regime ``R`` the pick is the candidate with the highest mean outcome over
its newest ``window`` entries made in ``R`` and resolved by ``t``, among those with at least
``min_record`` of them; with none (thin records, or the regime unknown during warm-up) it is
the ``fallback``. The frame says per row which candidate was picked, its score and record size,
and carries each candidate's own exits, so a trade leaves on the exits of the provider that
opened it (``Signal.wants_exit``); its ``exit_long``/``exit_short`` are any candidate's, the
superset a fast replay watches.

The Strategy Brain's choices in force (``use_policy``, from the policy store's snapshot) bind
it: a disabled candidate is never picked (its exits still close what it opened); the policy's
provider for a regime is picked on every candle in that regime; the primary, else the
fallback, stands in for ``fallback`` when no record qualifies (that one disabled: the first
enabled candidate; none enabled, which the brain never does: no entry).

Causal: every candidate is, the regimes are, and an outcome is used only from the row where
it resolved, so row ``t`` depends on candles ``0..t`` only (tested by cutting the future).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

import numpy as np
import numpy.typing as npt

from core.brains.exit_config import ExitConfig
from core.brains.regime import Regime, RegimeConfig, RegimeMemo, detect_regimes
from core.brains.strategy_input import MemberOutcome
from core.domain.enums import PositionSide
from core.domain.explanations import EntryExplanation
from core.domain.market import CandleSeries
from core.domain.policy import Policy
from core.ml.labels import (
    Labels,
    atr_of,
    grown_triple_barrier_labels,
    triple_barrier_labels,
)
from core.signals.base import SignalFrame, SignalProvider
from core.signals.handover import (
    compute_many,
    excluded_members,
    explain,
    last_retrains,
    member_outcomes,
    member_predictions,
    serve_members,
    serving_versions,
    use_policy,
)
from core.values import value_class

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@value_class(frozen=True, slots=True, kw_only=True)
class MetaConfig:
    """How the meta-strategy scores and picks (see module docstring)."""

    min_record: int = 10
    window: int = 50  # newest resolved entries scored per regime; 0: all of them
    horizon: int = 24
    fallback: str = "ema_rsi"
    regime: RegimeConfig = field(default_factory=RegimeConfig)

    def __post_init__(self) -> None:
        if self.min_record < 1 or self.horizon < 1 or self.window < 0:
            raise ValueError(
                "meta needs min_record >= 1, horizon >= 1, window >= 0, was "
                f"{self.min_record}, {self.horizon}, {self.window}"
            )
        if self.window and self.window < self.min_record:
            raise ValueError(
                f"meta window ({self.window}) is below min_record ({self.min_record}): "
                "no candidate could ever qualify"
            )


class MetaStrategy:
    """A ``SignalProvider`` choosing among ``candidates`` by regime (see module docstring)."""

    name = "meta"

    def __init__(
        self,
        candidates: Sequence[SignalProvider],
        config: MetaConfig | None = None,
        *,
        exits: ExitConfig | None = None,
    ) -> None:
        self.config = config or MetaConfig()
        names = [p.name for p in candidates]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"meta needs distinct candidates, was {names}")
        if self.config.fallback not in names:
            raise ValueError(f"meta fallback {self.config.fallback!r} is not among {names}")
        self.candidates = tuple(candidates)
        self.exits = exits
        self.warmup_candles = max(p.warmup_candles for p in candidates)
        # Per symbol, while its history is the same object (a backtest's whole series,
        # recomputed after each walk-forward retrain): its regimes and outcome labels.
        self._cache: dict[str, _SeriesCache] = {}
        self._memos: dict[str, RegimeMemo] = {}  # live: each history extends the last one
        self._picks: dict[str, SignalFrame] = {}  # per symbol, the newest compute's
        self._choices = _Choices(fallback=names.index(self.config.fallback))

    def use_policy(self, policy: Policy) -> bool:
        """Take the Strategy Brain's choices in force (see module docstring); return whether
        they, or a candidate's, changed."""
        names = [p.name for p in self.candidates]
        off = frozenset(names.index(p) for p in policy.disabled_strategies if p in names)
        order = (policy.primary_strategy, policy.fallback_strategy, self.config.fallback, *names)
        fallback = next(
            (names.index(p) for p in order if p in names and names.index(p) not in off), None
        )
        labels = {r.label: r for r in Regime if r is not Regime.UNKNOWN}
        regimes = tuple(
            sorted(
                (labels[r].value, names.index(p))
                for r, p in policy.regime_strategies
                if r in labels and p in names and names.index(p) not in off
            )
        )
        choices = _Choices(disabled=off, fallback=fallback, regimes=regimes)
        changed = [use_policy(p, policy) for p in self.candidates]  # every one is told
        mine, self._choices = choices != self._choices, choices
        return mine or any(changed)

    def choosable(self) -> tuple[str, ...]:
        """Return the candidates' names (what the Strategy Brain chooses among)."""
        return tuple(p.name for p in self.candidates)

    def member_outcomes(
        self, since_ms: int, as_of_ms: int
    ) -> Mapping[str, Sequence[MemberOutcome]]:
        """Return the model members' outcomes of the candidates that have members."""
        out: dict[str, Sequence[MemberOutcome]] = {}
        for p in self.candidates:
            out.update(member_outcomes(p, since_ms, as_of_ms))
        return out

    def serve_members(self, members: Sequence[Any], active_from_ms: int) -> bool:
        """Hand the candidates with members promoted ones (``serve_members``)."""
        return any([serve_members(p, members, active_from_ms) for p in self.candidates])

    def serving_versions(self) -> Mapping[str, str]:
        """Return the candidates' members' versions."""
        return {m: v for p in self.candidates for m, v in serving_versions(p).items()}

    def member_predictions(self, since_ms: int = -1) -> list[tuple[str, str, str, int, float]]:
        """Return the candidates' members' predictions (``member_predictions``)."""
        return [row for p in self.candidates for row in member_predictions(p, since_ms)]

    def last_retrains(self) -> Mapping[str, int]:
        """Return the training ends of the candidates' members."""
        return {m: t for p in self.candidates for m, t in last_retrains(p).items()}

    def compute(self, series: CandleSeries) -> SignalFrame:
        """Return the picked candidate's signals on every candle of ``series`` (causal)."""
        return self._choose(series, [p.compute(series) for p in self.candidates])

    def compute_many(self, series: Sequence[CandleSeries]) -> list[SignalFrame]:
        """Return ``compute`` of each series (one per symbol), each candidate computing them
        all at once (the ensemble batches its members' calls)."""
        by_candidate = [compute_many(p, series) for p in self.candidates]
        return [
            self._choose(s, [frames[i] for frames in by_candidate]) for i, s in enumerate(series)
        ]

    def _choose(self, series: CandleSeries, frames: Sequence[SignalFrame]) -> SignalFrame:
        """Return the picked candidate's signals, ``frames`` the candidates' on ``series``."""
        cfg = self.config
        n, k = len(series), len(self.candidates)
        cache = self._cache.get(series.symbol)
        if cache is None or cache.series is not series:
            # live, each candle a history one longer: only the labels still open again
            grown = cache is not None and series.grew_from(cache.series)
            atr = atr_of(series)  # both sides' barriers: one computation
            labels = {
                side: (
                    grown_triple_barrier_labels(
                        cache.labels[side],
                        series,
                        horizon=cfg.horizon,
                        side=side,
                        exits=self.exits,
                        atr=atr,
                    )
                    if grown and cache is not None
                    else triple_barrier_labels(
                        series, horizon=cfg.horizon, side=side, exits=self.exits, atr=atr
                    )
                )
                for side in (PositionSide.LONG, PositionSide.SHORT)
            }
            memo = self._memos.setdefault(series.symbol, RegimeMemo())
            cache = _SeriesCache(series, detect_regimes(series, cfg.regime, memo), labels)
            self._cache[series.symbol] = cache
        regimes, labels = cache.regimes, cache.labels
        score = np.full((n, k), np.nan)
        count = np.zeros((n, k), dtype=np.int64)
        for j, frame in enumerate(frames):
            score[:, j], count[:, j] = _record(frame.entry, regimes, labels, cfg)
        choices = self._choices
        enabled = np.ones(k, dtype=np.bool_)
        enabled[list(choices.disabled)] = False
        eligible = (count >= cfg.min_record) & np.isfinite(score) & enabled[None, :]
        best = np.argmax(np.where(eligible, score, -np.inf), axis=1)  # ties: the first listed
        by_record = eligible.any(axis=1)
        fallback = 0 if choices.fallback is None else choices.fallback
        chosen = np.where(by_record, best, fallback).astype(np.int8)
        forced = np.zeros(n, dtype=np.bool_)
        for code, j in choices.regimes:  # the Strategy Brain's pick in that regime
            at = regimes == code
            chosen[at], forced[at] = j, True
        # no candidate by record, none forced, and every fallback disabled: no entry
        idle = ~by_record & ~forced & (choices.fallback is None)
        rows = np.arange(n)

        def pick(column: str) -> npt.NDArray[np.generic]:
            stacked = np.stack([getattr(f, column) for f in frames], axis=1)
            return stacked[rows, chosen] if n else stacked[:, 0]

        exit_long_by = np.stack([f.exit_long for f in frames], axis=1)
        exit_short_by = np.stack([f.exit_short for f in frames], axis=1)
        entry = np.where(idle, 0, np.asarray(pick("entry"), dtype=np.int8)).astype(np.int8)
        frame = SignalFrame(
            ts_ms=series.ts_ms,
            entry=entry,
            exit_long=np.asarray(exit_long_by.any(axis=1), dtype=np.bool_),
            exit_short=np.asarray(exit_short_by.any(axis=1), dtype=np.bool_),
            confidence=np.asarray(pick("confidence"), dtype=np.float64),
            atr=np.asarray(pick("atr"), dtype=np.float64),
            sources=tuple(p.name for p in self.candidates),
            chosen=chosen,
            score=np.where(by_record | forced, score[rows, chosen] if n else np.zeros(0), np.nan),
            record=count[rows, chosen] if n else np.zeros(0, dtype=np.int64),
            exit_long_by=exit_long_by,
            exit_short_by=exit_short_by,
        )
        self._picks[series.symbol] = frame
        return frame

    def explain(
        self, symbol: str, ts_ms: int, regime: str | None = None
    ) -> EntryExplanation | None:
        """Return the explanation of the candidate picked at that candle (the ensemble's
        entries explain themselves; None for the baselines)."""
        frame = self._picks.get(symbol)
        i = None if frame is None else frame.index_of(ts_ms)
        if frame is None or i is None or frame.chosen is None:
            return None
        return explain(self.candidates[int(frame.chosen[i])], symbol, ts_ms, regime)

    def excluded(self, symbol: str) -> Mapping[str, str]:
        """Return the members the candidates (the ensemble) left out, and why."""
        return {m: r for p in self.candidates for m, r in excluded_members(p, symbol).items()}


@value_class(frozen=True, slots=True, kw_only=True)
class _Choices:
    """The Strategy Brain's choices as candidate indices: never picked, picked when no record
    qualifies (None: every fallback disabled, no entry then), picked per regime code."""

    disabled: frozenset[int] = frozenset()
    fallback: int | None = 0
    regimes: tuple[tuple[int, int], ...] = ()


@value_class(frozen=True, slots=True)
class _SeriesCache:
    """What ``compute`` reuses on the same history: it depends on the candles alone."""

    series: CandleSeries
    regimes: npt.NDArray[np.int8]
    labels: dict[PositionSide, Labels]


def _record(
    entry: npt.NDArray[np.int8],
    regimes: npt.NDArray[np.int8],
    labels: dict[PositionSide, Labels],
    cfg: MetaConfig,
) -> tuple[FloatArray, IntArray]:
    """Return, per row, one candidate's mean outcome in the row's regime over its newest
    ``window`` entries there resolved by that row, and how many that is."""
    n = len(entry)
    score, count = np.full(n, np.nan), np.zeros(n, dtype=np.int64)
    at = np.flatnonzero(entry != 0)
    if not len(at):
        return score, count
    long_, short = labels[PositionSide.LONG], labels[PositionSide.SHORT]
    is_long = entry[at] > 0
    ret = np.where(is_long, long_.ret[at], short.ret[at])
    resolved = np.where(is_long, long_.outcome[at], short.outcome[at]) != 0
    end = np.where(is_long, long_.end_idx[at], short.end_idx[at])
    # Known once resolved, or once the horizon passed unresolved (never from a cut-off end).
    known_at = np.where(resolved, end, at + cfg.horizon)
    usable = np.isfinite(ret) & (regimes[at] != Regime.UNKNOWN)
    for code in (r.value for r in Regime if r is not Regime.UNKNOWN):
        mine = usable & (regimes[at] == code)
        rows = np.flatnonzero(regimes == code)
        if not mine.any() or not len(rows):
            continue
        order = np.argsort(known_at[mine], kind="stable")
        known, outcome = known_at[mine][order], ret[mine][order]
        sums = np.concatenate(([0.0], np.cumsum(outcome)))
        upto = np.searchsorted(known, rows, side="right")  # outcomes known by each row
        since = np.maximum(upto - cfg.window, 0) if cfg.window else np.zeros_like(upto)
        size = upto - since
        with np.errstate(invalid="ignore", divide="ignore"):
            score[rows] = np.where(size > 0, (sums[upto] - sums[since]) / size, np.nan)
        count[rows] = size
    return score, count
