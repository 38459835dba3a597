"""The ensemble signal provider: members' P(up), weighted by their recent out-of-sample record.

Per candle: the feature set (causal), each member's P(up) (P that TP1 comes before the stop,
the label they were trained on), and weights from a softmax of each member's negative rolling
log-loss over the labels resolved by then (``core.ml.ensemble_weights``), bounded per member.
A member is left out where its trailing output fails ``core.ml.health`` (near-constant, NaN,
outside [0, 1]), and for the whole series when it is disabled, its recorded validation output
was degenerate, or it refuses the features; ``exclusions`` says which and why, for the caller
to publish. Entry long when P(up) reaches ``threshold``; short when shorts are allowed and
1 - P(up) does (a stand-in: the members learn the long barrier, so "down" includes "neither").
``confidence`` is the probability of the side, which the Exit Brain scales on. The frame
carries each member's probability and weight per row, to explain a decision.

The Strategy Brain's weights in force (``use_policy``: ``policy.ensemble_weights``, its bounded
softmax of the members' pooled record with hysteresis) replace the rolling ones on every row
whose active members it all weighs; ``member_outcomes`` is the record it reviews.

Versions over time: the provider holds a history of member sets, each active from a time
(``add_set``; a walk-forward retrain adds one, active from when it was trained, on candles
closed before). A row is predicted by the newest set active at its candle's close (active
strictly before it: the candle closing at the retrain was decided before it); rows before the
first set have no entry. The set given to the constructor is active from the start.

Causal: row ``t`` uses candles ``0..t`` only: features are causal, each set's members are
fixed, a label counts for the weights only from the row where it resolved, and health looks
back only. Adding a set never changes a row that closed by its activation time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from core.brains.exit_config import ExitConfig
from core.brains.regime import Regime, detect_regimes
from core.brains.strategy_input import MemberOutcome
from core.domain.explanations import EntryExplanation, FeaturePush, MemberVote
from core.domain.market import CandleSeries, timeframe_to_ms
from core.domain.policy import Policy
from core.errors import DataError, QTError
from core.ml.ensemble_weights import (
    ResolvedLosses,
    bounded_softmax,
    resolved_losses,
    windowed_loss,
)
from core.ml.feature_set import FeatureMatrix
from core.ml.features import FeatureConfig, compute_features, feature_set
from core.ml.health import MIN_STD, health
from core.ml.labels import (
    Labels,
    atr_of,
    grown_triple_barrier_labels,
    triple_barrier_labels,
)
from core.ml.member import Member
from core.signals.base import SignalFrame
from core.values import value_class

FloatArray = npt.NDArray[np.float64]
EXPLAIN_TOP_K = 3  # features per member in an entry's explanation


@value_class(frozen=True, slots=True, kw_only=True)
class EnsembleConfig:
    """How members are combined and when the ensemble enters."""

    threshold: float = 0.6
    allow_short: bool = False
    window: int = 168  # resolved labels in each member's rolling log-loss
    min_labels: int = 24  # fewer known for any member: equal weights
    temperature: float = 0.05  # log-loss differences are small: 0.05 makes 0.03 a 1.8x weight
    min_weight: float = 0.1
    max_weight: float = 0.9
    disabled: tuple[str, ...] = ()
    horizon: int = 24  # the label the members learned (TrainConfig.horizon)
    health_window: int = 48

    def __post_init__(self) -> None:
        if not 0.5 < self.threshold < 1.0:
            raise ValueError(f"ensemble threshold must be in (0.5, 1), was {self.threshold}")
        if not 0.0 <= self.min_weight <= self.max_weight <= 1.0:
            raise ValueError(
                "ensemble weights need 0 <= min_weight <= max_weight <= 1, were "
                f"{self.min_weight}, {self.max_weight}"
            )
        if self.window < 1 or self.min_labels < 0 or self.health_window < 2:
            raise ValueError("ensemble window >= 1, min_labels >= 0, health_window >= 2")
        if not self.temperature > 0:
            raise ValueError(f"ensemble temperature must be > 0, was {self.temperature}")


@value_class(frozen=True, slots=True, kw_only=True)
class EnsembleMember:
    """A loaded member and the end of the window it was trained on (exclusive, ms)."""

    name: str
    member: Member
    trained_until_ms: int
    version_id: str = ""
    healthy_on_validation: bool = True


@value_class(frozen=True, slots=True, kw_only=True)
class MemberSet:
    """Members serving rows whose candle closes after ``active_from_ms`` (None: all rows)."""

    members: tuple[EnsembleMember, ...]
    active_from_ms: int | None = None


@value_class(frozen=True, slots=True, kw_only=True)
class EnsembleFrame(SignalFrame):
    """Signals plus, per row, the ensemble's P(up), each member's P(up) and weight."""

    p_up: FloatArray
    members: tuple[str, ...]
    member_p: FloatArray  # (rows, members), NaN where a member has no prediction
    weights: FloatArray  # (rows, members), 0 where a member is left out
    excluded: Mapping[str, str] = field(default_factory=dict)  # at the newest row: why


class EnsembleProvider:
    """The ML ensemble as a ``SignalProvider`` (see module docstring)."""

    name = "ensemble"

    def __init__(
        self,
        members: Sequence[EnsembleMember],
        config: EnsembleConfig | None = None,
        *,
        exits: ExitConfig | None = None,
        features: FeatureConfig | None = None,
        timeframe: str = "1h",
        walk_forward: bool = False,
    ) -> None:
        if not members and not walk_forward:
            raise ValueError("the ensemble needs at least one member")
        self.sets: list[MemberSet] = [MemberSet(members=tuple(members))] if members else []
        self.config = config or EnsembleConfig()
        self.exits = exits
        self.features = features
        self.warmup_candles = feature_set(features, timeframe).warmup_candles + (
            self.config.health_window
        )
        self.exclusions: dict[str, str] = {}  # after each compute: members left out, why
        self.exclusions_by_symbol: dict[str, dict[str, str]] = {}
        self._cache: dict[str, _SeriesCache] = {}
        self._frames: dict[str, EnsembleFrame] = {}  # the newest compute of each symbol
        # The Strategy Brain's weights in force (policy.ensemble_weights); none: its own
        self._policy_weights: tuple[tuple[str, float], ...] = ()

    def use_policy(self, policy: Policy) -> bool:
        """Weigh by the Strategy Brain's weights in force (``policy.ensemble_weights``; none:
        by the members' own rolling record); return whether they changed (the rows' weights
        are then computed again, their predictions reused)."""
        weights = tuple(sorted(policy.ensemble_weights))
        if weights == self._policy_weights:
            return False
        self._policy_weights = weights
        for cache in self._cache.values():
            cache.chunks.clear()
        return True

    def member_outcomes(self, since_ms: int, as_of_ms: int) -> dict[str, list[MemberOutcome]]:
        """Return each member's out-of-sample predictions (rows at or after its training
        window's end) of candles that closed in ``(since_ms, as_of_ms]`` whose labels resolved
        by ``as_of_ms``, from each symbol's newest compute; what the Strategy Brain reviews. A
        P(up) outside [0, 1] (a broken member, left out of the ensemble) is not handed on; a
        member with none is absent. Read it while no compute runs (``SignalBook.quiet``)."""
        out: dict[str, list[MemberOutcome]] = {}
        for symbol, frame in self._frames.items():
            cache = self._cache.get(symbol)
            if cache is None or len(cache.series) != len(frame.ts_ms):
                continue
            series, labels = cache.series, cache.labels
            tf_ms = timeframe_to_ms(series.timeframe)
            close = series.ts_ms + tf_ms
            known = (
                (close > since_ms)
                & (close <= as_of_ms)
                & labels.valid
                & (labels.end_ts_ms + tf_ms <= as_of_ms)
            )
            trained = self._trained_until(close)
            for j, name in enumerate(frame.members):
                p = frame.member_p[:, j]
                with np.errstate(invalid="ignore"):  # NaN: no prediction; outside [0, 1]: broken
                    fine = (p >= 0.0) & (p <= 1.0)
                rows = np.flatnonzero(known & fine & (series.ts_ms >= trained[:, j]))
                if not len(rows):
                    continue  # none in the window (left out, or not serving): nothing to judge
                out.setdefault(name, []).extend(
                    MemberOutcome(
                        symbol=symbol,
                        ts_ms=int(series.ts_ms[i]),
                        p_up=float(p[i]),
                        up=bool(labels.y[i] == 1),
                    )
                    for i in rows
                )
        return out

    def last_retrains(self) -> dict[str, int]:
        """Return when each member of the newest set was trained until."""
        return {m.name: m.trained_until_ms for m in self.members}

    def _trained_until(self, close_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Return, per row and member (by name, as in the frames), when the member serving the
        row was trained until (the largest int where none serves it)."""
        names = tuple(dict.fromkeys(m.name for st in self.sets for m in st.members))
        out = np.full((len(close_ms), len(names)), np.iinfo(np.int64).max, dtype=np.int64)
        starts = self._set_starts(close_ms, len(close_ms))
        for i, st in enumerate(self.sets):
            for m in st.members:
                out[starts[i] : starts[i + 1], names.index(m.name)] = m.trained_until_ms
        return out

    @property
    def members(self) -> tuple[EnsembleMember, ...]:
        """Return the newest set's members (none before the first set)."""
        return self.sets[-1].members if self.sets else ()

    def add_set(self, members: Sequence[EnsembleMember], active_from_ms: int) -> None:
        """Serve rows closing after ``active_from_ms`` with ``members`` (trained before then)."""
        if not members:
            raise ValueError("a member set needs at least one member")
        last = self.sets[-1].active_from_ms if self.sets else None
        if last is not None and active_from_ms <= last:
            raise ValueError(f"member sets activate in time order: {active_from_ms} <= {last}")
        late = [m.name for m in members if m.trained_until_ms > active_from_ms]
        if late:  # its predictions would be in sample
            raise ValueError(f"{', '.join(late)} trained past {active_from_ms}, its activation")
        self.sets.append(MemberSet(members=tuple(members), active_from_ms=active_from_ms))

    def serve_members(self, members: Sequence[EnsembleMember], active_from_ms: int) -> bool:
        """Serve rows closing after ``active_from_ms`` with the newest set's members, those
        named like one of ``members`` replaced by it (a promotion or a rollback: the others
        serve on); return whether anything changed (the same versions: nothing)."""
        wanted = {**{m.name: m for m in self.members}, **{m.name: m for m in members}}
        if {n: m.version_id for n, m in wanted.items()} == self.serving_versions():
            return False
        last = self.sets[-1].active_from_ms if self.sets else None
        if last is not None and active_from_ms <= last:
            # A second change by the newest set's activation (the members of one training
            # run promoted one by one, a rollback right after a promotion, on a market clock
            # held at a candle's close): no row has closed since, so it takes that set's place.
            active_from_ms = last
            self.sets.pop()
            for cache in self._cache.values():  # its rows computed meanwhile: not the new one's
                cache.chunks.clear()
        self.add_set(list(wanted.values()), active_from_ms)
        return True

    def serving_versions(self) -> dict[str, str]:
        """Return the version id of each member of the newest set."""
        return {m.name: m.version_id for m in self.members}

    def member_predictions(self, since_ms: int = -1) -> list[tuple[str, str, str, int, float]]:
        """Return (version id, member, symbol, candle open ms, P(up)) of every out-of-sample
        row (at or after the serving member's training end) of each symbol's newest compute
        that opened after ``since_ms``: what the learning manager records and judges."""
        out: list[tuple[str, str, str, int, float]] = []
        for symbol, frame in self._frames.items():
            cache = self._cache.get(symbol)
            if cache is None or len(cache.series) != len(frame.ts_ms):
                continue
            series = cache.series
            close = series.ts_ms + timeframe_to_ms(series.timeframe)
            starts = self._set_starts(close, len(series))
            for i, st in enumerate(self.sets):
                lo, hi = starts[i], starts[i + 1]
                for m in st.members:
                    if m.name not in frame.members:
                        continue  # a member served since this compute: its next one has it
                    j = frame.members.index(m.name)
                    p = frame.member_p[lo:hi, j]
                    ts = series.ts_ms[lo:hi]
                    with np.errstate(invalid="ignore"):
                        keep = (
                            (p >= 0.0) & (p <= 1.0) & (ts >= m.trained_until_ms) & (ts > since_ms)
                        )
                    out.extend(
                        (m.version_id, m.name, symbol, int(t), float(v))
                        for t, v in zip(ts[keep], p[keep], strict=True)
                    )
        return out

    def refuse_in_sample(self, trade_from_ms: int) -> None:
        """Raise ``DataError`` when trading would start before a member's training window
        ended: its predictions there would be in sample (or made with the future's data)."""
        first = [st for st in self.sets if st.active_from_ms is None]  # active from the start
        late = [m for st in first for m in st.members if trade_from_ms < m.trained_until_ms]
        if not late:
            return
        until = max(m.trained_until_ms for m in late)
        day = datetime.fromtimestamp(until / 1000, tz=UTC)
        midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
        first_day = midnight if midnight == day else midnight + timedelta(days=1)
        ids = ", ".join(m.version_id or m.name for m in late)
        raise DataError(
            f"the ensemble's models ({ids}) were trained on candles up to "
            f"{day:%Y-%m-%d %H:%M}; trading from "
            f"{datetime.fromtimestamp(trade_from_ms / 1000, tz=UTC):%Y-%m-%d %H:%M} would be "
            f"in sample: backtest from then on (--timerange {first_day:%Y%m%d}-) "
            "or train on older candles (qt models train --until DAY), or let the backtest "
            "retrain them as it goes (--walk-forward: a walk-forward retrain on simulated time)"
        )

    def excluded(self, symbol: str) -> Mapping[str, str]:
        """Return the members the newest compute of ``symbol`` left out, and why."""
        return dict(self.exclusions_by_symbol.get(symbol, {}))

    def features_and_labels(self, series: CandleSeries) -> tuple[FeatureMatrix, Labels]:
        """Return the features the members predict ``series`` from and the labels that weigh
        them (the members' own: triple barrier, ``config.horizon``, the exits), computed once
        per history."""
        cache = self._series_cache(series)
        return cache.features, cache.labels

    def _series_cache(self, series: CandleSeries) -> _SeriesCache:
        cache = self._cache.get(series.symbol)
        if cache is None or cache.series is not series:
            # The history grown by new candles (qt run, candle after candle): the features of
            # the old rows are the same (causal, from the same first candle), so are the
            # members' predictions of them; only the new rows go through the members, and
            # only the labels of the last rows (those still open) are computed again, and
            # only the new rows of the features assembled (their indicators run whole:
            # EMA-type ones remember every candle since the first).
            grown = cache is not None and series.grew_from(cache.series)
            previous = cache.features if grown and cache is not None else None
            fm = compute_features(series, self.features, previous=previous)
            horizon, exits = self.config.horizon, self.exits
            atr = atr_of(series)  # the labels' barriers and the frame's ATR: one computation
            labels = (
                grown_triple_barrier_labels(
                    cache.labels, series, horizon=horizon, exits=exits, atr=atr
                )
                if grown and cache is not None
                else triple_barrier_labels(series, horizon=horizon, exits=exits, atr=atr)
            )
            known = cache.predicted if grown and cache is not None else {}
            cache = self._cache[series.symbol] = _SeriesCache(
                series, fm, labels, atr, predicted=known
            )
        return cache

    def compute(self, series: CandleSeries) -> EnsembleFrame:
        """Return the signals of every candle of ``series`` (causal)."""
        return self.compute_many([series])[0]

    def compute_many(self, series_list: Sequence[CandleSeries]) -> list[EnsembleFrame]:
        """Return what ``compute`` returns for each series (one per symbol), in order, the new
        rows of all of them sent through each member at once: a candle closing on several
        symbols (``qt run``) costs one call per member instead of one per symbol and member."""
        symbols = [s.symbol for s in series_list]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"compute_many takes one history per symbol, was {symbols}")
        names = tuple(dict.fromkeys(m.name for st in self.sets for m in st.members))
        todo: list[tuple[CandleSeries, _SeriesCache, list[int], dict[int, _SetPlan]]] = []
        for series in series_list:
            n = len(series)
            cache = self._series_cache(series)
            close_ms = series.ts_ms + timeframe_to_ms(series.timeframe) if n else series.ts_ms
            starts = self._set_starts(close_ms, n)
            plans: dict[int, _SetPlan] = {}
            for i, st in enumerate(self.sets):
                lo, hi = starts[i], min(starts[i + 1], n)
                chunk = cache.chunks.get(i)
                if lo < hi and (chunk is None or chunk.lo != lo or chunk.hi < hi):
                    plans[i] = self._plan_set(st, cache, lo, hi)
            todo.append((series, cache, starts, plans))
        _predict_plans([plan for *_, plans in todo for plan in plans.values()])
        frames = []
        for series, cache, starts, plans in todo:
            n = len(series)
            p_up = np.full(n, np.nan)
            member_p = np.full((n, len(names)), np.nan)
            weights = np.zeros((n, len(names)))
            self.exclusions = {}
            for i, st in enumerate(self.sets):
                lo, hi = starts[i], min(starts[i + 1], n)
                if lo >= hi:
                    continue
                if i in plans:
                    first, up, p, w, excluded = self._finish_set(plans[i])
                    at = lo - first
                    cache.chunks[i] = _Chunk(lo, hi, up[at:], p[at:], w[at:], excluded)
                chunk = cache.chunks[i]
                # Rows of a set do not depend on where the next one starts (causal): a chunk
                # computed up to a later row is exact on the rows before it.
                m = hi - lo
                cols = [names.index(mb.name) for mb in st.members]
                p_up[lo:hi] = chunk.p_up[:m]
                member_p[lo:hi, cols] = chunk.member_p[:m]
                weights[lo:hi, cols] = chunk.weights[:m]
                if hi == n:
                    self.exclusions = chunk.excluded
            self.exclusions_by_symbol[series.symbol] = dict(self.exclusions)
            frame = self._frame(series, p_up, member_p, weights, names)
            self._frames[series.symbol] = frame
            frames.append(frame)
        return frames

    def _set_starts(self, close_ms: npt.NDArray[np.int64], n: int) -> list[int]:
        """Return each set's first row (the first candle closing after its activation), and n."""
        return [
            0
            if st.active_from_ms is None
            else int(np.searchsorted(close_ms, st.active_from_ms, "right"))
            for st in self.sets
        ] + [n]

    def explain(
        self, symbol: str, ts_ms: int, regime: str | None = None
    ) -> EntryExplanation | None:
        """Return why the newest compute of ``symbol`` decided as it did at the candle opened
        at ``ts_ms``: each member's P(up) and weight, the regime, and each explaining member's
        top feature contributions on that row (computed here, for entries only: cheap)."""
        frame, cache = self._frames.get(symbol), self._cache.get(symbol)
        i = None if frame is None else frame.index_of(ts_ms)
        if frame is None or cache is None or i is None or not np.isfinite(frame.p_up[i]):
            return None
        series, fm = cache.series, cache.features
        close_ms = series.ts_ms + timeframe_to_ms(series.timeframe)
        starts = self._set_starts(close_ms, len(series))
        serving = next(st for j, st in enumerate(self.sets) if starts[j] <= i < starts[j + 1])
        pushes = []
        for m in serving.members:
            column = frame.members.index(m.name)
            top = getattr(m.member, "top_contributions", None)  # trees explain, nets do not
            if top is None or frame.weights[i, column] <= 0:
                continue
            for feature, value in top(
                fm.values[i], columns=fm.columns, feature_set_hash=fm.set_hash, k=EXPLAIN_TOP_K
            ):
                pushes.append(FeaturePush(member=m.name, feature=feature, value=value))
        if regime is None:  # the process gives its own (the signal book's); else detect here
            if cache.regimes is None:  # once per history: a backtest's series explains many
                cache.regimes = detect_regimes(series)
            regime = Regime(int(cache.regimes[i])).label  # causal: row i sees candles 0..i
        return EntryExplanation(
            provider=self.name,
            p_up=float(frame.p_up[i]),
            members=tuple(
                MemberVote(
                    member=name,
                    p_up=float(p) if np.isfinite(p := frame.member_p[i, j]) else None,
                    weight=float(frame.weights[i, j]),
                )
                for j, name in enumerate(frame.members)
            ),
            regime=regime,
            top_features=tuple(pushes),
        )

    def _plan_set(self, st: MemberSet, cache: _SeriesCache, lo: int, hi: int) -> _SetPlan:
        """Return what one set computes for rows ``lo..hi-1``: from the first row they look
        back on, the predictions reused and the rows still to go through each member.

        Only those rows are computed (a long history costs each set nothing before them), and
        through the members only those not predicted on the history this one grew from.
        """
        cfg = self.config
        members, series, fm = st.members, cache.series, cache.features
        # What rows lo..hi-1 look back on: the health window, and the out-of-sample rows
        # whose labels weigh the members.
        trained = int(np.searchsorted(series.ts_ms, min(m.trained_until_ms for m in members)))
        first = max(0, min(lo - cfg.health_window + 1, trained))
        rows = np.flatnonzero(fm.valid_rows()[first:hi])  # from ``first`` on, as p's rows
        p = np.full((hi - first, len(members)), np.nan)
        static: dict[str, str] = {}
        known = cache.predicted.get(id(st))  # the entry keeps st alive: its id is its own
        a = b = 0  # p's rows a..b-1: predicted before
        if known is not None:  # rows predicted before: reused
            a = max(first, known.lo) - first
            b = max(a, min(hi, known.hi) - first)
            p[a:b] = known.p[a + first - known.lo : b + first - known.lo]
            rows = rows[(rows < a) | (rows >= b)]
            static = dict(known.static)
        plan = _SetPlan(st, cache, hi, first, p, rows, static, known, a, b)
        for j, m in enumerate(members):
            reason = self._static_reason(m) or static.get(m.name)
            if reason is not None:
                static[m.name] = reason
            elif len(rows):
                plan.predict.append(j)
        return plan

    def _finish_set(
        self, plan: _SetPlan
    ) -> tuple[int, FloatArray, FloatArray, FloatArray, dict[str, str]]:
        """Return the first row the plan's rows look back on, and P(up), member P(up) and
        weights of its set on the rows from it on (exact on ``lo..hi-1``), its members'
        predictions made (``_predict_plans``)."""
        cfg = self.config
        st, cache, hi, first, p, static = (
            plan.st,
            plan.cache,
            plan.hi,
            plan.first,
            plan.p,
            plan.static,
        )
        known, a, b = plan.known, plan.a, plan.b
        members, series, labels = st.members, cache.series, cache.labels
        for j, m in enumerate(members):
            if m.name in static:
                p[:, j] = np.nan
        if known is not None and a == 0:  # the old rows' health stands (it looks back)
            healthy = _trailing_health(p, cfg.health_window, start=b)
            healthy[:b] = known.healthy[first - known.lo : b + first - known.lo]
        else:
            healthy = _trailing_health(p, cfg.health_window)
        active = healthy & np.array([m.name not in static for m in members])[None, :]
        # A row's weights look back only (causal): those of the rows computed before stand,
        # unless a member was left out since (then it is out on every row).
        same = (
            known is not None
            and known.static.keys() == static.keys()
            and known.policy_weights == self._policy_weights
        )
        old = (
            (a, b, known.weights[a + first - known.lo : b + first - known.lo])
            if same and known
            else None
        )
        # the resolved labels' losses extend while the old rows' predictions all stand
        grown = (
            known.losses
            if old and known and known.lo == first and a == 0 and b == known.hi - first
            else None
        )
        weights, losses = self._weights(members, series, labels, p, active, first, old, grown)
        cache.predicted[id(st)] = _Predicted(
            st,
            first,
            hi,
            p,
            weights,
            healthy,
            dict(static),
            losses,  # never written again
            self._policy_weights,
        )
        filled = np.where(active, p, 0.0)
        any_active = active.any(axis=1)
        p_up = np.where(any_active, (weights * filled).sum(axis=1), np.nan)
        excluded = {**static, **_latest_unhealthy(p, healthy, static, members, cfg)}
        return first, p_up, p, weights, excluded

    def _static_reason(self, m: EnsembleMember) -> str | None:
        if m.name in self.config.disabled:
            return "disabled (QT__STRATEGY__ENSEMBLE_DISABLED)"
        if not m.healthy_on_validation:
            return "its validation output was near-constant when it was trained"
        return None

    def _weights(
        self,
        members: Sequence[EnsembleMember],
        series: CandleSeries,
        labels: Labels,
        p: FloatArray,
        active: npt.NDArray[np.bool_],
        first: int,
        old: tuple[int, int, FloatArray] | None = None,
        grown: tuple[ResolvedLosses, ...] | None = None,
    ) -> tuple[FloatArray, tuple[ResolvedLosses, ...]]:
        """Return the weights of rows ``first..first + len(p) - 1`` (``p``'s rows) and each
        member's resolved losses on them; ``old`` = (a, b, weights of p's rows a..b-1) are
        taken as they are, ``grown`` (the losses of the history this one grew from, from the
        same first row, its predictions unchanged) extended."""
        cfg = self.config
        out = np.zeros(p.shape)
        todo: npt.NDArray[np.bool_] = np.asarray(active.any(axis=1))  # none active: no weights
        if old is not None:
            a, b, weights = old
            out[a:b] = weights
            todo[a:b] = False
        rows = np.flatnonzero(todo)  # live: the new row only
        span = slice(first, first + len(p))
        trained_until = np.array([m.trained_until_ms for m in members], dtype=np.int64)
        usable = labels.valid[span, None] & (series.ts_ms[span, None] >= trained_until[None, :])
        # a label of row s >= first resolves at end_idx[s] >= s: known from row end - first
        y, known_at = labels.y[span], labels.end_idx[span] - first
        losses = tuple(
            resolved_losses(
                p[:, j],
                y,
                known_at=known_at,
                usable=usable[:, j],
                previous=None if grown is None else grown[j],
            )
            for j in range(len(members))
        )
        loss = np.full((len(rows), len(members)), np.nan)
        count = np.zeros((len(rows), len(members)), dtype=np.int64)
        for j, resolved in enumerate(losses):
            loss[:, j], count[:, j] = windowed_loss(resolved, rows, cfg.window)
        # any active member with too short a record: equal weights (a fair comparison)
        act = active[rows]
        enough = np.all(np.where(act, count >= max(cfg.min_labels, 1), True), axis=1)
        logits = np.where(
            np.asarray(enough)[:, None] & np.isfinite(loss), -loss / cfg.temperature, 0.0
        )
        out[rows] = bounded_softmax(
            logits, act, min_weight=cfg.min_weight, max_weight=cfg.max_weight
        )
        if self._policy_weights:
            out[rows] = _in_force(self._policy_weights, members, act, out[rows])
        return out, losses

    def _frame(
        self,
        series: CandleSeries,
        p_up: FloatArray,
        p: FloatArray,
        weights: FloatArray,
        names: tuple[str, ...],
    ) -> EnsembleFrame:
        cfg = self.config
        known = np.isfinite(p_up)
        up = np.where(known, p_up, 0.5)
        long_ = known & (up >= cfg.threshold)
        short = known & (1.0 - up >= cfg.threshold)
        entry = np.zeros(len(series), dtype=np.int8)
        entry[long_] = 1
        if cfg.allow_short:
            entry[short] = -1
        side_p = np.where(cfg.allow_short, np.maximum(up, 1.0 - up), up)
        confidence = np.where(entry == -1, 1.0 - up, np.where(known, side_p, 0.0))
        atr = self._series_cache(series).atr
        return EnsembleFrame(
            ts_ms=series.ts_ms,
            entry=entry,
            exit_long=short,  # the ensemble now leans down: close a long
            exit_short=long_,
            confidence=np.clip(confidence, 0.0, 1.0),
            atr=np.asarray(atr, dtype=np.float64),
            p_up=p_up,
            members=names,
            member_p=p,
            weights=weights,
            excluded=dict(self.exclusions),
        )


