"""The learning manager's pure policy: due checks, promotion gates, shadows, drift, retention."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from core.domain.model_versions import ModelStatus, ModelVersion
from core.ml.learning import (
    LN2,
    DriftPolicy,
    Due,
    DueInputs,
    DuePolicy,
    ShadowVerdict,
    ZeroVariance,
    diebold_mariano,
    drift_check,
    due_check,
    gate,
    judge_shadow,
    log_losses,
    paired_bootstrap,
    psi,
    retention_plan,
    worst_psi,
)

H = 3_600_000
NOW = 1_700_000_000_000
FloatArray = npt.NDArray[np.float64]


def record(n: int, *, seed: int, noise: float) -> tuple[FloatArray, FloatArray]:
    """Return true P(up) for ``n`` rows, their drawn 0/1 outcomes, and a forecast of that P
    with ``noise`` in log-odds (0: calibrated): (forecast, outcomes)."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(0.0, 1.0, n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    forecast = 1.0 / (1.0 + np.exp(-(logit + noise * rng.normal(size=n))))
    return forecast, y


def losses(n: int, *, seed: int, noise: float, y_seed: int = 0) -> FloatArray:
    """Losses of a forecast with ``noise`` on the outcomes drawn with ``y_seed``."""
    rng = np.random.default_rng(y_seed)
    logit = rng.normal(0.0, 1.0, n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    noisy = logit + noise * np.random.default_rng(seed).normal(size=n)
    return log_losses(1.0 / (1.0 + np.exp(-noisy)), y)


# --- due_check -----------------------------------------------------------------------------

POLICY = DuePolicy(every_ms=168 * H, min_new_candles=168, min_new_trades=100)
TRADES = DuePolicy(every_ms=168 * H, min_new_candles=168, min_new_trades=100, need_trades=True)
WEEK_AGO = NOW - 170 * H


@pytest.mark.parametrize(
    ("policy", "inputs", "due", "reason"),
    [
        pytest.param(
            POLICY,
            DueInputs(now_ms=NOW, last_trained_ms=NOW - 165 * H, new_candles={"BTC/USDT": 500}),
            False,
            "schedule: next in 3.0 h",
            id="schedule-not-passed",
        ),
        pytest.param(
            POLICY,
            DueInputs(now_ms=NOW, last_trained_ms=WEEK_AGO, new_candles={"BTC/USDT": 170}),
            True,
            "schedule: last trained 170.0 h ago; new candles: BTC/USDT 170",
            id="schedule-passed-with-data",
        ),
        pytest.param(
            POLICY,
            DueInputs(
                now_ms=NOW, last_trained_ms=WEEK_AGO, new_candles={"BTC/USDT": 12, "ETH/USDT": 9}
            ),
            False,
            "too little new data: BTC/USDT 12 < 168, ETH/USDT 9 < 168 candles",
            id="schedule-passed-without-data",
        ),
        pytest.param(
            POLICY,
            DueInputs(
                now_ms=NOW, last_trained_ms=WEEK_AGO, new_candles={"BTC/USDT": 12, "ETH/USDT": 200}
            ),
            True,
            "new candles: BTC/USDT 12, ETH/USDT 200",
            id="one-symbol-with-enough-data-suffices",
        ),
        pytest.param(
            POLICY,
            DueInputs(now_ms=NOW, last_trained_ms=WEEK_AGO, new_candles={}),
            False,
            "too little new data: no symbol has new candles",
            id="no-symbols",
        ),
        pytest.param(
            POLICY,
            DueInputs(
                now_ms=NOW,
                last_trained_ms=NOW - 50 * H,
                new_candles={"BTC/USDT": 42},
                drift="live log-loss 0.74 > validation 0.68 + 0.05",
            ),
            True,
            "drift: live log-loss 0.74 > validation 0.68 + 0.05; new candles: BTC/USDT 42",
            id="drift-early",
        ),
        pytest.param(
            POLICY,
            DueInputs(
                now_ms=NOW, last_trained_ms=NOW - 50 * H, new_candles={"BTC/USDT": 41}, drift="x"
            ),
            False,
            "drift (x) but too little new data: BTC/USDT 41 < 42 candles",
            id="drift-needs-a-quarter-of-the-data",
        ),
        pytest.param(
            POLICY,
            DueInputs(
                now_ms=NOW, last_trained_ms=NOW - 10 * H, new_candles={"BTC/USDT": 900}, drift="x"
            ),
            False,
            "drift (x) but trained 10.0 h ago: next in 32.0 h",
            id="drift-waits-a-quarter-of-the-schedule",
        ),
        pytest.param(
            POLICY,
            DueInputs(
                now_ms=NOW,
                last_trained_ms=NOW - H,
                new_candles={},
                requested="/retrain by @alice",
            ),
            True,
            "requested: /retrain by @alice",
            id="manual-ignores-schedule-and-data",
        ),
        pytest.param(
            POLICY,
            DueInputs(now_ms=NOW, last_trained_ms=None, new_candles={"BTC/USDT": 3}),
            True,
            "first run: never trained; new candles: BTC/USDT 3",
            id="first-run",
        ),
        pytest.param(
            POLICY,
            DueInputs(now_ms=NOW, last_trained_ms=None, new_candles={"BTC/USDT": 0}),
            False,
            "first run: no new candles yet",
            id="first-run-without-candles",
        ),
        pytest.param(
            TRADES,
            DueInputs(
                now_ms=NOW,
                last_trained_ms=WEEK_AGO,
                new_candles={"BTC/USDT": 200},
                new_trades=120,
                new_wins=120,
            ),
            False,
            "closed trades lack an outcome: 120 wins, 0 losses of 120",
            id="trades-with-only-wins",
        ),
        pytest.param(
            TRADES,
            DueInputs(
                now_ms=NOW,
                last_trained_ms=WEEK_AGO,
                new_candles={"BTC/USDT": 200},
                new_trades=40,
                new_wins=20,
                new_losses=20,
            ),
            False,
            "too few closed trades: 40 < 100",
            id="too-few-trades",
        ),
        pytest.param(
            TRADES,
            DueInputs(
                now_ms=NOW,
                last_trained_ms=WEEK_AGO,
                new_candles={"BTC/USDT": 200},
                new_trades=120,
                new_wins=50,
                new_losses=70,
            ),
            True,
            "schedule: last trained 170.0 h ago",
            id="trades-condition-met",
        ),
        pytest.param(
            POLICY,
            DueInputs(
                now_ms=NOW,
                last_trained_ms=WEEK_AGO,
                new_candles={"BTC/USDT": 200},
                new_trades=120,
                new_wins=120,
            ),
            True,
            "schedule:",
            id="trades-ignored-unless-needed",
        ),
    ],
)
def test_due_check_table(policy: DuePolicy, inputs: DueInputs, due: bool, reason: str) -> None:
    verdict = due_check(policy, inputs)

    assert verdict.due is due
    assert reason in verdict.reason


@pytest.mark.parametrize(
    "make",
    [
        lambda: DuePolicy(every_ms=0),
        lambda: DuePolicy(min_new_candles=-1),
        lambda: DueInputs(now_ms=NOW, last_trained_ms=None, new_candles={"BTC/USDT": -1}),
        lambda: DueInputs(now_ms=NOW, last_trained_ms=None, new_candles={}, new_trades=-1),
        lambda: DueInputs(now_ms=NOW, last_trained_ms=None, new_candles={}, new_wins=3),
        lambda: DueInputs(now_ms=NOW, last_trained_ms=NOW + 1, new_candles={}),
    ],
)
def test_bad_due_settings_and_inputs_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(
    since_h=st.integers(0, 1000),
    counts=st.dictionaries(
        st.sampled_from(["BTC/USDT", "ETH/USDT", "SOL/USDT"]), st.integers(0, 400)
    ),
    drift=st.sampled_from(["", "hit rate"]),
)
def test_due_check_always_answers_with_a_reason(
    since_h: int, counts: dict[str, int], drift: str
) -> None:
    verdict = due_check(
        POLICY,
        DueInputs(now_ms=NOW, last_trained_ms=NOW - since_h * H, new_candles=counts, drift=drift),
    )

    assert isinstance(verdict, Due) and verdict.reason and "\n" not in verdict.reason
    # Never due without a symbol that has a quarter of the data (drift) or all of it.
    if verdict.due:
        assert max(counts.values()) >= (42 if drift else 168)


# --- log_losses, Diebold-Mariano, bootstrap ---------------------------------------------


def test_log_losses_are_per_row_and_clip_confident_misses() -> None:
    got = log_losses([0.5, 1.0, 0.0, 0.8], [1, 0, 0, 1], eps=1e-6)

    assert got[0] == pytest.approx(LN2)
    assert got[1] == pytest.approx(-math.log(1e-6))
    assert got[2] == pytest.approx(-math.log1p(-1e-6))
    assert got[3] == pytest.approx(-math.log(0.8))


@pytest.mark.parametrize(
    ("p", "y", "message"),
    [
        ([0.5, np.nan], [1, 0], "NaN"),
        ([0.5, 1.2], [1, 0], "[0, 1]"),
        ([0.5, 0.2], [1, 2], "0 or 1"),
        ([0.5], [1, 0], "1 predictions but 2 outcomes"),
        ([[0.5]], [[1]], "shape"),
    ],
)
def test_log_losses_refuse_bad_input(p: object, y: object, message: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        log_losses(p, y)  # type: ignore[arg-type]

    assert message in str(caught.value)


def test_dm_without_lag_is_the_paired_t_test() -> None:
    a, b = losses(300, seed=1, noise=1.0), losses(300, seed=2, noise=0.8)

    statistic, p = diebold_mariano(a, b, lag=0)

    reference = stats.ttest_rel(a, b)
    assert statistic == pytest.approx(reference.statistic, rel=1e-9)
    assert p == pytest.approx(reference.pvalue, rel=1e-9)


def test_dm_variance_is_newey_west_with_bartlett_weights() -> None:
    d = np.random.default_rng(3).normal(0.05, 1.0, 60)
    n, lag = d.size, 3
    # the textbook sums, written out row by row
    c = d - d.mean()
    gamma = [sum(c[t] * c[t - k] for t in range(k, n)) / n for k in range(lag + 1)]
    variance = gamma[0] + 2 * sum((1 - k / (lag + 1)) * gamma[k] for k in range(1, lag + 1))
    h = lag + 1
    expected = d.mean() / math.sqrt(variance / n) * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)

    statistic, p = diebold_mariano(d, np.zeros(n), lag=lag)

    assert statistic == pytest.approx(expected, rel=1e-9)
    assert p == pytest.approx(2 * stats.t.sf(abs(expected), n - 1), rel=1e-9)


def test_identical_losses_are_refused_as_zero_variance() -> None:
    a = losses(200, seed=1, noise=1.0)

    with pytest.raises(ZeroVariance, match="do not vary"):
        diebold_mariano(a, a.copy(), lag=5)
    with pytest.raises(ValueError, match="do not vary"):
        diebold_mariano(a + 0.01, a, lag=0)  # constant differences: nothing to test either


@pytest.mark.parametrize(
    ("rows", "lag", "message"),
    [
        (9, 0, "at least 10"),
        (30, 30, "lag must be in"),
        (30, -1, "lag must be in"),
        (12, 11, "too few"),  # HLN factor 0 at lag n - 1
    ],
)
def test_dm_refuses_what_it_cannot_test(rows: int, lag: int, message: str) -> None:
    d = np.random.default_rng(0).normal(size=rows)

    with pytest.raises(ValueError, match=message):
        diebold_mariano(d, np.zeros(rows), lag=lag)


def test_dm_with_nan_is_refused() -> None:
    a = np.linspace(0.5, 0.8, 50)
    b = a[::-1].copy()
    b[7] = np.nan

    with pytest.raises(ValueError, match="NaN"):
        diebold_mariano(a, b, lag=0)


def test_dm_rejects_about_alpha_of_equally_good_forecasts() -> None:
    # Two forecasts with the same noise: the test's size should be its nominal 5 %.
    rejected = 0
    for seed in range(300):
        a = losses(200, seed=2 * seed + 1, noise=0.7, y_seed=seed)
        b = losses(200, seed=2 * seed + 2, noise=0.7, y_seed=seed)
        rejected += diebold_mariano(a, b, lag=0)[1] < 0.05

    assert 5 <= rejected <= 30  # 15 expected; a binomial 300 x 0.05 stays in this range


def overlapping(n: int, *, seed: int, horizon: int, mean: float) -> FloatArray:
    """Differences summed over ``horizon`` rows of iid noise, as overlapping labels give."""
    noise = np.random.default_rng(seed).normal(size=n + horizon - 1)
    return mean + np.convolve(noise, np.ones(horizon) / horizon, mode="valid")


@pytest.mark.parametrize("seed", range(5))
def test_overlap_with_its_lag_gives_a_larger_p_than_without(seed: int) -> None:
    d = overlapping(1000, seed=seed, horizon=24, mean=0.04)

    _, p_ignoring = diebold_mariano(d, np.zeros(d.size), lag=0)
    _, p_with_lag = diebold_mariano(d, np.zeros(d.size), lag=23)

    assert p_with_lag > p_ignoring


def test_bootstrap_agrees_in_direction_with_dm() -> None:
    champion = losses(600, seed=1, noise=1.2)
    better = losses(600, seed=2, noise=0.3)

    mean, p_better = paired_bootstrap(champion, better, block=24)
    _, p_worse = paired_bootstrap(better, champion, block=24)
    statistic, _ = diebold_mariano(champion, better, lag=23)

    assert mean == pytest.approx(float((champion - better).mean()))
    assert statistic > 0 and p_better < 0.01
    assert diebold_mariano(better, champion, lag=23)[0] < 0 and p_worse > 0.99


def test_bootstrap_is_seeded_and_refuses_bad_blocks() -> None:
    a, b = losses(100, seed=1, noise=1.0), losses(100, seed=2, noise=0.9)

    assert paired_bootstrap(a, b, block=5, seed=7) == paired_bootstrap(a, b, block=5, seed=7)
    for block in (0, 101):
        with pytest.raises(ValueError, match="block"):
            paired_bootstrap(a, b, block=block)


def test_bootstrap_p_spreads_with_the_overlap() -> None:
    # Blocks as long as the overlap see the correlation that single rows hide.
    d = overlapping(800, seed=11, horizon=24, mean=0.03)
    zeros = np.zeros(d.size)

    _, p_rows = paired_bootstrap(d, zeros, block=1)
    _, p_blocks = paired_bootstrap(d, zeros, block=24)

    assert p_blocks > p_rows


# --- gate --------------------------------------------------------------------------------


@pytest.mark.parametrize("test", ["diebold-mariano", "paired-bootstrap"])
def test_a_clearly_better_candidate_passes(test: str) -> None:
    champion = losses(1000, seed=1, noise=1.5)
    candidate = losses(1000, seed=2, noise=0.2)  # near calibrated on the same outcomes

    result = gate(candidate, champion, test=test)

    assert result.passed, result.reason
    assert result.test == test and result.rows == 1000
    assert result.mean_improvement == pytest.approx(float((champion - candidate).mean()))
    assert result.statistic > 0 and result.p_value < 0.05
    assert result.reason.startswith("better by")


@pytest.mark.parametrize("test", ["diebold-mariano", "paired-bootstrap"])
def test_a_candidate_better_only_by_noise_fails(test: str) -> None:
    # Equally noisy forecasts: about half score a little better by chance; the gate lets
    # through about alpha of all of them, not the half.
    looked_better, passed = 0, 0
    for seed in range(100):
        champion = losses(500, seed=1000 + seed, noise=0.8, y_seed=seed)
        candidate = losses(500, seed=2000 + seed, noise=0.8, y_seed=seed)
        result = gate(candidate, champion, test=test)
        looked_better += result.mean_improvement > 0
        passed += result.passed
        if result.mean_improvement > 0 and not result.passed:
            assert result.reason.startswith("not significant") and result.p_value >= 0.05

    assert looked_better >= 35
    assert passed <= 12  # 5 expected; a binomial 100 x 0.05 stays below this


def test_a_worse_candidate_fails_with_a_large_p() -> None:
    champion = losses(500, seed=2, noise=0.2)
    candidate = losses(500, seed=1, noise=1.5)

    result = gate(candidate, champion)

    assert not result.passed and result.mean_improvement < 0 and result.p_value > 0.95
    assert "<= margin 0" in result.reason


def test_the_margin_must_be_exceeded_too() -> None:
    champion = losses(1000, seed=1, noise=1.0)
    candidate = losses(1000, seed=2, noise=0.5)
    improvement = float((champion - candidate).mean())

    assert gate(candidate, champion, margin=improvement * 0.9).passed
    result = gate(candidate, champion, margin=improvement * 1.1)
    assert not result.passed and result.p_value < 0.05
    assert f"<= margin {improvement * 1.1:g}" in result.reason


def test_too_few_rows_fail_without_a_crash() -> None:
    result = gate(losses(50, seed=2, noise=0.1), losses(50, seed=1, noise=2.0), min_rows=100)

    assert not result.passed and result.rows == 50
    assert result.reason == "too few rows: 50 < 100"
    assert (result.statistic, result.p_value) == (0.0, 1.0)
    assert not gate([], [], min_rows=100).passed


@pytest.mark.parametrize("test", ["diebold-mariano", "paired-bootstrap"])
@pytest.mark.parametrize("shift", [0.0, 0.01])
def test_differences_that_do_not_vary_fail_the_gate_with_a_reason(test: str, shift: float) -> None:
    champion = losses(300, seed=1, noise=1.0)

    result = gate(champion - shift, champion, test=test)

    assert not result.passed and result.mean_improvement == pytest.approx(shift)
    assert "do not vary" in result.reason and "no test" in result.reason
    assert (result.statistic, result.p_value) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("candidate", "champion", "kwargs", "message"),
    [
        (np.zeros(200), np.zeros(199), {}, "equal lengths"),
        (np.full(200, np.nan), np.zeros(200), {}, "NaN"),
        (np.zeros(200), np.zeros(200), {"test": "t-test"}, "one of"),
        (np.zeros(200), np.zeros(200), {"alpha": 1.5}, "alpha"),
        (np.zeros(200), np.zeros(200), {"margin": -0.1}, "margin"),
        (np.zeros(200), np.zeros(200), {"min_rows": 5}, "min_rows"),
    ],
)
def test_gate_refuses_bad_input(
    candidate: FloatArray, champion: FloatArray, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        gate(candidate, champion, **kwargs)  # type: ignore[arg-type]


# --- judge_shadow ------------------------------------------------------------------------

STARTED = NOW - 48 * H


def test_a_shadow_waits_for_time_and_rows() -> None:
    good, bad = losses(200, seed=2, noise=0.2), losses(200, seed=1, noise=1.5)

    early = judge_shadow(
        good, bad, started_ms=NOW - 10 * H, now_ms=NOW, min_ms=24 * H, min_rows=100
    )
    thin = judge_shadow(
        good[:50], bad[:50], started_ms=STARTED, now_ms=NOW, min_ms=24 * H, min_rows=100
    )

    assert (
        early.verdict is ShadowVerdict.WAIT
        and early.reason == "waiting: 10.0 of 24.0 h, 200 of 100 rows"
    )
    assert thin.verdict is ShadowVerdict.WAIT and "50 of 100 rows" in thin.reason
    assert thin.shadow_log_loss == pytest.approx(float(good[:50].mean()))


def test_a_shadow_that_holds_up_is_promoted_and_a_worse_one_rejected() -> None:
    good, bad = losses(300, seed=2, noise=0.2), losses(300, seed=1, noise=1.5)

    promoted = judge_shadow(good, bad, started_ms=STARTED, now_ms=NOW, min_ms=24 * H, min_rows=100)
    rejected = judge_shadow(bad, good, started_ms=STARTED, now_ms=NOW, min_ms=24 * H, min_rows=100)

    assert promoted.verdict is ShadowVerdict.PROMOTE and promoted.reason.startswith("held up")
    assert promoted.shadow_log_loss == pytest.approx(float(good.mean()))
    assert promoted.champion_log_loss == pytest.approx(float(bad.mean()))
    assert rejected.verdict is ShadowVerdict.REJECT and rejected.reason.startswith("worse by")


def test_the_shadow_margin_is_a_tolerance() -> None:
    champion = losses(300, seed=1, noise=0.5)
    shadow = champion + 0.01  # worse by exactly 0.01 per row

    kwargs = {"started_ms": STARTED, "now_ms": NOW, "min_ms": 0, "min_rows": 100}
    assert judge_shadow(shadow, champion, margin=0.011, **kwargs).verdict is ShadowVerdict.PROMOTE
    assert judge_shadow(shadow, champion, margin=0.009, **kwargs).verdict is ShadowVerdict.REJECT


def test_without_a_champion_the_shadow_must_beat_a_coin() -> None:
    kwargs = {"started_ms": STARTED, "now_ms": NOW, "min_ms": 24 * H, "min_rows": 100}
    skilled = losses(300, seed=2, noise=0.2)
    p, y = record(300, seed=5, noise=0.0)
    inverted = log_losses(1.0 - p, y)  # says up when down is likely

    first = judge_shadow(skilled, [], **kwargs)
    hopeless = judge_shadow(inverted, np.array([]), **kwargs)

    assert first.verdict is ShadowVerdict.PROMOTE and first.champion_log_loss == pytest.approx(LN2)
    assert "no champion" in first.reason
    assert hopeless.verdict is ShadowVerdict.REJECT


@pytest.mark.parametrize(
    ("shadow", "champion", "kwargs", "message"),
    [
        (np.zeros(5), np.zeros(4), {}, "5 shadow losses but 4"),
        (np.array([np.nan]), np.zeros(1), {}, "NaN"),
        (np.zeros(5), np.zeros(5), {"now_ms": STARTED - 1}, "before the shadow started"),
        (np.zeros(5), np.zeros(5), {"min_rows": 0}, "min_rows"),
    ],
)
def test_judge_shadow_refuses_bad_input(
    shadow: FloatArray, champion: FloatArray, kwargs: dict[str, int], message: str
) -> None:
    args = {"started_ms": STARTED, "now_ms": NOW, "min_ms": H, "min_rows": 3} | kwargs
    with pytest.raises(ValueError, match=message):
        judge_shadow(shadow, champion, **args)


# --- psi and drift -----------------------------------------------------------------------


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=5000)

    assert psi(train, rng.normal(size=2000)) < 0.02
    assert psi(train, rng.normal(0.8, 1.0, 2000)) > 0.25
    assert psi(train, rng.normal(0.0, 2.0, 2000)) > 0.25


