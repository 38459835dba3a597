"""The continuous learning manager's decisions, as pure functions: is a retrain due, does a
candidate beat the champion, has a shadow's live record held up, has the serving model
drifted, which versions to keep.

No I/O, no clock, no asyncio: times come in as ms, losses and predictions as arrays. The
manager (``core/services/learning.py``) gathers the inputs, calls these and acts on the
answers; every answer carries a one-line reason for the registry, the events and the report.

Losses are per row (natural log). Rows of one model's record overlap when its label looks
``horizon`` candles ahead, so neighbouring loss differences are correlated: the tests below
take ``lag = horizon - 1`` autocovariances (Diebold-Mariano) or blocks of ``lag + 1`` rows
(the bootstrap) so that the overlap does not pass for evidence.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from core.domain.model_versions import ModelStatus, ModelVersion
from core.ml.metrics import accuracy

FloatArray = npt.NDArray[np.float64]
HOUR_MS = 3_600_000
LN2 = math.log(2.0)  # the log-loss of always saying 0.5: what a first version has to beat
MIN_TEST_ROWS = 10  # fewer paired rows and neither test says anything
TESTS = ("diebold-mariano", "paired-bootstrap")
PSI_FLOOR = 1e-4  # share given to an empty bin, so its log stays finite


class ZeroVariance(ValueError):
    """The paired loss differences do not vary: no test can say anything about them."""


# --- is a retrain due? -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DuePolicy:
    """When a retrain is due: the schedule, and the new data it needs."""

    every_ms: int = 168 * HOUR_MS  # schedule
    min_new_candles: int = 168  # per symbol, new closed candles since the champion's train end
    min_new_trades: int = 100  # closed trades since the last training
    need_trades: bool = False  # True: the trade condition must hold too (wins and losses)

    def __post_init__(self) -> None:
        if self.every_ms <= 0:
            raise ValueError(f"retrain schedule every_ms must be > 0, was {self.every_ms}")
        if self.min_new_candles < 0 or self.min_new_trades < 0:
            raise ValueError(
                "retrain min_new_candles and min_new_trades must be >= 0, were "
                f"{self.min_new_candles}, {self.min_new_trades}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class DueInputs:
    """What the manager knows when it asks whether a retrain is due."""

    now_ms: int
    last_trained_ms: int | None  # when the last training run (any outcome) finished; None: never
    new_candles: Mapping[str, int]  # per symbol, closed candles after the serving model's train end
    new_trades: int = 0
    new_wins: int = 0
    new_losses: int = 0
    drift: str = ""  # non-empty: why drift was detected
    requested: str = ""  # non-empty: who asked (/retrain by ..., qt models retrain)

    def __post_init__(self) -> None:
        negative = sorted(s for s, n in self.new_candles.items() if n < 0)
        if negative:
            raise ValueError(f"new candle counts must be >= 0, were negative for {negative}")
        if min(self.new_trades, self.new_wins, self.new_losses) < 0:
            raise ValueError("new trade, win and loss counts must be >= 0")
        if self.new_wins + self.new_losses > self.new_trades:
            raise ValueError(
                f"{self.new_wins} wins + {self.new_losses} losses > {self.new_trades} trades"
            )
        if self.last_trained_ms is not None and self.last_trained_ms > self.now_ms:
            raise ValueError(
                f"last training at {self.last_trained_ms} is after now ({self.now_ms})"
            )


@dataclass(frozen=True, slots=True)
class Due:
    """Whether a retrain is due, and the one-line reason either way."""

    due: bool
    reason: str


def due_check(policy: DuePolicy, inputs: DueInputs) -> Due:
    """Return whether a retrain is due now, checked in this order:

    1. requested (a chat command, the CLI): due, whatever the schedule and the data;
    2. never trained: due once any symbol has a new candle;
    3. drift: due before the schedule once a quarter of ``every_ms`` has passed since the last
       training (a drift that outlives a rejected candidate must not retrain every check) and
       some symbol has at least a quarter of ``min_new_candles``; the trade condition is not
       asked (drift is measured on predictions, not trades);
    4. the schedule: not due before ``last_trained_ms + every_ms``;
    5. then due when at least one symbol has ``min_new_candles`` (the others are named when
       none has) and, with ``need_trades``, ``min_new_trades`` closed trades with both wins
       and losses among them.
    """
    if inputs.requested:
        return Due(True, f"requested: {inputs.requested}")
    counts = dict(inputs.new_candles)
    if inputs.last_trained_ms is None:
        if any(n > 0 for n in counts.values()):
            return Due(True, f"first run: never trained; {_counts(counts)}")
        return Due(False, "first run: no new candles yet")
    since_ms = inputs.now_ms - inputs.last_trained_ms
    if inputs.drift:
        need = math.ceil(policy.min_new_candles / 4)
        if since_ms < policy.every_ms / 4:
            wait_h = (policy.every_ms / 4 - since_ms) / HOUR_MS
            return Due(
                False,
                f"drift ({inputs.drift}) but trained {since_ms / HOUR_MS:.1f} h ago: "
                f"next in {wait_h:.1f} h",
            )
        if any(n >= max(need, 1) for n in counts.values()):
            return Due(True, f"drift: {inputs.drift}; {_counts(counts)}")
        return Due(False, f"drift ({inputs.drift}) but {_short(counts, max(need, 1))}")
    if since_ms < policy.every_ms:
        return Due(False, f"schedule: next in {(policy.every_ms - since_ms) / HOUR_MS:.1f} h")
    if not any(n >= policy.min_new_candles for n in counts.values()):
        return Due(False, _short(counts, policy.min_new_candles))
    if policy.need_trades:
        if inputs.new_trades < policy.min_new_trades:
            return Due(
                False, f"too few closed trades: {inputs.new_trades} < {policy.min_new_trades}"
            )
        if inputs.new_wins == 0 or inputs.new_losses == 0:
            return Due(
                False,
                f"closed trades lack an outcome: {inputs.new_wins} wins, "
                f"{inputs.new_losses} losses of {inputs.new_trades}",
            )
    return Due(True, f"schedule: last trained {since_ms / HOUR_MS:.1f} h ago; {_counts(counts)}")


def _counts(counts: Mapping[str, int]) -> str:
    return "new candles: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))


def _short(counts: Mapping[str, int], need: int) -> str:
    if not counts:
        return "too little new data: no symbol has new candles"
    short = ", ".join(f"{s} {n} < {need}" for s, n in sorted(counts.items()) if n < need)
    return f"too little new data: {short} candles"


# --- does a candidate beat the champion? -------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateResult:
    """A promotion gate's verdict on paired out-of-sample losses.

    ``p_value`` is one-sided: the chance of an improvement this large if the candidate were
    not better. When no test ran (too few rows, constant differences) ``statistic`` is 0 and
    ``p_value`` 1: finite, so the registry can store them.
    """

    passed: bool
    test: str  # "diebold-mariano" or "paired-bootstrap"
    statistic: float
    p_value: float
    mean_improvement: float  # mean(champion_loss - candidate_loss) per row (> 0: candidate better)
    rows: int
    reason: str  # one line for the registry and the report


def log_losses(p: npt.ArrayLike, y: npt.ArrayLike, eps: float = 1e-12) -> FloatArray:
    """Return each row's log-loss of P(class 1) ``p`` against 0/1 outcomes ``y``, with ``p``
    clipped to [eps, 1 - eps] so one confident miss stays finite."""
    pp, yy = _vector(p, "predictions"), _vector(y, "outcomes")
    if pp.shape != yy.shape:
        raise ValueError(f"{pp.size} predictions but {yy.size} outcomes")
    if np.any((pp < 0.0) | (pp > 1.0)):
        raise ValueError("predictions must lie in [0, 1]")
    if np.any((yy != 0.0) & (yy != 1.0)):
        raise ValueError("outcomes must be 0 or 1")
    pp = np.clip(pp, eps, 1.0 - eps)
    return np.asarray(-(yy * np.log(pp) + (1.0 - yy) * np.log1p(-pp)), dtype=np.float64)


def diebold_mariano(
    loss_a: npt.ArrayLike, loss_b: npt.ArrayLike, *, lag: int
) -> tuple[float, float]:
    """Return the Diebold-Mariano statistic and its two-sided p-value for d = a - b (> 0: b
    has the lower loss).

    The variance of mean(d) is Newey-West's with Bartlett weights over ``lag``
    autocovariances (overlapping labels: ``lag = horizon - 1``); the statistic carries
    Harvey-Leybourne-Newbold's small-sample correction for horizon ``lag + 1`` and is read
    against Student's t with n - 1 degrees of freedom. With ``lag = 0`` it is the paired
    t-test. Fewer than 10 rows, a lag the rows cannot carry, or differences that do not vary
    (identical losses): ``ValueError`` (``ZeroVariance`` for the last).
    """
    d = _differences(loss_a, loss_b)
    n = d.size
    if lag < 0 or lag >= n:
        raise ValueError(f"the Diebold-Mariano lag must be in [0, {n - 1}], was {lag}")
    horizon = lag + 1
    correction = (n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n
    if correction <= 0:
        raise ValueError(f"{n} rows are too few for the Diebold-Mariano test at lag {lag}")
    centred = d - d.mean()
    variance = float(centred @ centred) / n
    for k in range(1, lag + 1):
        variance += 2.0 * (1.0 - k / (lag + 1)) * float(centred[k:] @ centred[:-k]) / n
    # relative to d's own size: rounding leaves ~1e-33 where constant d has none at all
    if not variance > 1e-14 * float(d @ d) / n:
        raise ZeroVariance(f"the {n} paired loss differences do not vary (mean {d.mean():.6g})")
    statistic = float(d.mean()) / math.sqrt(variance / n) * math.sqrt(correction)
    from scipy import stats  # here: importing scipy.stats costs ~0.8 s at every CLI start

    return statistic, float(2.0 * stats.t.sf(abs(statistic), n - 1))


def paired_bootstrap(
    loss_a: npt.ArrayLike, loss_b: npt.ArrayLike, *, block: int, draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Return mean(d) for d = a - b and the moving-block bootstrap's one-sided p that mean(d)
    <= 0: the share of resampled means at or below 0 (counting the observed sample once, so
    never 0). Blocks of ``block`` consecutive rows keep the overlap's correlation."""
    d = _differences(loss_a, loss_b)
    means = _block_means(d, block=block, draws=draws, seed=seed)
    return float(d.mean()), _share_not_above_zero(means)