@value_class(frozen=True, slots=True)
class _Chunk:
    """One set's output on rows ``lo..hi-1`` of a series."""

    lo: int
    hi: int
    p_up: FloatArray
    member_p: FloatArray
    weights: FloatArray
    excluded: dict[str, str]


@dataclass(slots=True)
class _SetPlan:
    """One set's compute on one series (``_plan_set``): its P(up) rows ``first..hi-1`` in
    ``p``, those predicted before filled in, ``rows`` (of ``p``) still to predict by the
    members ``predict`` (indices into the set), the members left out and why."""

    st: MemberSet
    cache: _SeriesCache
    hi: int
    first: int
    p: FloatArray
    rows: npt.NDArray[np.intp]
    static: dict[str, str]
    known: _Predicted | None
    a: int  # p's rows a..b-1: predicted before
    b: int
    predict: list[int] = field(default_factory=list)


@value_class(frozen=True, slots=True)
class _Predicted:
    """The members' P(up), weights and health of one set on rows ``lo..hi-1``, the members
    it left out, and each member's resolved labels' losses."""

    members: MemberSet
    lo: int
    hi: int
    p: FloatArray
    weights: FloatArray
    healthy: npt.NDArray[np.bool_]
    static: dict[str, str]
    losses: tuple[ResolvedLosses, ...]  # each member's, on the rows up to hi
    policy_weights: tuple[tuple[str, float], ...]  # the Strategy Brain's the weights used