def test_psi_drops_nans_and_handles_repeated_values() -> None:
    train = np.concatenate([np.zeros(500), np.ones(500), [np.nan] * 10])

    assert psi(train, np.concatenate([np.zeros(50), np.ones(50), [np.nan]])) == pytest.approx(0.0)
    assert psi(train, np.full(100, 2.0)) > 0.25  # values beyond every cut have their own bin
    assert psi(np.zeros(100), np.ones(100)) > 0.25  # a constant feature that moved


@pytest.mark.parametrize(
    ("expected", "actual", "kwargs", "message"),
    [
        (np.arange(5.0), np.arange(100.0), {}, "5 expected values, at least 10"),
        (np.arange(100.0), [np.nan] * 20, {}, "0 actual values"),
        (np.arange(100.0), np.arange(100.0), {"bins": 1}, "bins >= 2"),
        (np.arange(100.0), np.r_[np.arange(99.0), np.inf], {}, "infinity"),
    ],
)
def test_psi_refuses_bad_input(
    expected: object, actual: object, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        psi(expected, actual, **kwargs)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=10, max_size=200),
    st.lists(st.floats(-1e6, 1e6), min_size=10, max_size=200),
)
def test_psi_is_never_negative_and_zero_against_itself(a: list[float], b: list[float]) -> None:
    assert psi(a, b) >= 0.0
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)


