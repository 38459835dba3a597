"""The Exit Brain's first take-profit and stop as vectorised distances, for labelling.

The same arithmetic as ``core.brains.exits._scales``/``_distance``/``_stop_price``, in float64
over whole arrays: static percent or ATR targets, or in dynamic mode percent legs scaled by
volatility (ATR% over the reference ATR%) and confidence, ATR legs by confidence, the stop by
volatility (never by confidence) and capped at ``max_stop_pct``. Tick rounding is left out: it
moves a level by less than a tick. A test checks these against ``plan_exits``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.brains.exit_config import ExitConfig, Target, TargetKind

FloatArray = npt.NDArray[np.float64]


def _raw(target: Target, entry: FloatArray, atr: FloatArray, what: str) -> FloatArray:
    """Return the unscaled distance of ``target`` as a fraction of the entry."""
    if target.kind is TargetKind.PERCENT:
        return np.full_like(entry, float(target.value) / 100.0)
    if target.kind is TargetKind.ATR:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(atr * float(target.value) / entry, dtype=np.float64)
    raise ValueError(
        f"{what} is an absolute price ({target.value}): a label needs a distance from the entry"
    )


def first_barriers(
    exits: ExitConfig,
    entry: FloatArray,
    atr: FloatArray,
    confidence: float | FloatArray = 0.5,
) -> tuple[FloatArray, FloatArray]:
    """Return (TP1 distance, stop distance) per row as positive fractions of ``entry``.

    ``atr`` is in price units (NaN where unknown: those rows get NaN when a distance needs it).
    """
    dyn = exits.dynamic
    tp1 = exits.legs[0].target
    tp = _raw(tp1, entry, atr, "TP1")
    stop = _raw(exits.stop, entry, atr, "the stop")
    if not dyn.enabled:
        return tp, stop
    lo, hi = float(dyn.min_scale), float(dyn.max_scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        vol = np.clip(atr / entry * 100.0 / float(dyn.reference_atr_pct), lo, hi)
    conf = 1.0 + float(dyn.confidence_stretch) * (2.0 * np.asarray(confidence) - 1.0)
    tp = tp * np.clip(vol * conf if tp1.kind is TargetKind.PERCENT else conf, lo, hi)
    if dyn.scale_stop and exits.stop.kind is TargetKind.PERCENT:
        stop = stop * vol
    stop = np.minimum(stop, float(dyn.max_stop_pct) / 100.0)
    return np.asarray(tp, dtype=np.float64), np.asarray(stop, dtype=np.float64)