@dataclass(slots=True)
class _SeriesCache:
    """What ``compute`` reuses while a symbol's history is the same object (a backtest's
    whole series, recomputed after each retrain): its features, labels and each set's rows;
    and, from the history it grew from, each set's predictions (by the set's id)."""

    series: CandleSeries
    features: FeatureMatrix
    labels: Labels
    atr: FloatArray  # ATR(ATR_PERIOD) of every candle
    chunks: dict[int, _Chunk] = field(default_factory=dict)
    regimes: npt.NDArray[np.int8] | None = None  # computed on the first explanation
    predicted: dict[int, _Predicted] = field(default_factory=dict)


def _predict_plans(plans: Sequence[_SetPlan]) -> None:
    """Make the plans' predictions, each member once for the rows of every plan it serves in
    (the same member object: one set, several symbols); a member that refuses a symbol's
    features is left out of that symbol's plan with the reason (``static``)."""
    asked: dict[int, list[tuple[_SetPlan, int]]] = {}
    for plan in plans:
        for j in plan.predict:
            asked.setdefault(id(plan.st.members[j].member), []).append((plan, j))
    for requests in asked.values():
        member = requests[0][0].st.members[requests[0][1]].member
        blocks = [
            (plan.cache.features, _plan_x(plan), plan.first + plan.rows) for plan, _ in requests
        ]
        outs: list[FloatArray | Exception]
        try:
            outs = list(_predict_many(member, blocks))
        except (QTError, ValueError):  # one symbol's features refused: each on its own
            outs = []
            for fm, x, rows in blocks:
                try:
                    outs.append(_predict(member, fm, x, rows))
                except (QTError, ValueError) as exc:  # FeatureMismatch, DataError: left out
                    outs.append(exc)
        for (plan, j), out in zip(requests, outs, strict=True):
            if isinstance(out, Exception):
                plan.static[plan.st.members[j].name] = str(out)
            else:
                plan.p[plan.rows, j] = out


