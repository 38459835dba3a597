"""Value at Risk and Expected Shortfall of a return series, its tail, and the tests a VaR model
is backtested with. Pure numpy/scipy: returns in, numbers out (the Risk Brain's models).

Conventions: ``returns`` are simple returns per period (0.01 = +1 %), oldest first; VaR and ES
are positive losses as fractions (VaR 0.03 at 0.99: a loss of 3 % or more is expected in one
period out of 100; ES: the mean loss in those periods); ``level`` is 0.95 or 0.99 (any value in
(0.5, 1) works).

Methods:

* ``parametric_var``: normal, from the mean and standard deviation.
* ``cornish_fisher_var``: the normal quantile corrected for skewness and excess kurtosis; its ES
  averages the corrected quantile over the tail (a 1,000-point grid).
* ``historical_var``: the empirical quantile; ES the mean of the returns at or below it.
* ``monte_carlo_var``: a Student-t fitted by moments (its degrees of freedom from the excess
  kurtosis, 6 / K + 4, normal when K <= 0), 100,000 simulated periods by default, seeded;
  drawn by inverse transform from sorted uniforms, so only the tail's draws are computed.

Each method estimates many windows at once (one row each): ``backtest_var`` rolls them over
thousands of days in one call, and a single estimate is a window of one row.

The tail: skewness, excess kurtosis and the Hill index of the losses with k = max(10, sqrt(n))
of the largest (the square-root rule: enough losses to be stable, few enough to stay in the
tail); a fat tail when the excess kurtosis is above 1 or the index below 4 (the fourth moment
would not exist); a tail score 0-100 (``tail_score``).

Backtests of a VaR model, from its exceptions (periods whose loss exceeded the VaR forecast for
them): Kupiec's proportion of failures, Christoffersen's independence and conditional coverage
(likelihood ratios, chi-squared p-values) and the Basel traffic light (green while the
exception count is below the binomial 95 % quantile, red from the 99.99 % one: 0-4 / 5-9 / 10+
for 250 periods at 99 %).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from core.errors import DataError
from core.values import value_class

FloatArray = npt.NDArray[np.float64]
MIN_RETURNS = 30  # fewer: no VaR (a tail estimated from a handful of periods is noise)
MC_PATHS = 100_000
_BLOCK_ROWS = 256  # windows estimated at once by backtest_var
_MC_CELLS = 1_000_000  # simulated draws held at once (8 MB each copy)


@value_class(frozen=True, slots=True, kw_only=True)
class VarEstimate:
    """One method's VaR and ES at one level (positive losses, fractions)."""

    method: str
    level: float
    var: float
    es: float


@value_class(frozen=True, slots=True, kw_only=True)
class TailStats:
    """How fat the loss tail is (see module docstring)."""

    skew: float
    excess_kurtosis: float
    hill_index: float | None  # None: too few losses to estimate it
    hill_k: int
    fat_tail: bool
    score: float  # 0-100, higher: fatter


@value_class(frozen=True, slots=True, kw_only=True)
class LikelihoodTest:
    """A likelihood-ratio test: its statistic and p-value (chi-squared, ``df`` degrees)."""

    statistic: float
    p_value: float
    df: int