def gate(
    candidate_loss: npt.ArrayLike,
    champion_loss: npt.ArrayLike,
    *,
    margin: float = 0.0,
    alpha: float = 0.05,
    lag: int = 23,
    min_rows: int = 100,
    test: str = "diebold-mariano",
) -> GateResult:
    """Return whether a candidate may replace the champion, judged on the same rows.

    It passes only if its mean improvement (champion loss - candidate loss per row) exceeds
    ``margin`` and ``test`` finds it better at ``alpha``, one-sided: Diebold-Mariano with
    ``lag`` (half its two-sided p, with a positive statistic) or the block bootstrap with
    blocks of ``lag + 1`` rows. Fewer than ``min_rows`` rows or differences that do not vary
    fail, with the reason. Unequal lengths, NaN or bad settings: ``ValueError``.
    """
    if test not in TESTS:
        raise ValueError(f"gate test must be one of {', '.join(TESTS)}, was {test!r}")
    if not 0.0 < alpha < 1.0 or not margin >= 0.0 or lag < 0:
        raise ValueError(
            f"gate needs 0 < alpha < 1, margin >= 0, lag >= 0; were {alpha}, {margin}, {lag}"
        )
    if min_rows < MIN_TEST_ROWS:
        raise ValueError(f"gate min_rows must be >= {MIN_TEST_ROWS}, was {min_rows}")
    candidate, champion = _pair(candidate_loss, champion_loss)
    rows = candidate.size
    improvement = float((champion - candidate).mean()) if rows else 0.0

    def fail(reason: str) -> GateResult:
        return GateResult(False, test, 0.0, 1.0, improvement, rows, reason)

    if rows < min_rows:
        return fail(f"too few rows: {rows} < {min_rows}")
    if rows < 2 * (lag + 1):  # the HAC variance (or the blocks) need rows beyond the lag
        return fail(f"too few rows for lag {lag}: {rows} < {2 * (lag + 1)}")
    tested = _one_sided(test, champion - candidate, lag=lag)
    if tested is None:
        return fail(f"the loss differences do not vary (mean {improvement:.6f}): no test")
    statistic, p = tested
    evidence = f"{test} p {p:.4f} over {rows} rows"
    if not improvement > margin:
        reason = f"improvement {improvement:.6f} <= margin {margin:g} per row ({evidence})"
    elif not p < alpha:
        reason = f"not significant: improvement {improvement:.6f} per row, {evidence} >= {alpha:g}"
    else:
        reason = f"better by {improvement:.6f} log-loss per row ({evidence} < {alpha:g})"
    return GateResult(
        improvement > margin and p < alpha, test, statistic, p, improvement, rows, reason
    )