def _plan_x(plan: _SetPlan) -> FloatArray:
    """Return the features of the rows the plan still predicts."""
    return np.asarray(plan.cache.features.values[plan.first + plan.rows], dtype=np.float64)


def _predict_many(
    member: Member, blocks: Sequence[tuple[FeatureMatrix, FloatArray, npt.NDArray[np.intp]]]
) -> list[FloatArray]:
    """Return ``member``'s P(up) of each block's rows (as ``_predict``), in one call to the
    member where it allows it: the rows stacked for a member that reads rows on their own
    (the trees: the same prediction per row), the windows of every block in one batch for a
    forecaster (``predict_proba_windows``; up to float32 rounding)."""
    if len(blocks) == 1:
        return [_predict(member, *blocks[0])]
    fm = blocks[0][0]
    if any(b[0].columns != fm.columns or b[0].set_hash != fm.set_hash for b in blocks):
        return [_predict(member, *b) for b in blocks]
    context = consecutive_context(member)
    if context is None:
        p = member.predict_proba(
            np.concatenate([x for _, x, _ in blocks]),
            columns=fm.columns,
            feature_set_hash=fm.set_hash,
        )
        return list(
            np.split(
                np.asarray(p, dtype=np.float64), np.cumsum([len(x) for _, x, _ in blocks])[:-1]
            )
        )
    windows = getattr(member, "predict_proba_windows", None)
    if windows is None:
        return [_predict(member, *b) for b in blocks]
    spans = []
    for f, _, rows in blocks:
        lo, first, hi = max(0, int(rows[0]) - context), int(rows[0]), int(rows[-1]) + 1
        spans.append((np.asarray(f.values[lo:hi], dtype=np.float64), first - lo, rows - first))
    outs = windows(
        [(values, start) for values, start, _ in spans],
        columns=fm.columns,
        feature_set_hash=fm.set_hash,
    )
    return [
        np.asarray(out, dtype=np.float64)[at] for out, (_, _, at) in zip(outs, spans, strict=True)
    ]


