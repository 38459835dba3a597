"""What a sizing agent sees of an entry, live and in training: one definition for both.

An observation is the candidate's own features followed by the account's
(``core.ml.rl.book.PORTFOLIO_FEATURES``), in the order of the policy's observation names
(``core.ml.rl.env.observation_names``). The engine can give these entry features, each
known at the decision (the signal of the candle just closed, candles up to it):

- ``confidence``: the signal's confidence;
- ``regime_id``: the symbol's regime (``core.brains.regime.Regime`` as its integer);
- ``realised_vol_pct``: the forecast daily volatility in percent
  (``core.brains.sizing.daily_vol_pct`` of the last candles' closes).

Candidates built for training must use these names (and compute them the same way), or the
engine cannot feed the policy and live sizing refuses it (``spec_mismatch``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from core.errors import DataError
from core.ml.rl.book import PORTFOLIO_FEATURES

ENTRY_FEATURES = ("confidence", "regime_id", "realised_vol_pct")


def entry_features(
    *, confidence: float, regime_id: int, realised_vol_pct: float
) -> dict[str, float]:
    """Return an entry's features by name (see module docstring)."""
    return {
        "confidence": float(confidence),
        "regime_id": float(regime_id),
        "realised_vol_pct": float(realised_vol_pct),
    }


def spec_mismatch(names: Sequence[str]) -> str | None:
    """Return why observations named ``names`` cannot be built live (None: they can)."""
    names = tuple(names)
    k = len(names) - len(PORTFOLIO_FEATURES)
    if k < 0 or names[k:] != PORTFOLIO_FEATURES:
        return f"the observation does not end with the account's features {PORTFOLIO_FEATURES}"
    unknown = [n for n in names[:k] if n not in ENTRY_FEATURES]
    if unknown:
        return f"the engine cannot give {unknown} (it gives {list(ENTRY_FEATURES)})"
    return None


def build_observation(
    names: Sequence[str], entry: Mapping[str, float], account: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Return the observation named ``names`` from an entry's features and the account's
    (``SizingAccount.features``); a name the engine cannot give or a value that is not
    finite is a ``DataError``: an agent is never fed a guess."""
    why = spec_mismatch(names)
    if why is not None:
        raise DataError(why)
    head = [entry[n] for n in names[: len(names) - len(PORTFOLIO_FEATURES)]]
    values = [*head, *(float(v) for v in account)]
    bad = [n for n, v in zip(names, values, strict=True) if not math.isfinite(v)]
    if bad:
        raise DataError(f"observation values not finite: {bad}")
    return np.asarray(values, dtype=np.float32)
