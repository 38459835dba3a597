"""May the RL policy size live trades? Only when it beat the best simple sizer out of sample.

The walk-forward comparison (``bot.sizing_comparison``) sizes the same out-of-sample
candidates by every method. The best simple method is the one with the highest daily Sharpe
(a flat curve counts as 0; ties go to the simpler, in ``SIMPLE_METHODS`` order: fixed first).
The policy passes when all three hold:

1. the shuffled-reward control did not beat fixed sizing beyond noise (if it did, the
   comparison itself is suspect: an agent that learned nothing would pass too);
2. its PSR against the best simple method's daily Sharpe is above ``BEYOND_NOISE`` (0.95):
   its true Sharpe is above that estimate with 95 % probability (``None``, under
   ``MIN_TRADES_TO_JUDGE`` trades, fails);
3. its annualised Sharpe is above the best simple method's by at least ``margin``.

Otherwise the best simple method sizes, and the verdict says why. The verdict travels with
the policy's artifact (``core.ml.rl.policy``), so live sizing reads it where it loads the
weights: a policy without a passed verdict never sizes a live trade.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import DataError
from core.ml.rl.scorecard import BEYOND_NOISE, SIMPLE_METHODS, MethodScore

RL = "rl"
# QT__SIZING__METHOD of each simple method a comparison names
LIVE_METHOD = {"fixed": "fixed", "vol_target": "volatility", "kelly": "kelly"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingGate:
    """The verdict on an RL policy (see module)."""

    passed: bool
    best_simple: str  # the simple method that sizes when the policy does not
    reason: str
    psr: float | None  # P(the policy's true Sharpe > the best simple method's estimate)
    sharpe_gain: float | None  # its annualised Sharpe minus the best simple method's
    margin: float

    def to_json(self) -> dict[str, Any]:
        """Return the verdict as JSON values."""
        return {
            "passed": self.passed,
            "best_simple": self.best_simple,
            "reason": self.reason,
            "psr": self.psr,
            "sharpe_gain": self.sharpe_gain,
            "margin": self.margin,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SizingGate:
        """Return the verdict ``to_json`` wrote; anything else is a ``DataError``, and so is
        a pass its own figures contradict (no PSR beyond noise or no gain of its margin)."""
        try:
            passed, best, reason = doc["passed"], doc["best_simple"], doc["reason"]
            psr, gain, margin = doc["psr"], doc["sharpe_gain"], doc["margin"]
        except (KeyError, TypeError) as exc:
            raise DataError(f"a sizing gate is malformed: {exc!r} missing") from exc
        if (
            not isinstance(passed, bool)
            or best not in SIMPLE_METHODS
            or not isinstance(reason, str)
        ):
            raise DataError(f"a sizing gate's passed/best_simple/reason are not usable: {doc!r}")
        numbers = {"psr": psr, "sharpe_gain": gain}
        for name, value in {**numbers, "margin": margin}.items():
            if value is None and name != "margin":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DataError(f"a sizing gate's {name} must be a number, was {value!r}")
            if not math.isfinite(value):
                raise DataError(f"a sizing gate's {name} must be finite, was {value!r}")
        if not margin >= 0 or (psr is not None and not 0 <= psr <= 1):
            raise DataError(f"a sizing gate's margin < 0 or psr outside [0, 1]: {doc!r}")
        if passed and (psr is None or not psr > BEYOND_NOISE or gain is None or not gain >= margin):
            raise DataError(f"a sizing gate says passed but its figures do not: {doc!r}")
        return cls(
            passed=passed,
            best_simple=best,
            reason=reason,
            psr=None if psr is None else float(psr),
            sharpe_gain=None if gain is None else float(gain),
            margin=float(margin),
        )


def best_simple(scores: Sequence[MethodScore]) -> str:
    """Return the simple method with the highest annualised Sharpe (flat: 0; ties: the
    simpler)."""
    by_name = {s.method: s for s in scores}
    missing = [m for m in SIMPLE_METHODS if m not in by_name]
    if missing:
        raise DataError(f"the simple methods {missing} were not scored")
    return max(SIMPLE_METHODS, key=lambda m: (_sharpe(by_name[m]), -SIMPLE_METHODS.index(m)))


def sizing_gate(
    vs_best: Sequence[MethodScore],
    best: str,
    *,
    control_beat_fixed: bool,
    margin: float,
) -> SizingGate:
    """Judge the policy (``vs_best``: the scores with ``best`` as the PSR's baseline; see
    module)."""
    if not (math.isfinite(margin) and margin >= 0):
        raise DataError(f"the sizing gate's margin must be finite and >= 0, was {margin}")
    by_name = {s.method: s for s in vs_best}
    if RL not in by_name or best not in by_name:
        raise DataError(f"the gate needs the scores of {RL!r} and {best!r}")
    rl, simple = by_name[RL], by_name[best]
    # A figure that is not finite is no evidence (NaN compares false with every threshold)
    gain = None if not _finite(rl.sharpe) else _sharpe(rl) - _sharpe(simple)
    gain = gain if _finite(gain) else None
    psr = rl.above_baseline if _finite(rl.above_baseline) else None
    if control_beat_fixed:
        why = "the shuffled-reward control beat fixed sizing too: the comparison is not trusted"
    elif psr is None:
        why = f"too few trades or a flat curve to test it against {best}"
    elif not psr > BEYOND_NOISE:
        why = f"not beyond noise: PSR {psr:.3f} against {best}'s Sharpe <= {BEYOND_NOISE}"
    elif gain is None or not gain >= margin:
        why = f"Sharpe gain over {best} {_fmt(gain)} < the margin {margin:g}"
    else:
        why = ""
    passed = not why
    reason = (
        f"beat {best}: PSR {psr:.3f}, Sharpe +{gain:.2f}"
        if passed and psr is not None and gain is not None
        else f"{best} sizes: {why}"
    )
    return SizingGate(
        passed=passed, best_simple=best, reason=reason, psr=psr, sharpe_gain=gain, margin=margin
    )


def _sharpe(score: MethodScore) -> float:
    """The annualised Sharpe, 0 for a flat curve (None) or one not measurable (NaN)."""
    return 0.0 if score.sharpe is None or math.isnan(score.sharpe) else score.sharpe


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:+.2f}"
