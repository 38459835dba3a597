"""The live observation: the policy's names, in its order, from what the engine gives; any
name it cannot give, or a value that is not finite, is refused rather than guessed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import DataError
from core.ml.rl.book import PORTFOLIO_FEATURES, SizingAccount
from core.ml.rl.observation import (
    ENTRY_FEATURES,
    build_observation,
    entry_features,
    spec_mismatch,
)

ENTRY = entry_features(confidence=0.7, regime_id=2, realised_vol_pct=3.5)
ACCOUNT = SizingAccount().features(0)


def test_the_observation_follows_the_policys_names_and_order() -> None:
    names = ("realised_vol_pct", "confidence", *PORTFOLIO_FEATURES)
    obs = build_observation(names, ENTRY, ACCOUNT)
    assert obs.dtype == np.float32 and obs.shape == (len(names),)
    assert obs[:2].tolist() == pytest.approx([3.5, 0.7])
    assert np.array_equal(obs[2:], ACCOUNT.astype(np.float32))
    assert set(ENTRY) == set(ENTRY_FEATURES)


@pytest.mark.parametrize(
    ("names", "said"),
    [
        (("confidence", "noise", *PORTFOLIO_FEATURES), "cannot give \\['noise'\\]"),
        (("confidence",), "does not end with"),
        (("confidence", *reversed(PORTFOLIO_FEATURES)), "does not end with"),
    ],
)
def test_names_the_engine_cannot_give_are_refused(names: tuple[str, ...], said: str) -> None:
    assert spec_mismatch(names) is not None
    with pytest.raises(DataError, match=said):
        build_observation(names, ENTRY, ACCOUNT)


def test_a_value_that_is_not_finite_is_refused_by_name() -> None:
    names = ("confidence", "realised_vol_pct", *PORTFOLIO_FEATURES)
    unmeasured = entry_features(confidence=0.7, regime_id=0, realised_vol_pct=math.nan)
    assert spec_mismatch(names) is None
    with pytest.raises(DataError, match="realised_vol_pct"):
        build_observation(names, unmeasured, ACCOUNT)