def _predict(
    member: Member, fm: FeatureMatrix, x: FloatArray, rows: npt.NDArray[np.intp]
) -> FloatArray:
    """Return ``member``'s P(up) of ``rows`` (valid rows of ``fm``, their features ``x``).

    A member that forms windows of consecutive candles (the torch forecasters) is given the
    candles themselves, from its window's worth of context before the first row on (a
    feature still warming up is a missing value to it): predicting the valid rows alone
    would window across the gaps between them and start on a cut-short window.
    """
    context = consecutive_context(member)
    if context is None:
        return member.predict_proba(x, columns=fm.columns, feature_set_hash=fm.set_hash)
    lo, first, hi = max(0, int(rows[0]) - context), int(rows[0]), int(rows[-1]) + 1
    values = np.asarray(fm.values[lo:hi], dtype=np.float64)
    cols, digest = fm.columns, fm.set_hash
    from_first = getattr(member, "predict_proba_from", None)
    if from_first is None:
        return member.predict_proba(values, columns=cols, feature_set_hash=digest)[rows - lo]
    # the context rows not through the network
    p: FloatArray = from_first(values, first - lo, columns=cols, feature_set_hash=digest)
    return p[rows - first]


def consecutive_context(member: Member) -> int | None:
    """Return how many rows before a row a consecutive-window member reads (None: the member
    reads each row on its own)."""
    if not getattr(member, "needs_consecutive_rows", False):
        return None
    return max(0, int(getattr(member, "window", 1)) - 1)


