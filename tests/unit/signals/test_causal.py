"""Every rule-based provider is causal (our guard against look-ahead): cutting the candles
after row t leaves rows 0..t unchanged. The ML ensemble has its own such test
(tests/unit/ml/test_ensemble.py), as its members need training first."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from core.brains.regime import RegimeConfig
from core.market.synthetic import generate_candles
from core.signals.base import SignalFrame, SignalProvider
from core.signals.ema_rsi import EmaRsiConfig, EmaRsiCross
from core.signals.mean_reversion import MeanReversion, MeanReversionConfig
from core.signals.meta import MetaConfig, MetaStrategy

COLUMNS = ("entry", "exit_long", "exit_short", "confidence", "atr")
OPTIONAL = ("chosen", "score", "record", "exit_long_by", "exit_short_by")


def ema_rsi(short: bool) -> SignalProvider:
    return EmaRsiCross(EmaRsiConfig(allow_short=short))


def mean_reversion(short: bool) -> SignalProvider:
    return MeanReversion(MeanReversionConfig(allow_short=short))


def meta(short: bool) -> SignalProvider:
    regime = RegimeConfig(vol_window=12, vol_history=100, confirm=2)
    return MetaStrategy(
        [ema_rsi(short), mean_reversion(short)],
        MetaConfig(min_record=2, window=10, horizon=12, regime=regime),
    )


PROVIDERS: dict[str, Callable[[bool], SignalProvider]] = {
    "ema_rsi": ema_rsi,
    "mean_reversion": mean_reversion,
    "meta": meta,
}


def assert_prefix(whole: SignalFrame, part: SignalFrame, cut: int) -> None:
    assert np.array_equal(whole.ts_ms[: cut + 1], part.ts_ms)
    for name in COLUMNS + OPTIONAL:
        a, b = getattr(whole, name), getattr(part, name)
        if a is None:
            assert b is None, name
            continue
        assert np.array_equal(a[: cut + 1], b, equal_nan=True), (name, cut)


@pytest.mark.parametrize("short", [False, True])
@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_provider_is_causal(name: str, short: bool) -> None:
    provider = PROVIDERS[name](short)
    series = generate_candles("BTC/USDT", "1h", 700, seed=21)
    whole = provider.compute(series)
    assert whole.entry.any(), "no entry at all: the check would prove nothing"
    rng = np.random.default_rng(4)
    cuts = {0, 1, provider.warmup_candles - 1, provider.warmup_candles, 699}
    cuts |= set(rng.integers(60, 699, size=8).tolist())
    for cut in sorted(cuts):
        assert_prefix(whole, provider.compute(series.slice(0, cut + 1)), cut)