def _one_sided(test: str, d: FloatArray, *, lag: int) -> tuple[float, float] | None:
    """Return ``test``'s statistic and one-sided p that mean(d) <= 0, or None when d does not
    vary enough to test."""
    if test == "diebold-mariano":
        try:
            statistic, two_sided = diebold_mariano(d, np.zeros(d.size), lag=lag)
        except ZeroVariance:
            return None
        return statistic, two_sided / 2 if statistic > 0 else 1.0 - two_sided / 2
    means = _block_means(d, block=lag + 1, draws=2000, seed=0)
    spread = float(means.std())
    if not spread > 1e-7 * math.sqrt(float(d @ d) / d.size):  # as the DM check, on the std
        return None
    return float(d.mean()) / spread, _share_not_above_zero(means)


def _share_not_above_zero(means: FloatArray) -> float:
    # the observed sample counts as one draw: a p-value is never 0
    return float((1 + np.count_nonzero(means <= 0.0)) / (means.size + 1))


def _block_means(d: FloatArray, *, block: int, draws: int, seed: int) -> FloatArray:
    """Return ``draws`` means of moving-block resamples of ``d`` (blocks from random starts,
    laid end to end, cut to len(d)); from prefix sums, so memory is draws x blocks."""
    n = d.size
    if not 1 <= block <= n or draws < 1:
        raise ValueError(f"bootstrap needs 1 <= block <= {n} and draws >= 1, were {block}, {draws}")
    blocks = -(-n // block)
    tail = n - (blocks - 1) * block  # the last block is cut to fit
    cumulative = np.concatenate([[0.0], np.cumsum(d)])
    starts = np.random.default_rng(seed).integers(0, n - block + 1, size=(draws, blocks))
    full = cumulative[starts[:, :-1] + block] - cumulative[starts[:, :-1]]
    last = cumulative[starts[:, -1] + tail] - cumulative[starts[:, -1]]
    return np.asarray((full.sum(axis=1) + last) / n, dtype=np.float64)


# --- has a shadow's live record held up? -------------------------------------------------


class ShadowVerdict(StrEnum):
    """What to do with a shadow model after looking at its live record."""

    WAIT = "WAIT"  # too early or too few resolved rows
    PROMOTE = "PROMOTE"
    REJECT = "REJECT"


@dataclass(frozen=True, slots=True)
class ShadowJudgement:
    """A shadow's verdict with the mean live log-losses it rests on (None: no rows yet)."""

    verdict: ShadowVerdict
    reason: str
    shadow_log_loss: float | None
    champion_log_loss: float | None  # ln 2 when there is no champion (the coin it must beat)
    rows: int


def judge_shadow(
    shadow_loss: npt.ArrayLike,
    champion_loss: npt.ArrayLike,
    *,
    started_ms: int,
    now_ms: int,
    min_ms: int,
    min_rows: int,
    margin: float = 0.0,
) -> ShadowJudgement:
    """Judge a shadow on the live losses it and the champion scored on the same candles.

    WAIT until ``min_ms`` has passed since ``started_ms`` and ``min_rows`` rows are resolved;
    then PROMOTE when its record holds up, mean(shadow) <= mean(champion) + ``margin`` (it
    already beat the champion at the gate: live it only has to be no worse than that
    tolerance), else REJECT. An empty champion side (no champion yet) is judged against the
    constant 0.5 predictor, whose log-loss is ln 2 on every row.
    """
    if min_ms < 0 or min_rows < 1 or not margin >= 0.0:
        raise ValueError(
            f"shadow needs min_ms >= 0, min_rows >= 1, margin >= 0; were {min_ms}, "
            f"{min_rows}, {margin}"
        )
    if now_ms < started_ms:
        raise ValueError(f"now ({now_ms}) is before the shadow started ({started_ms})")
    shadow = _vector(shadow_loss, "shadow losses")
    against = _vector(champion_loss, "champion losses")
    coin = against.size == 0
    if coin:
        against = np.full(shadow.size, LN2)
    elif against.size != shadow.size:
        raise ValueError(f"{shadow.size} shadow losses but {against.size} champion losses")
    rows = shadow.size
    elapsed_ms = now_ms - started_ms
    if elapsed_ms < min_ms or rows < min_rows:
        reason = (
            f"waiting: {elapsed_ms / HOUR_MS:.1f} of {min_ms / HOUR_MS:.1f} h, "
            f"{rows} of {min_rows} rows"
        )
        so_far = float(shadow.mean()) if rows else None
        theirs_so_far = float(against.mean()) if rows else (LN2 if coin else None)
        return ShadowJudgement(ShadowVerdict.WAIT, reason, so_far, theirs_so_far, rows)
    mine, theirs = float(shadow.mean()), float(against.mean())
    name = "the 0.5 predictor (no champion)" if coin else "the champion"
    record = f"live log-loss {mine:.4f} vs {theirs:.4f} for {name} over {rows} rows"
    if mine <= theirs + margin:
        return ShadowJudgement(ShadowVerdict.PROMOTE, f"held up: {record}", mine, theirs, rows)
    return ShadowJudgement(
        ShadowVerdict.REJECT,
        f"worse by {mine - theirs:.4f} > margin {margin:g}: {record}",
        mine,
        theirs,
        rows,
    )


# --- has the serving model drifted? ------------------------------------------------------


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, *, bins: int = 10) -> float:
    """Return the Population Stability Index of ``actual`` against ``expected``:
    sum((a - e) ln(a / e)) over bins cut at ``expected``'s quantiles (repeated cuts merged;
    the outer bins open-ended), an empty bin counted as a 0.0001 share. NaNs are dropped;
    each side needs ``bins`` values left, else ``ValueError``; so does an infinite value."""
    if bins < 2:
        raise ValueError(f"psi needs bins >= 2, was {bins}")
    sides = []
    for values, name in ((expected, "expected"), (actual, "actual")):
        x = np.asarray(values, dtype=np.float64).ravel()
        x = x[~np.isnan(x)]
        if np.isinf(x).any():
            raise ValueError(f"psi: {name} values contain infinity")
        if x.size < bins:
            raise ValueError(f"psi: {x.size} {name} values, at least {bins} needed")
        sides.append(x)
    cuts = np.unique(np.quantile(sides[0], np.arange(1, bins) / bins))
    e, a = (
        np.maximum(
            np.bincount(np.searchsorted(cuts, x), minlength=cuts.size + 1) / x.size, PSI_FLOOR
        )
        for x in sides
    )
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftPolicy:
    """How far the live record may fall from validation before the model counts as drifted."""

    window_rows: int = 200  # recent resolved predictions looked at
    log_loss_excess: float = 0.05  # live log-loss above the validation log-loss by this much
    hit_rate_drop: float = 0.08  # live hit rate below validation accuracy by this much
    psi_limit: float = 0.25  # per feature
    min_rows: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.min_rows <= self.window_rows:
            raise ValueError(
                f"drift needs 1 <= min_rows <= window_rows, were {self.min_rows}, "
                f"{self.window_rows}"
            )
        if not (self.log_loss_excess >= 0 and self.hit_rate_drop >= 0 and self.psi_limit > 0):
            raise ValueError("drift limits must be >= 0 (psi_limit > 0)")


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Whether the serving model drifted; ``reasons`` says why, or why not in one line."""

    drifted: bool
    reasons: tuple[str, ...]
    live_log_loss: float | None
    live_hit_rate: float | None
    worst_psi: tuple[str, float] | None  # the feature with the largest PSI, and its value
    # the live record itself fell short (log-loss or hit rate), not only a feature moved:
    # a model judged worse than promised, beside one asked about on a market it never saw
    record: bool = False


def drift_check(
    policy: DriftPolicy,
    *,
    live_p: npt.ArrayLike,
    live_y: npt.ArrayLike,
    expected_log_loss: float,
    expected_accuracy: float,
    feature_shift: tuple[str, float] | None = None,
) -> DriftReport:
    """Compare the last ``window_rows`` resolved predictions with the validation scores.

    Drifted when the live log-loss exceeds ``expected_log_loss`` by more than
    ``log_loss_excess``, the hit rate (P >= 0.5 agreeing with the outcome) falls below
    ``expected_accuracy`` by more than ``hit_rate_drop``, or ``feature_shift`` (the feature
    whose live values moved furthest from its training values, and its PSI: ``worst_psi``,
    computed by the caller where it is cheap to cache) exceeds ``psi_limit``. Fewer than
    ``min_rows`` resolved rows: not drifted, nothing else looked at.
    """
    if not (math.isfinite(expected_log_loss) and expected_log_loss >= 0):
        raise ValueError(f"expected log-loss must be finite and >= 0, was {expected_log_loss}")
    if not 0.0 <= expected_accuracy <= 1.0:
        raise ValueError(f"expected accuracy must be in [0, 1], was {expected_accuracy}")
    p, y = _vector(live_p, "predictions"), _vector(live_y, "outcomes")
    if p.size != y.size:
        raise ValueError(f"{p.size} live predictions but {y.size} outcomes")
    p, y = p[-policy.window_rows :], y[-policy.window_rows :]
    rows = p.size
    if rows < policy.min_rows:
        return DriftReport(
            False, (f"too few live rows: {rows} < {policy.min_rows}",), None, None, None
        )
    live_loss, hit_rate = float(log_losses(p, y).mean()), accuracy(p, y)
    reasons = []
    if live_loss > expected_log_loss + policy.log_loss_excess:
        reasons.append(
            f"live log-loss {live_loss:.4f} > validation {expected_log_loss:.4f} + "
            f"{policy.log_loss_excess:g} over {rows} rows"
        )
    if hit_rate < expected_accuracy - policy.hit_rate_drop:
        reasons.append(
            f"live hit rate {hit_rate:.1%} < validation {expected_accuracy:.1%} - "
            f"{policy.hit_rate_drop:.0%} over {rows} rows"
        )
    record = bool(reasons)
    worst = feature_shift
    if worst is not None and worst[1] > policy.psi_limit:
        reasons.append(f"feature {worst[0]} PSI {worst[1]:.3f} > {policy.psi_limit:g}")
    if reasons:
        return DriftReport(True, tuple(reasons), live_loss, hit_rate, worst, record)
    summary = (
        f"no drift: live log-loss {live_loss:.4f} (validation {expected_log_loss:.4f}), "
        f"hit rate {hit_rate:.1%} ({expected_accuracy:.1%}) over {rows} rows"
    )
    if worst is not None:
        summary += f", worst PSI {worst[0]} {worst[1]:.3f}"
    return DriftReport(False, (summary,), live_loss, hit_rate, worst)


def worst_psi(
    train: Mapping[str, npt.ArrayLike], live: Mapping[str, npt.ArrayLike]
) -> tuple[str, float] | None:
    """Return the column whose ``live`` values moved furthest from its ``train`` values, and
    its PSI, over the columns both have (one with fewer than 10 values on a side is
    skipped); None when no column is left."""
    worst: tuple[str, float] | None = None
    for column in sorted(set(train) & set(live)):
        a, b = (np.asarray(v, dtype=np.float64).ravel() for v in (train[column], live[column]))
        if min(np.count_nonzero(~np.isnan(a)), np.count_nonzero(~np.isnan(b))) < 10:
            continue  # too few values to cut ten bins: no verdict on this column
        value = psi(a, b)
        if worst is None or value > worst[1]:
            worst = (column, value)
    return worst


# --- which versions to keep? -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """Version ids to keep and to prune (each in the order given)."""

    keep: tuple[str, ...]
    prune: tuple[str, ...]


def retention_plan(versions: Sequence[ModelVersion], *, keep_candidates: int = 5) -> RetentionPlan:
    """Per member, keep every CHAMPION and SHADOW, every version ever promoted
    (``promoted_ms`` set: the rollback targets) and the ``keep_candidates`` newest others by
    ``created_ms`` (ties: the larger id); prune the rest."""
    if keep_candidates < 0:
        raise ValueError(f"keep_candidates must be >= 0, was {keep_candidates}")
    ids = [v.id for v in versions]
    if len(set(ids)) != len(ids):
        raise ValueError("version ids must be unique")
    others: defaultdict[str, list[ModelVersion]] = defaultdict(list)
    for v in versions:
        if v.status not in (ModelStatus.CHAMPION, ModelStatus.SHADOW) and v.promoted_ms is None:
            others[v.member].append(v)
    pruned = {
        v.id
        for group in others.values()
        for v in sorted(group, key=lambda v: (v.created_ms, v.id), reverse=True)[keep_candidates:]
    }
    return RetentionPlan(
        keep=tuple(i for i in ids if i not in pruned), prune=tuple(i for i in ids if i in pruned)
    )


# --- input checks ------------------------------------------------------------------------


def _vector(values: npt.ArrayLike, name: str) -> FloatArray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one value per row, had shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain {np.count_nonzero(~np.isfinite(x))} NaN or infinite")
    return x


def _pair(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    x, y = _vector(a, "losses"), _vector(b, "losses")
    if x.size != y.size:
        raise ValueError(f"paired losses must have equal lengths, were {x.size} and {y.size}")
    return x, y


def _differences(loss_a: npt.ArrayLike, loss_b: npt.ArrayLike) -> FloatArray:
    a, b = _pair(loss_a, loss_b)
    if a.size < MIN_TEST_ROWS:
        raise ValueError(f"{a.size} paired rows, at least {MIN_TEST_ROWS} needed for a test")
    return a - b