DRIFT = DriftPolicy(window_rows=200, min_rows=100)


def test_a_degraded_live_record_has_drifted() -> None:
    p, y = record(200, seed=3, noise=0.0)
    flipped = np.where(np.arange(200) % 3 == 0, 1.0 - y, y)  # a third of the outcomes turn

    report = drift_check(
        DRIFT,
        live_p=p,
        live_y=flipped,
        expected_log_loss=float(log_losses(p, y).mean()),  # its validation: the outcomes as drawn
        expected_accuracy=float(((p >= 0.5) == (y == 1)).mean()),
    )

    assert report.drifted
    assert report.live_log_loss == pytest.approx(float(log_losses(p, flipped).mean()))
    assert any(r.startswith("live log-loss") for r in report.reasons)
    assert any(r.startswith("live hit rate") for r in report.reasons)


def test_a_record_like_validation_has_not_drifted() -> None:
    p, y = record(200, seed=3, noise=0.0)
    validation_loss = float(log_losses(p, y).mean())
    validation_accuracy = float(((p >= 0.5) == (y == 1)).mean())

    report = drift_check(
        DRIFT,
        live_p=p,
        live_y=y,
        expected_log_loss=validation_loss,
        expected_accuracy=validation_accuracy,
    )

    assert not report.drifted and report.reasons[0].startswith("no drift")
    assert report.live_hit_rate == pytest.approx(validation_accuracy)


