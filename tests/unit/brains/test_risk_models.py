"""The Risk Brain's models: VaR and ES by four methods, the tail, and the VaR backtests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from core.brains.risk_models import (
    BaselZone,
    basel_zone,
    christoffersen_independence,
    conditional_coverage,
    cornish_fisher_var,
    cornish_fisher_z,
    hill_index,
    historical_var,
    kupiec_pof,
    monte_carlo_var,
    parametric_var,
    tail_stats,
    var_suite,
)
from core.errors import DataError


def normal_returns(n: int = 5_000, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0005, 0.02, n)


def fat_returns(n: int = 5_000, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_t(3, n) * 0.01


@pytest.mark.parametrize("level", [0.95, 0.99])
def test_the_normal_var_and_es_are_the_textbook_ones(level: float) -> None:
    r = normal_returns()
    mu, sigma = r.mean(), r.std(ddof=1)
    est = parametric_var(r, level)
    assert est.var == pytest.approx(-(mu + sigma * stats.norm.ppf(1 - level)))
    # ES of a normal: mu's loss plus sigma * pdf(z) / alpha
    z = stats.norm.ppf(1 - level)
    assert est.es == pytest.approx(-mu + sigma * stats.norm.pdf(z) / (1 - level))
    assert est.es > est.var > 0


@pytest.mark.parametrize("level", [0.95, 0.99])
def test_on_normal_returns_every_method_agrees_within_a_few_percent(level: float) -> None:
    r = normal_returns(20_000)
    ref = parametric_var(r, level)
    for est in (cornish_fisher_var(r, level), historical_var(r, level), monte_carlo_var(r, level)):
        assert est.var == pytest.approx(ref.var, rel=0.06), est.method
        assert est.es == pytest.approx(ref.es, rel=0.06), est.method


def test_on_fat_tails_the_normal_var_understates_the_99_percent_loss() -> None:
    r = fat_returns(20_000)
    normal, hist = parametric_var(r, 0.99), historical_var(r, 0.99)
    assert hist.var > normal.var * 1.1 and hist.es > normal.es * 1.2
    assert cornish_fisher_var(r, 0.99).var > normal.var  # the kurtosis correction goes that way
    assert monte_carlo_var(r, 0.99).var > normal.var


def test_historical_var_and_es_by_hand() -> None:
    r = np.linspace(-0.10, 0.19, 30)  # -10 %, -9 %, ..., +19 %
    est = historical_var(r, 0.95)
    q = np.quantile(r, 0.05)
    assert est.var == pytest.approx(-q)
    assert est.es == pytest.approx(-r[r <= q].mean())


def test_cornish_fisher_is_the_normal_quantile_without_skew_or_kurtosis() -> None:
    z = np.array([-2.326, -1.645, 0.0, 1.0])
    assert np.allclose(cornish_fisher_z(z, 0.0, 0.0), z)
    assert float(cornish_fisher_z(-2.326, -1.0, 0.0)) < -2.326  # a negative skew: a worse loss


def test_monte_carlo_is_seeded_and_uses_the_paths_asked_for() -> None:
    r = fat_returns(2_000)
    assert monte_carlo_var(r, 0.99, seed=3) == monte_carlo_var(r, 0.99, seed=3)
    few = monte_carlo_var(r, 0.99, paths=1_000, seed=3)
    assert few != monte_carlo_var(r, 0.99, seed=3)


def test_the_hill_index_recovers_a_pareto_tail() -> None:
    rng = np.random.default_rng(5)
    losses = (rng.pareto(3.0, 20_000) + 1.0) * 0.01  # tail index 3
    returns = np.concatenate([-losses, np.abs(rng.normal(0, 0.01, 20_000))])
    index, k = hill_index(returns, k=500)
    assert k == 500 and index == pytest.approx(3.0, rel=0.15)
    assert hill_index(np.abs(returns))[0] is None  # no losses: no index


def test_the_tail_of_fat_returns_scores_higher_than_that_of_normal_ones() -> None:
    fat, thin = tail_stats(fat_returns()), tail_stats(normal_returns())
    assert fat.fat_tail and not thin.fat_tail
    assert fat.score > thin.score + 20
    assert 0 <= thin.score <= 100 and 0 <= fat.score <= 100
    assert thin.excess_kurtosis == pytest.approx(0.0, abs=0.3)


@pytest.mark.parametrize(
    "bad", [np.zeros(5), np.array([0.01] * 40 + [np.nan]), np.array([0.01] * 40 + [-1.0])]
)
def test_too_few_or_unusable_returns_are_refused_in_one_line(bad: np.ndarray) -> None:
    with pytest.raises(DataError):
        historical_var(bad, 0.99)
    with pytest.raises(ValueError, match="level"):
        parametric_var(normal_returns(), 1.2)


def test_kupiec_accepts_the_expected_exceptions_and_rejects_too_many() -> None:
    right = kupiec_pof(10, 1_000, 0.99)
    assert right.statistic == pytest.approx(0.0, abs=1e-9) and right.p_value == pytest.approx(1.0)
    many = kupiec_pof(25, 1_000, 0.99)
    assert many.p_value < 0.001
    # by hand: LR = -2 ln[(1-p)^(n-x) p^x / ((1-x/n)^(n-x) (x/n)^x)]
    n, x, p = 1_000, 25, 0.01
    by_hand = -2 * (
        (n - x) * np.log(1 - p) + x * np.log(p) - (n - x) * np.log(1 - x / n) - x * np.log(x / n)
    )
    assert many.statistic == pytest.approx(by_hand)
    assert kupiec_pof(0, 250, 0.99).statistic == pytest.approx(-2 * 250 * np.log(0.99))


def test_christoffersen_finds_clustered_exceptions_and_not_spread_ones() -> None:
    spread = np.zeros(1_000, dtype=bool)
    spread[::100] = True  # 10 exceptions, never two in a row
    clustered = np.zeros(1_000, dtype=bool)
    clustered[500:510] = True  # the same 10, all at once
    assert christoffersen_independence(spread).p_value > 0.05
    assert christoffersen_independence(clustered).p_value < 0.001
    cc = conditional_coverage(clustered, 0.99)
    assert cc.df == 2
    assert cc.statistic == pytest.approx(christoffersen_independence(clustered).statistic)


def test_the_basel_traffic_light_at_250_days_and_99_percent() -> None:
    zones = [basel_zone(x) for x in range(12)]
    assert zones[:5] == [BaselZone.GREEN] * 5
    assert zones[5:10] == [BaselZone.YELLOW] * 5
    assert zones[10:] == [BaselZone.RED] * 2


def test_a_rolled_var_uses_only_the_periods_before_each_forecast() -> None:
    from core.brains.risk_models import backtest_var

    r = normal_returns(400)
    bt = backtest_var(r, "historical", 0.95, window=100)
    assert bt.periods == 300 and len(bt.forecasts) == 300
    assert bt.forecasts[0] == pytest.approx(historical_var(r[:100], 0.95).var)
    altered = r.copy()
    altered[150:] = -0.5  # the future of forecast 50 (period 150) crashes
    assert backtest_var(altered, "historical", 0.95, window=100).forecasts[50] == bt.forecasts[50]
    assert bt.exceptions == int((r[100:] < -bt.forecasts).sum())


def test_on_normal_returns_the_normal_var_passes_its_backtest_and_fails_on_fat_ones() -> None:
    from core.brains.risk_models import backtest_var

    good = backtest_var(normal_returns(1_250, seed=7), "parametric", 0.99)
    assert good.kupiec.p_value > 0.05 and good.zone is BaselZone.GREEN
    # a calm year, then one five times as volatile: the normal VaR of the calm window fails
    rng = np.random.default_rng(8)
    shift = np.concatenate([rng.normal(0, 0.01, 500), rng.normal(0, 0.05, 250)])
    bad = backtest_var(shift, "parametric", 0.99)
    assert bad.kupiec.p_value < 0.01 and bad.zone is BaselZone.RED
    with pytest.raises(ValueError, match="unknown VaR method"):
        backtest_var(shift, "astrology", 0.99)
    with pytest.raises(DataError):
        backtest_var(shift[:100], "historical", 0.99)  # not even one window


@pytest.mark.parametrize("method", ["parametric", "cornish_fisher", "historical", "monte_carlo"])
@pytest.mark.parametrize("level", [0.95, 0.99])
def test_a_rolled_var_is_each_window_estimated_alone(method: str, level: float) -> None:
    from core.brains.risk_models import VAR_METHODS, backtest_var

    r = fat_returns(160, seed=11)
    bt = backtest_var(r, method, level, window=60)
    for t in (60, 111, 159):
        alone = VAR_METHODS[method](r[t - 60 : t], level)
        assert bt.forecasts[t - 60] == pytest.approx(alone.var, rel=1e-12)
        assert bt.es_forecasts[t - 60] == pytest.approx(alone.es, rel=1e-12)
    hits = r[60:] < -bt.forecasts
    assert bt.hits.tolist() == hits.tolist() and bt.exceptions == int(hits.sum())
    if hits.any():
        assert bt.mean_loss_on_exceptions == pytest.approx(-r[60:][hits].mean())
        assert bt.mean_es_on_exceptions == pytest.approx(bt.es_forecasts[hits].mean())
    else:
        assert bt.mean_loss_on_exceptions is None and bt.mean_es_on_exceptions is None


@pytest.mark.parametrize("seed", [0, 5])
def test_the_monte_carlo_tail_is_that_of_the_whole_simulated_sample(seed: int) -> None:
    r = fat_returns(500, seed=12)
    mu, sigma, kurt = r.mean(), r.std(ddof=1), stats.kurtosis(r)
    df = 6.0 / kurt + 4.0
    u = 1.0 - np.random.default_rng(seed).random(3_000)  # the same seeded uniforms
    sim = mu + stats.t.ppf(u, df) * sigma * np.sqrt((df - 2.0) / df)  # all 3,000 periods
    for level in (0.95, 0.99):
        q = np.quantile(sim, 1.0 - level)
        est = monte_carlo_var(r, level, paths=3_000, seed=seed)
        assert est.var == pytest.approx(-q, rel=1e-9)
        assert est.es == pytest.approx(-sim[sim <= q].mean(), rel=1e-9)
    # thin tails (excess kurtosis below 0): the normal
    thin = np.random.default_rng(4).uniform(-0.02, 0.02, 500)
    normal = thin.mean() + stats.norm.ppf(u) * thin.std(ddof=1)
    est = monte_carlo_var(thin, 0.99, paths=3_000, seed=seed)
    assert est.var == pytest.approx(-np.quantile(normal, 0.01), rel=1e-9)


def test_monte_carlo_in_smaller_blocks_gives_the_same_forecasts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.brains import risk_models

    r = fat_returns(200, seed=13)
    whole = risk_models.backtest_var(r, "monte_carlo", 0.95, window=60)
    monkeypatch.setattr(risk_models, "_MC_CELLS", 12_000)  # 2 rows of a 5,001-draw tail
    blocks = risk_models.backtest_var(r, "monte_carlo", 0.95, window=60)
    assert np.array_equal(blocks.forecasts, whole.forecasts)
    assert np.array_equal(blocks.es_forecasts, whole.es_forecasts)


_SERIES = {
    "fat": np.random.default_rng(5).standard_t(4, 800) * 0.01,
    "thin": np.random.default_rng(6).uniform(-0.02, 0.02, 500),  # kurtosis < 0: the normal
    "flat": np.zeros(40),
}


@pytest.mark.parametrize("series", list(_SERIES))
@pytest.mark.parametrize("levels", [(0.95, 0.99), (0.99, 0.95), (0.999, 0.9, 0.975), (0.99,)])
def test_the_suite_gives_each_methods_own_figures_at_each_level(
    series: str, levels: tuple[float, ...]
) -> None:
    # The suite shares one simulated tail between its levels: the figures must stay those of
    # each method's own call, to the bit, in the documented order, whatever the levels' order.
    r = _SERIES[series]
    suite = var_suite(r, levels, paths=20_000, seed=2)
    expected = [
        alone
        for level in levels
        for alone in (
            parametric_var(r, level),
            cornish_fisher_var(r, level),
            historical_var(r, level),
            monte_carlo_var(r, level, paths=20_000, seed=2),
        )
    ]
    assert list(suite) == expected


def test_the_suite_checks_each_level_and_refuses_short_returns() -> None:
    assert var_suite(np.zeros(5), ()) == ()
    with pytest.raises(ValueError, match="level"):
        var_suite(_SERIES["fat"], (0.95, 1.0))
    with pytest.raises(DataError, match="at least 30"):
        var_suite(np.zeros(5))


def test_monte_carlo_rows_of_mixed_tails_are_each_their_own() -> None:
    # A block holding fat rows and thin ones takes each row's own quantiles (t or normal).
    from core.brains import risk_models

    rows = np.vstack([_SERIES["fat"][:500], _SERIES["thin"], np.zeros(500)])
    var, es = risk_models._monte_carlo(rows, 0.99, paths=5_000, seed=1)
    for i, row in enumerate(rows):
        alone = monte_carlo_var(row, 0.99, paths=5_000, seed=1)
        assert (var[i], es[i]) == (alone.var, alone.es), i


@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.025, 0.05, 0.1, 0.3, 0.4999])
def test_the_normal_tail_is_scipy_stats_norm_bit_for_bit(alpha: float) -> None:
    # scipy.stats is not imported for it (0.6 s at start): its formulas must give its figures.
    from core.brains.risk_models import _normal_tail

    _normal_tail.cache_clear()
    z, density, grid = _normal_tail(alpha)
    assert z == float(stats.norm.ppf(alpha))
    assert density == float(stats.norm.pdf(stats.norm.ppf(alpha)))
    expected = stats.norm.ppf((np.arange(1_000) + 0.5) / 1_000 * alpha)
    assert np.array_equal(grid, expected)
    assert not grid.flags.writeable  # cached: nobody may change it under the next caller
