"""The account a sizing agent sees: one definition (``SizingAccount``) fed ahead of time in
training (``SizingBook``) and by events live, giving the same features for the same trades,
and never an outcome before its trade closed."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError, DataError
from core.ml.rl.book import PORTFOLIO_FEATURES, SizingAccount, SizingBook
from tests.unit.ml.rl.synthetic import HOUR_MS, START_MS, candidates

DRAWDOWN, EXPOSURE, WIN_RATE, MEAN_PCT, FILL, IDLE = range(len(PORTFOLIO_FEATURES))


def test_live_events_and_the_training_book_give_the_same_features() -> None:
    c = candidates(300, seed=5)  # overlapping trades: closes come out of decision order
    sizes = np.random.default_rng(5).choice([0.0, 0.5, 1.0, 1.5], len(c))
    book, live = SizingBook(recent_trades=10), SizingAccount(recent_trades=10)
    pending: list[tuple[int, int]] = []  # (close_ms, index): what the venue will report

    for i in range(len(c)):
        t = int(c.decision_ms[i])
        # Live: the TradeClosed events that arrived by this decision, in the order they close.
        for close_ms, j in sorted(p for p in pending if p[0] <= t):
            live.closed(j, float(c.unit_outcome[j]))
            pending.remove((close_ms, j))
        trained = book.observe(t)
        assert np.array_equal(trained, live.features(t)), i
        book.open(t, int(c.close_ms[i]), float(sizes[i]), float(c.unit_outcome[i]))
        live.opened(i, t, float(sizes[i]))
        if sizes[i] > 0:
            pending.append((int(c.close_ms[i]), i))
    assert book.equity == live.equity and book.exposure == live.exposure


def test_an_open_trade_is_exposure_and_its_outcome_is_hidden_until_it_closes() -> None:
    account = SizingAccount(recent_trades=4, idle_cap_days=1.0)
    fresh = account.features(START_MS)
    assert fresh.tolist() == [0.0, 0.0, 0.5, 0.0, 0.0, 1.0]  # no record, never traded

    account.opened("a", START_MS, 1.5)
    account.opened("skipped", START_MS, 0.0)  # size 0: nothing was traded
    during = account.features(START_MS + 6 * HOUR_MS)
    assert during[EXPOSURE] == 1.5 and during[FILL] == 0.0 and during[IDLE] == 0.25
    assert not account.is_open("skipped")

    account.closed("a", -0.02)  # 1.5 x -2 % of the equity it was sized on
    after = account.features(START_MS + 12 * HOUR_MS)
    assert after[DRAWDOWN] == pytest.approx(3.0) and after[EXPOSURE] == 0.0
    assert after[WIN_RATE] == 0.0 and after[MEAN_PCT] == pytest.approx(-2.0)
    assert after[FILL] == 0.25 and account.recent_outcomes == (-0.02,)


def test_a_dropped_trade_leaves_no_trace_and_a_key_opens_once() -> None:
    account = SizingAccount()
    account.opened("a", START_MS, 1.0)
    with pytest.raises(DataError, match="open already"):
        account.opened("a", START_MS, 1.0)
    account.dropped("a")
    account.dropped("never opened")  # ignored
    assert account.exposure == 0.0 and account.recent_outcomes == () and account.equity == 1.0
    with pytest.raises(KeyError):
        account.closed("a", 0.01)  # its outcome can no longer be booked


@pytest.mark.parametrize("kwargs", [{"recent_trades": 0}, {"idle_cap_days": 0.0}])
def test_a_bad_window_is_a_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SizingAccount(**kwargs)  # type: ignore[arg-type]