def test_only_the_last_window_counts() -> None:
    p, y = record(500, seed=4, noise=0.0)
    wrong_then = np.r_[1.0 - y[:300], y[300:]]  # the old record was awful, the last 200 are fine

    report = drift_check(
        DRIFT,
        live_p=p,
        live_y=wrong_then,
        expected_log_loss=float(log_losses(p[300:], y[300:]).mean()),
        expected_accuracy=0.5,
    )

    assert not report.drifted
    assert report.live_log_loss == pytest.approx(float(log_losses(p[300:], y[300:]).mean()))


def test_too_few_live_rows_is_no_drift() -> None:
    p, y = record(60, seed=1, noise=3.0)

    report = drift_check(
        DRIFT, live_p=p, live_y=1 - y, expected_log_loss=0.3, expected_accuracy=0.9
    )

    assert report == type(report)(False, ("too few live rows: 60 < 100",), None, None, None)


def test_a_shifted_feature_is_drift_and_named() -> None:
    p, y = record(200, seed=3, noise=0.0)
    rng = np.random.default_rng(9)
    train = {
        "ret_1": rng.normal(size=3000),
        "vol_ratio_20": rng.normal(1.0, 0.2, 3000),
        "gone": np.ones(10),
    }
    live = {
        "ret_1": rng.normal(size=500),
        "vol_ratio_20": rng.normal(1.6, 0.2, 500),
        "new": np.ones(10),
    }

    report = drift_check(
        DRIFT,
        live_p=p,
        live_y=y,
        expected_log_loss=float(log_losses(p, y).mean()),
        expected_accuracy=0.5,
        feature_shift=worst_psi(train, live),
    )

    assert report.drifted and report.worst_psi is not None
    assert report.worst_psi[0] == "vol_ratio_20" and report.worst_psi[1] > 0.25
    assert report.reasons == (f"feature vol_ratio_20 PSI {report.worst_psi[1]:.3f} > 0.25",)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DriftPolicy(window_rows=50, min_rows=100),
        lambda: DriftPolicy(psi_limit=0.0),
        lambda: drift_check(
            DRIFT, live_p=[0.5], live_y=[1, 0], expected_log_loss=0.6, expected_accuracy=0.5
        ),
        lambda: drift_check(
            DRIFT, live_p=[0.5], live_y=[1], expected_log_loss=np.nan, expected_accuracy=0.5
        ),
        lambda: drift_check(
            DRIFT, live_p=[0.5], live_y=[1], expected_log_loss=0.6, expected_accuracy=1.5
        ),
    ],
)
def test_bad_drift_settings_and_inputs_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