def _in_force(
    policy: tuple[tuple[str, float], ...],
    members: Sequence[EnsembleMember],
    active: npt.NDArray[np.bool_],
    own: FloatArray,
) -> FloatArray:
    """Return the Strategy Brain's weights on rows whose active members it all weighs (over
    them, summing to 1 again: a member left out leaves its share to the others), the
    ensemble's ``own`` on the rest (a member it has not judged yet)."""
    given = dict(policy)
    w = np.array([given.get(m.name, np.nan) for m in members], dtype=np.float64)
    covered = np.all(np.where(active, np.isfinite(w)[None, :], True), axis=1)
    mine = np.where(active, np.nan_to_num(w)[None, :], 0.0)
    total = mine.sum(axis=1)
    use = covered & (total > 0)
    return np.where(use[:, None], mine / np.where(use, total, 1.0)[:, None], own)


def _trailing_health(p: FloatArray, window: int, start: int = 0) -> npt.NDArray[np.bool_]:
    """Return, per row and member, whether the last ``window`` predictions are all finite,
    within [0, 1] and not near-constant (``core.ml.health``'s rules, looking back only);
    rows before ``start`` are not looked at (False)."""
    n, k = p.shape
    ok = np.zeros((n, k), dtype=bool)
    s0 = max(start, window - 1)
    if n <= s0:
        return ok
    # (n - s0, k, w): the windows ending at rows s0..n-1
    win = np.lib.stride_tricks.sliding_window_view(p[s0 - window + 1 :], window, axis=0)
    with np.errstate(invalid="ignore"):
        fine = np.isfinite(win).all(axis=2) & ((win >= 0) & (win <= 1)).all(axis=2)
        std = np.where(fine, np.nan_to_num(win).std(axis=2), 0.0)
    ok[s0:] = fine & (std >= MIN_STD)
    return ok


def _latest_unhealthy(
    p: FloatArray,
    healthy: npt.NDArray[np.bool_],
    static: Mapping[str, str],
    members: Sequence[EnsembleMember],
    cfg: EnsembleConfig,
) -> dict[str, str]:
    """Return why each member (not left out already) is unhealthy at the newest row."""
    out: dict[str, str] = {}
    if not len(p):
        return out
    for j, m in enumerate(members):
        if m.name in static or healthy[-1, j]:
            continue
        verdict = health(p[-cfg.health_window :, j], min_rows=cfg.health_window)
        out[m.name] = f"unhealthy output: {verdict.reason or 'not enough predictions yet'}"
    return out