class BaselZone(StrEnum):
    """The Basel traffic light of a VaR model's exception count."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


def clean_returns(returns: npt.ArrayLike, *, minimum: int = MIN_RETURNS) -> FloatArray:
    """Return ``returns`` as floats, refused with ``DataError`` when too short or not finite."""
    r = np.asarray(returns, dtype=np.float64).ravel()
    if len(r) < minimum:
        raise DataError(f"a VaR needs at least {minimum} returns, was given {len(r)}")
    if not np.isfinite(r).all():
        raise DataError(f"{int((~np.isfinite(r)).sum())} of the returns are NaN or infinite")
    if (r <= -1.0).any():
        raise DataError("a return of -100 % or less: the account was wiped out, no VaR")
    return r


def _check_level(level: float) -> None:
    if not 0.5 < level < 1.0:
        raise ValueError(f"a VaR level must be in (0.5, 1), was {level}")


def parametric_var(returns: npt.ArrayLike, level: float) -> VarEstimate:
    """Return the normal VaR and ES of ``returns`` at ``level``."""
    return _one("parametric", _parametric, returns, level)


def _row_moments(windows: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Return each row's mean, sample standard deviation, skewness and excess kurtosis (the
    last two biased, as scipy's defaults; 0 and -3 for a flat row), in plain numpy: scipy's
    wrappers cost more than the sums on an hourly assessment's few thousand returns."""
    mu = windows.mean(axis=1)
    d = windows - mu[:, None]
    d2 = d * d
    m2 = d2.mean(axis=1)
    n = windows.shape[1]
    sigma = np.sqrt(m2 * n / (n - 1))
    flat = m2 == 0.0
    safe = np.where(flat, 1.0, m2)
    skew = np.where(flat, 0.0, (d2 * d).mean(axis=1) / safe**1.5)
    kurt = np.where(flat, -3.0, (d2 * d2).mean(axis=1) / safe**2 - 3.0)
    return mu, sigma, skew, kurt


@functools.lru_cache(maxsize=32)
def _normal_tail(alpha: float) -> tuple[float, float, FloatArray]:
    """Return the standard normal quantile of ``alpha``, its density, and the quantiles of the
    1,000 midpoints of the tail's probabilities (the Cornish-Fisher ES averages over them).

    scipy.stats.norm's own formulas (ndtri, and its density), without importing scipy.stats."""
    # scipy is imported where it is used, here and below: scipy.special costs about 0.2 s and
    # scipy.stats 0.6 s more, which `qt --help` and a backtest with the brains off need not pay.
    from scipy import special

    grid = np.asarray(special.ndtri((np.arange(1_000) + 0.5) / 1_000 * alpha), np.float64)
    grid.flags.writeable = False
    z = np.float64(special.ndtri(alpha))
    return float(z), float(np.exp(-(z**2) / 2.0) / np.sqrt(2 * np.pi)), grid