# --- retention ---------------------------------------------------------------------------


def version(
    vid: str,
    member: str = "xgb",
    *,
    at: int,
    status: ModelStatus = ModelStatus.CANDIDATE,
    promoted: int | None = None,
) -> ModelVersion:
    return ModelVersion(
        id=vid,
        member=member,
        status=status,
        train_start_ms=0,
        train_end_ms=at,
        feature_set_hash="fs-abc",
        artifact_path=f"models/{member}/{vid}",
        artifact_sha256="ab" * 32,
        created_ms=at,
        promoted_ms=promoted,
    )


def test_retention_keeps_every_champion_ever_and_prunes_old_candidates_per_member() -> None:
    versions = [
        version("x1", at=1, status=ModelStatus.RETIRED, promoted=2),  # an old champion
        version("x2", at=2, status=ModelStatus.RETIRED),  # rejected, never traded
        version("x3", at=3),
        version("x4", at=4, status=ModelStatus.CHAMPION, promoted=5),
        version("x5", at=5),
        version("x6", at=6, status=ModelStatus.SHADOW),
        version("x7", at=7),
        version("l1", "lgbm", at=1),
        version("l2", "lgbm", at=2),
    ]

    plan = retention_plan(versions, keep_candidates=2)

    assert plan.keep == ("x1", "x4", "x5", "x6", "x7", "l1", "l2")
    assert plan.prune == ("x2", "x3")


def test_retention_never_prunes_a_champion_even_keeping_no_candidates() -> None:
    versions = [
        version("old", at=1),
        version("champ", at=2, status=ModelStatus.CHAMPION),  # promoted before the field existed
        version("new", at=3),
    ]

    plan = retention_plan(versions, keep_candidates=0)

    assert plan.keep == ("champ",) and plan.prune == ("old", "new")


def test_retention_orders_candidates_by_creation_not_by_position() -> None:
    versions = [version("b", at=30), version("a", at=10), version("c", at=20)]

    assert retention_plan(versions, keep_candidates=1).prune == ("a", "c")
    assert retention_plan([], keep_candidates=1) == type(retention_plan([]))((), ())


def test_retention_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="keep_candidates"):
        retention_plan([], keep_candidates=-1)
    with pytest.raises(ValueError, match="unique"):
        retention_plan([version("a", at=1), version("a", "lgbm", at=2)])