def _parametric(windows: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    mu, sigma = windows.mean(axis=1), windows.std(axis=1, ddof=1)
    alpha = 1.0 - level
    z, pdf, _ = _normal_tail(alpha)
    es = -(mu - sigma * pdf / alpha)
    return -(mu + sigma * z), es


def cornish_fisher_z(
    z: FloatArray | float, skew: FloatArray | float, excess_kurtosis: FloatArray | float
) -> FloatArray:
    """Return the Cornish-Fisher corrected standard quantile(s) of normal quantile(s) ``z``
    (``skew`` and ``excess_kurtosis`` may be arrays broadcasting against ``z``)."""
    z = np.asarray(z, dtype=np.float64)
    s, k = skew, excess_kurtosis
    corrected: FloatArray = (
        z + (z**2 - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s**2 / 36
    )
    return corrected


def cornish_fisher_var(returns: npt.ArrayLike, level: float) -> VarEstimate:
    """Return the Cornish-Fisher VaR and ES of ``returns`` at ``level``."""
    return _one("cornish_fisher", _cornish_fisher, returns, level)


def _cornish_fisher(windows: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    mu, sigma, skew, kurt = _row_moments(windows)
    s, k = skew[:, None], kurt[:, None]  # excess kurtosis (Fisher)
    alpha = 1.0 - level
    z = _normal_tail(alpha)[0]
    var = -(mu + sigma * cornish_fisher_z(z, s, k)[:, 0])
    # ES: the corrected quantile averaged over the tail's probabilities (midpoints of a grid).
    # The correction is linear in s, k and s^2, so its mean over the grid is the same formula
    # on the grid's means of z, z^2 - 1, z^3 - 3z and 2z^3 - 5z (cached per level).
    m1, m2, m3, m4 = _cf_grid_means(alpha)
    tail = m1 + m2 * skew / 6 + m3 * kurt / 24 - m4 * skew**2 / 36
    es = -(mu + sigma * tail)
    return var, np.maximum(es, var)


@functools.lru_cache(maxsize=32)
def _cf_grid_means(alpha: float) -> tuple[float, float, float, float]:
    """Return the means over the Cornish-Fisher ES grid of z, z^2 - 1, z^3 - 3z, 2z^3 - 5z."""
    z = _normal_tail(alpha)[2]
    return (
        float(z.mean()),
        float((z**2 - 1).mean()),
        float((z**3 - 3 * z).mean()),
        float((2 * z**3 - 5 * z).mean()),
    )


def historical_var(returns: npt.ArrayLike, level: float) -> VarEstimate:
    """Return the historical VaR and ES of ``returns`` at ``level``."""
    return _one("historical", _historical, returns, level)


def _historical(windows: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    q = np.quantile(windows, 1.0 - level, axis=1)
    return -q, -_mean_at_or_below(windows, q)


def _mean_at_or_below(rows: FloatArray, q: FloatArray) -> FloatArray:
    """Return each row's mean of its values at or below the row's ``q`` (never empty: the
    quantile lies between the row's smallest and largest value)."""
    tail = rows <= q[:, None]
    mean: FloatArray = np.where(tail, rows, 0.0).sum(axis=1) / tail.sum(axis=1)
    return mean


def monte_carlo_var(
    returns: npt.ArrayLike, level: float, *, paths: int = MC_PATHS, seed: int = 0
) -> VarEstimate:
    """Return the VaR and ES of ``paths`` periods simulated from a Student-t fitted to
    ``returns`` by its moments (seeded: the same inputs give the same figures)."""
    return _one("monte_carlo", _monte_carlo, returns, level, paths=paths, seed=seed)


def _monte_carlo(
    windows: FloatArray, level: float, *, paths: int = MC_PATHS, seed: int = 0
) -> tuple[FloatArray, FloatArray]:
    """Simulate by inverse transform: period i's standardised draw is the fitted t's quantile
    of a seeded uniform u_i. The quantile function is increasing, so the sorted u give the
    sorted draws, and the sample's quantile and the mean beyond it need the quantile function
    only at the (1 - level) * paths smallest u: the same sample as drawing all ``paths``,
    at a few per cent of the cost (a backtest simulates once per day and method)."""
    u = _sorted_uniforms(paths, seed)
    h, low, tail = _mc_tail_length(paths, level)
    tail_u = u[:tail]
    rows_at_once = max(1, _MC_CELLS // len(tail_u))  # a low level has a long tail
    if len(windows) > rows_at_once:
        parts = [
            _monte_carlo(windows[i : i + rows_at_once], level, paths=paths, seed=seed)
            for i in range(0, len(windows), rows_at_once)
        ]
        return np.concatenate([var for var, _ in parts]), np.concatenate([es for _, es in parts])
    sim = _simulated_tail(windows, tail_u)
    return _mc_figures(sim, h, low)


def _mc_tail_length(paths: int, level: float) -> tuple[float, int, int]:
    """Return np.quantile's (linear) position of the VaR among ``paths`` sorted draws, its
    floor, and how many of the smallest draws the VaR and ES need."""
    h = (paths - 1) * (1.0 - level)
    low = math.floor(h)
    return h, low, min(low + 2, paths)


def _simulated_tail(windows: FloatArray, tail_u: FloatArray) -> FloatArray:
    """Return each row's simulated periods at the sorted uniforms ``tail_u``, ascending: the
    moment-fitted Student-t's quantiles (the normal's for a row no fatter than normal).
    Element by element, so the draws of a prefix of ``tail_u`` are a prefix of these: the
    levels of one window share them (``var_suite``)."""
    from scipy import special

    mu, sigma, _, kurt = _row_moments(windows)
    fat = kurt > 0.0
    if fat.any():
        df = np.where(fat, 6.0 / np.where(fat, kurt, 1.0) + 4.0, np.inf)  # kurtosis 6/(df - 4)
        with np.errstate(invalid="ignore"):  # df = inf rows are replaced by the normal below
            t_draws = (
                special.stdtrit(df[:, None], tail_u[None, :]) * np.sqrt((df - 2.0) / df)[:, None]
            )
    # The t's quantile costs about 15 times the normal's: each is computed only where used.
    if fat.all():
        z = t_draws
    elif not fat.any():
        z = np.broadcast_to(special.ndtri(tail_u)[None, :], (len(windows), len(tail_u)))
    else:
        z = np.where(fat[:, None], t_draws, special.ndtri(tail_u)[None, :])
    sim: FloatArray = mu[:, None] + sigma[:, None] * z
    return sim


def _mc_figures(sim: FloatArray, h: float, low: int) -> tuple[FloatArray, FloatArray]:
    """Return the VaR and ES of each row of ``sim`` (its smallest periods, ascending)."""
    q = sim[:, low] + (h - low) * (sim[:, min(low + 1, sim.shape[1] - 1)] - sim[:, low])
    return -q, -_mean_at_or_below(sim, q)


@functools.lru_cache(maxsize=8)
def _sorted_uniforms(paths: int, seed: int) -> FloatArray:
    """Return ``paths`` seeded uniforms in (0, 1], ascending (0 would be an infinite loss)."""
    if paths < 2:
        raise ValueError(f"a Monte Carlo VaR needs at least 2 paths, was given {paths}")
    u = np.sort(1.0 - np.random.default_rng(seed).random(paths))
    u.flags.writeable = False  # shared by every call: never changed
    return u


Estimator = Callable[..., tuple[FloatArray, FloatArray]]


def _one(
    method: str, estimator: Estimator, returns: npt.ArrayLike, level: float, **options: int
) -> VarEstimate:
    """Return ``estimator``'s VaR and ES of one series (a window of one row)."""
    _check_level(level)
    r = clean_returns(returns)
    var, es = estimator(r[None, :], level, **options)
    return VarEstimate(method=method, level=level, var=float(var[0]), es=float(es[0]))


def var_suite(
    returns: npt.ArrayLike,
    levels: tuple[float, ...] = (0.95, 0.99),
    *,
    paths: int = MC_PATHS,
    seed: int = 0,
) -> tuple[VarEstimate, ...]:
    """Return every method's VaR and ES at every level (the Risk Brain's call), in the order
    parametric, Cornish-Fisher, historical, Monte Carlo for each level.

    The figures of each method's own function, bit for bit, at less cost: the returns are
    checked once, and the Monte Carlo simulates the longest tail the levels need once (the
    t's quantile is most of an assessment's cost): each level's tail is a prefix of it."""
    if not levels:
        return ()
    _check_level(levels[0])  # before the returns, as each method's own function does
    w = clean_returns(returns)[None, :]
    for level in levels:
        _check_level(level)
    u = _sorted_uniforms(paths, seed)
    tails = [_mc_tail_length(paths, level) for level in levels]
    sim = _simulated_tail(w, u[: max(tail for _, _, tail in tails)])
    out: list[VarEstimate] = []
    for level, (h, low, tail) in zip(levels, tails, strict=True):
        for method, estimated in (
            ("parametric", _parametric(w, level)),
            ("cornish_fisher", _cornish_fisher(w, level)),
            ("historical", _historical(w, level)),
            ("monte_carlo", _mc_figures(sim[:, :tail], h, low)),
        ):
            var, es = estimated
            out.append(VarEstimate(method=method, level=level, var=float(var[0]), es=float(es[0])))
    return tuple(out)


def hill_index(returns: npt.ArrayLike, k: int | None = None) -> tuple[float | None, int]:
    """Return the Hill tail index of the losses of ``returns`` from their ``k`` largest
    (default: max(10, sqrt(n))) and the k used; None when fewer than k + 1 losses exist."""
    r = np.asarray(returns, dtype=np.float64)
    k = k if k is not None else max(10, int(math.sqrt(len(r))))
    losses = np.sort(-r[r < 0])[::-1]
    if len(losses) <= k or losses[k] <= 0:
        return None, k
    return float(k / np.log(losses[:k] / losses[k]).sum()), k


def tail_score(skew: float, excess_kurtosis: float, hill: float | None) -> float:
    """Return 0-100: 40 % from the index (5 or more: 0, 2 or less: full), 40 % from the excess
    kurtosis (0: 0, 10 or more: full) and 20 % from a negative skew (0: 0, -2 or less: full)."""
    by_hill = 0.0 if hill is None else min(max((5.0 - hill) / 3.0, 0.0), 1.0)
    by_kurt = min(max(excess_kurtosis / 10.0, 0.0), 1.0)
    by_skew = min(max(-skew / 2.0, 0.0), 1.0)
    return 100.0 * (0.4 * by_hill + 0.4 * by_kurt + 0.2 * by_skew)


def tail_stats(returns: npt.ArrayLike) -> TailStats:
    """Return the tail of ``returns`` (see module docstring)."""
    r = clean_returns(returns)
    _, _, skews, kurts = _row_moments(r[None, :])
    skew, kurt = float(skews[0]), float(kurts[0])
    hill, k = hill_index(r)
    return TailStats(
        skew=skew,
        excess_kurtosis=kurt,
        hill_index=hill,
        hill_k=k,
        fat_tail=kurt > 1.0 or (hill is not None and hill < 4.0),
        score=tail_score(skew, kurt, hill),
    )


def kupiec_pof(exceptions: int, periods: int, level: float) -> LikelihoodTest:
    """Return Kupiec's proportion-of-failures test: are ``exceptions`` in ``periods`` what a
    correct VaR at ``level`` gives (1 - level of the periods)?"""
    _check_level(level)
    if periods < 1 or not 0 <= exceptions <= periods:
        raise ValueError(f"need 0 <= exceptions <= periods, periods >= 1: {exceptions}, {periods}")
    from scipy import stats
    from scipy.special import xlogy

    p, x, n = 1.0 - level, exceptions, periods
    observed = x / n
    stat = -2.0 * (
        xlogy(n - x, 1 - p) + xlogy(x, p) - xlogy(n - x, 1 - observed) - xlogy(x, observed)
    )
    stat = max(float(stat), 0.0)
    return LikelihoodTest(statistic=stat, p_value=float(stats.chi2.sf(stat, 1)), df=1)


def christoffersen_independence(hits: npt.ArrayLike) -> LikelihoodTest:
    """Return Christoffersen's independence test of the exception series ``hits`` (True: the
    loss exceeded the VaR): does an exception make the next one likelier (clustering)?"""
    h = np.asarray(hits, dtype=bool)
    if len(h) < 2:
        raise ValueError("the independence test needs at least 2 periods")
    from scipy import stats
    from scipy.special import xlogy

    prev, cur = h[:-1], h[1:]
    n00 = int((~prev & ~cur).sum())
    n01 = int((~prev & cur).sum())
    n10 = int((prev & ~cur).sum())
    n11 = int((prev & cur).sum())
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    null = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    alt = xlogy(n00, 1 - pi0) + xlogy(n01, pi0) + xlogy(n10, 1 - pi1) + xlogy(n11, pi1)
    stat = max(float(-2.0 * (null - alt)), 0.0)
    return LikelihoodTest(statistic=stat, p_value=float(stats.chi2.sf(stat, 1)), df=1)


def conditional_coverage(hits: npt.ArrayLike, level: float) -> LikelihoodTest:
    """Return Christoffersen's conditional coverage test: the right number of exceptions and
    independent ones (Kupiec's statistic plus the independence statistic, 2 degrees)."""
    h = np.asarray(hits, dtype=bool)
    return _coverage(kupiec_pof(int(h.sum()), len(h), level), christoffersen_independence(h))


def _coverage(kupiec: LikelihoodTest, independence: LikelihoodTest) -> LikelihoodTest:
    from scipy import stats

    stat = kupiec.statistic + independence.statistic
    return LikelihoodTest(statistic=stat, p_value=float(stats.chi2.sf(stat, 2)), df=2)


def basel_zone(exceptions: int, periods: int = 250, level: float = 0.99) -> BaselZone:
    """Return the Basel traffic light of ``exceptions`` in ``periods`` at ``level``."""
    from scipy import stats

    _check_level(level)
    cumulative = float(stats.binom.cdf(exceptions, periods, 1.0 - level))
    if cumulative < 0.95:
        return BaselZone.GREEN
    return BaselZone.YELLOW if cumulative < 0.9999 else BaselZone.RED


VAR_METHODS = {
    "parametric": parametric_var,
    "cornish_fisher": cornish_fisher_var,
    "historical": historical_var,
    "monte_carlo": monte_carlo_var,
}


_ESTIMATORS: dict[str, Estimator] = {
    "parametric": _parametric,
    "cornish_fisher": _cornish_fisher,
    "historical": _historical,
    "monte_carlo": _monte_carlo,
}


@value_class(frozen=True, slots=True, kw_only=True)
class VarBacktest:
    """A VaR method rolled over history: each period's forecast from the ``window`` periods
    before it, the periods whose loss exceeded it, and the tests of those exceptions."""

    method: str
    level: float
    window: int
    periods: int  # forecast periods (after the first window)
    exceptions: int
    kupiec: LikelihoodTest
    independence: LikelihoodTest
    coverage: LikelihoodTest
    zone: BaselZone  # of the newest 250 periods (all of them when fewer)
    zone_all: BaselZone  # of every forecast period
    forecasts: FloatArray  # the VaR of each forecast period
    es_forecasts: FloatArray  # the ES of each forecast period
    hits: npt.NDArray[np.bool_]  # True: that period lost more than its VaR
    # On the exception days: the ES forecast for them and the loss that came (None: none).
    # A right ES makes the two alike; a loss well above the ES: the tail is worse than modelled.
    mean_es_on_exceptions: float | None
    mean_loss_on_exceptions: float | None


def backtest_var(
    returns: npt.ArrayLike, method: str, level: float, *, window: int = 250
) -> VarBacktest:
    """Return ``method`` at ``level`` rolled over ``returns``: period t's VaR from periods
    t - window .. t - 1 only (out of sample), an exception where the return of t lost more.
    Every window is estimated at once (one row each), by the code of the method's function."""
    if method not in _ESTIMATORS:
        raise ValueError(f"unknown VaR method {method!r}; known: {', '.join(_ESTIMATORS)}")
    if window < MIN_RETURNS:
        raise ValueError(f"a VaR window needs at least {MIN_RETURNS} periods, was {window}")
    _check_level(level)
    r = clean_returns(returns, minimum=window + 2)
    windows = np.lib.stride_tricks.sliding_window_view(r, window)[:-1]  # row i: r[i : i + window]
    # In blocks of rows: thousands of windows at once would hold a Cornish-Fisher grid (1,000
    # a row) or a Monte Carlo tail (5,000 a row at 95 %) for each in memory.
    estimated = [
        _ESTIMATORS[method](windows[i : i + _BLOCK_ROWS], level)
        for i in range(0, len(windows), _BLOCK_ROWS)
    ]
    forecasts = np.concatenate([var for var, _ in estimated])
    es_forecasts = np.concatenate([es for _, es in estimated])
    realised = r[window:]
    hits = realised < -forecasts
    recent = hits[-250:]
    exceptions = int(hits.sum())
    kupiec = kupiec_pof(exceptions, len(hits), level)
    independence = christoffersen_independence(hits)
    return VarBacktest(
        method=method,
        level=level,
        window=window,
        periods=len(hits),
        exceptions=exceptions,
        kupiec=kupiec,
        independence=independence,
        coverage=_coverage(kupiec, independence),
        zone=basel_zone(int(recent.sum()), len(recent), level),
        zone_all=basel_zone(exceptions, len(hits), level),
        forecasts=forecasts,
        es_forecasts=es_forecasts,
        hits=hits,
        mean_es_on_exceptions=float(es_forecasts[hits].mean()) if exceptions else None,
        mean_loss_on_exceptions=float(-realised[hits].mean()) if exceptions else None,
    )
