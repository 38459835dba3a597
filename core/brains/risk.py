"""The Risk Brain: one portfolio assessment from a frozen input, pure (numpy/scipy).

What is at risk is the portfolio held *now*: each open position's signed weight (notional /
equity, shorts negative) times its symbol's recent returns gives the portfolio's return series
at the bot's horizon (one candle); its VaR and ES come from ``core.brains.risk_models`` by four
methods at 95 % and 99 %, at the horizon and daily (sums of non-overlapping days of candles
when 30 or more days are held, else the horizon's figures scaled by sqrt(candles per day),
noted). No position: nothing at risk, every VaR 0.

The score (0-100, higher is more danger, everywhere) is a weighted mean of components, each
0-100: daily VaR 99 % (the largest of the methods) and ES 99 % against their limits, the
drawdown against the last tier of the ladder, exposure and leverage against the policy, the
concentration (Herfindahl of the weights) and the mean correlation of same-direction
positions (both scaled by how full the exposure budget is), the tail score of the portfolio's
returns, and data and model health. Floors then hold it up whatever the mean says: each
drawdown tier (``DrawdownTier.floor``), a VaR above its limit (HIGH) or at twice it (CRITICAL),
stale data or a VaR that cannot be computed while positions are open (HIGH: fail closed).
Levels: LOW < 25 <= MODERATE < 50 <= HIGH < 75 <= CRITICAL.

Actions, enforced by the services (never just reported): the deepest drawdown tier reached sets
its size multiplier, pause or halt; entering a tier that closes part of the exposure asks for it
once (``previous_tier`` is the last assessment's tier); HIGH tightens stops, CRITICAL halts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from core.brains.risk_models import (
    MIN_RETURNS,
    TailStats,
    VarEstimate,
    tail_stats,
    var_suite,
)
from core.domain.enums import TradingState
from core.errors import DataError
from core.values import value_class

FloatArray = npt.NDArray[np.float64]
LEVELS = (0.95, 0.99)


class RiskLevel(StrEnum):
    """The assessment's level from its score."""

    LOW = "LOW"
    MODERATE = "MODERATE"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


def level_of(score: float) -> RiskLevel:
    """Return the level of a 0-100 score."""
    if score >= 75.0:
        return RiskLevel.CRITICAL
    if score >= 50.0:
        return RiskLevel.HIGH
    if score >= 25.0:
        return RiskLevel.MODERATE
    return RiskLevel.LOW


class MeasureKind(StrEnum):
    """What an action of the Risk Brain asks the process to do."""

    SCALE_SIZE = "scale_size"  # value: the size multiplier of new entries
    TIGHTEN_STOPS = "tighten_stops"  # value: the factor stop distances are multiplied by
    REDUCE_EXPOSURE = "reduce_exposure"  # value: the fraction of today's exposure to keep
    PAUSE = "pause"  # value: 1 REDUCING (no new exposure), 2 HALTED


@value_class(frozen=True, slots=True, kw_only=True)
class RiskMeasure:
    """One action with its reason."""

    kind: MeasureKind
    value: float
    reason: str


@value_class(frozen=True, slots=True, kw_only=True)
class DrawdownTier:
    """From ``drawdown`` (a fraction of the peak) on: scale new entries' size, pause entries,
    close a fraction of the exposure (once, on entering the tier) or halt. ``floor``: the
    least risk score while in the tier."""

    drawdown: float
    size_multiplier: float = 1.0
    pause: bool = False
    close_fraction: float = 0.0
    halt: bool = False
    floor: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.drawdown < 1.0:
            raise ValueError(f"a tier's drawdown must be in (0, 1), was {self.drawdown}")
        if not 0.0 < self.size_multiplier <= 1.0:
            raise ValueError(
                f"a tier's size multiplier must be in (0, 1], was {self.size_multiplier}"
            )
        if not 0.0 <= self.close_fraction <= 1.0:
            raise ValueError(
                f"a tier's close fraction must be in [0, 1], was {self.close_fraction}"
            )
        if not 0.0 <= self.floor <= 100.0:
            raise ValueError(f"a tier's score floor must be in [0, 100], was {self.floor}")


# The written policy of the system we replace: 5 % -> size x 0.75, 8 % -> no new entries,
# 12 % -> close half, 15 % -> halt.
DEFAULT_LADDER = (
    DrawdownTier(drawdown=0.05, size_multiplier=0.75, floor=25.0),
    DrawdownTier(drawdown=0.08, size_multiplier=0.75, pause=True, floor=50.0),
    DrawdownTier(drawdown=0.12, size_multiplier=0.75, pause=True, close_fraction=0.5, floor=62.5),
    DrawdownTier(drawdown=0.15, size_multiplier=0.75, pause=True, halt=True, floor=75.0),
)

WEIGHTS = {
    "var": 0.25,
    "es": 0.10,
    "drawdown": 0.25,
    "exposure": 0.15,
    "concentration": 0.05,
    "correlation": 0.05,
    "tail": 0.10,
    "health": 0.05,
}


@value_class(frozen=True, slots=True, kw_only=True)
class RiskConfig:
    """The Risk Brain's limits (fractions of equity) and ladder."""

    var_limit: float = 0.08  # daily VaR 99 % of the portfolio (a whole book of BTC: ~6 %)
    es_limit: float = 0.12  # daily ES 99 %
    ladder: tuple[DrawdownTier, ...] = DEFAULT_LADDER
    high_tighten: float = 0.75  # HIGH: stop distances x this
    critical_tighten: float = 0.5
    mc_paths: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.var_limit < 1.0 or not 0.0 < self.es_limit < 1.0:
            raise ValueError("var_limit and es_limit must be in (0, 1)")
        depths = [t.drawdown for t in self.ladder]
        if depths != sorted(set(depths)):
            raise ValueError(f"the drawdown tiers must be strictly increasing, were {depths}")
        for name in ("high_tighten", "critical_tighten"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], was {getattr(self, name)}")
        if self.mc_paths < 1_000:
            raise ValueError(f"mc_paths must be >= 1000, was {self.mc_paths}")


@value_class(frozen=True, slots=True, kw_only=True)
class PositionRisk:
    """One open position: its signed notional (shorts negative, quote) and its symbol's recent
    simple returns per candle, oldest first (aligned with the other positions' newest)."""

    symbol: str
    notional: float
    returns: FloatArray


@value_class(frozen=True, slots=True, kw_only=True)
class RiskFigures:
    """The VaR and ES of the positions at the horizon and daily, and their returns' tail;
    ``failed``: they could not be computed (the notes say why; the assessment fails closed)."""

    var_horizon: tuple[VarEstimate, ...] = ()
    var_daily: tuple[VarEstimate, ...] = ()
    tail: TailStats | None = None
    notes: tuple[str, ...] = ()
    failed: bool = False


@value_class(frozen=True, slots=True, kw_only=True)
class RiskInput:
    """Everything one assessment looks at."""

    equity: float  # open P&L included
    peak_equity: float  # the drawdown's reference (the service's rolling peak)
    positions: tuple[PositionRisk, ...] = ()
    periods_per_day: int = 24
    max_exposure_pct: float = 1.0  # the policy's total-exposure cap
    max_leverage: float = 1.0
    stale_data: tuple[str, ...] = ()  # symbols whose newest candle is late
    model_issues: tuple[str, ...] = ()  # members left out, models missing
    health_issues: tuple[str, ...] = ()  # the health monitor's bad checks (venue, database...)
    previous_tier: int = 0  # the tier of the last assessment (0: none)
    # The figures of these same positions computed lately (None: compute them now).
    figures: RiskFigures | None = None
    config: RiskConfig = field(default_factory=RiskConfig)


@value_class(frozen=True, slots=True, kw_only=True)
class RiskAssessment:
    """One assessment: the figures, the score and what must be done."""

    score: float
    level: RiskLevel
    components: tuple[tuple[str, float], ...]
    var_horizon: tuple[VarEstimate, ...]
    var_daily: tuple[VarEstimate, ...]
    tail: TailStats | None
    drawdown: float
    exposure_pct: float
    leverage: float
    concentration: float
    correlation: float
    tier: int
    measures: tuple[RiskMeasure, ...]
    notes: tuple[str, ...]
    figures: RiskFigures = field(default_factory=lambda: RiskFigures())

    @property
    def worst_daily_var(self) -> float:
        """Return the largest daily VaR 99 % of the methods (0 without positions)."""
        return max((v.var for v in self.var_daily if v.level == 0.99), default=0.0)

    @property
    def worst_daily_es(self) -> float:
        """Return the largest daily ES 99 % of the methods."""
        return max((v.es for v in self.var_daily if v.level == 0.99), default=0.0)

    def measure(self, kind: MeasureKind) -> RiskMeasure | None:
        """Return the action of ``kind`` if any."""
        return next((m for m in self.measures if m.kind is kind), None)

    @property
    def state(self) -> TradingState:
        """Return the trading state the actions ask for."""
        pause = self.measure(MeasureKind.PAUSE)
        if pause is None:
            return TradingState.ACTIVE
        return TradingState.HALTED if pause.value >= 2 else TradingState.REDUCING


def _estimates(returns: FloatArray, config: RiskConfig) -> tuple[VarEstimate, ...]:
    return var_suite(returns, LEVELS, paths=config.mc_paths, seed=config.seed)


def _daily(
    returns: FloatArray, horizon: tuple[VarEstimate, ...], per_day: int, config: RiskConfig
) -> tuple[tuple[VarEstimate, ...], str]:
    """Return the daily estimates and how they were made."""
    days = len(returns) // per_day
    if per_day == 1:
        return horizon, ""
    if days >= MIN_RETURNS:
        blocks = returns[len(returns) - days * per_day :].reshape(days, per_day).sum(axis=1)
        return _estimates(blocks, config), ""
    scale = math.sqrt(per_day)
    scaled = tuple(
        VarEstimate(method=v.method, level=v.level, var=v.var * scale, es=v.es * scale)
        for v in horizon
    )
    return scaled, f"daily VaR scaled by sqrt({per_day}) from the horizon: {days} days held"


def _portfolio_returns(inp: RiskInput) -> FloatArray:
    n = min(len(p.returns) for p in inp.positions)
    total = np.zeros(n, np.float64)
    for p in inp.positions:
        total += (p.notional / inp.equity) * np.asarray(p.returns, np.float64)[-n:]
    return total


def _correlation(inp: RiskInput) -> float:
    """Return the mean correlation of pairs of positions, sign-adjusted (a long and a short of
    correlated assets hedge: negative), floored at 0; 0 with fewer than two positions."""
    held = [p for p in inp.positions if len(p.returns) >= MIN_RETURNS]
    if len(held) < 2:
        return 0.0
    n = min(len(p.returns) for p in held)
    rows = np.vstack(
        [np.asarray(p.returns, np.float64)[-n:] * math.copysign(1.0, p.notional) for p in held]
    )
    if not np.isfinite(rows).all() or (rows.std(axis=1) == 0).any():
        return 0.0
    c = np.atleast_2d(np.corrcoef(rows))
    pairs = c[np.triu_indices(len(held), 1)]
    return max(0.0, float(pairs.mean()))


def portfolio_figures(inp: RiskInput) -> RiskFigures:
    """Return the VaR, ES and tail of the positions of ``inp`` (the assessment's costly part:
    a service may reuse them while the positions stay the same, ``RiskInput.figures``)."""
    if not inp.positions:
        return RiskFigures()
    if not math.isfinite(inp.equity) or inp.equity <= 0:
        return RiskFigures(failed=True, notes=(f"equity is {inp.equity}: no VaR",))
    try:
        r = _portfolio_returns(inp)
        horizon = _estimates(r, inp.config)
        daily, how = _daily(r, horizon, max(1, inp.periods_per_day), inp.config)
        return RiskFigures(
            var_horizon=horizon, var_daily=daily, tail=tail_stats(r), notes=(how,) if how else ()
        )
    except DataError as e:
        return RiskFigures(
            failed=True, notes=(f"no VaR of the open positions: {e} (fail closed: HIGH)",)
        )


def _tier(drawdown: float, ladder: Sequence[DrawdownTier]) -> int:
    return sum(1 for t in ladder if drawdown >= t.drawdown)


def _clip(x: float) -> float:
    return 100.0 * min(max(x, 0.0), 1.0)


def assess(inp: RiskInput) -> RiskAssessment:
    """Return the assessment of ``inp`` (see module docstring). Never raises on bad figures:
    they are noted and the assessment fails closed."""
    cfg = inp.config
    notes: list[str] = []
    floors: list[float] = []
    if not math.isfinite(inp.equity) or inp.equity <= 0:
        notes.append(f"equity is {inp.equity}: nothing can be risked (fail closed: CRITICAL)")
        return _closed_assessment(inp, notes)
    peak = max(inp.peak_equity, inp.equity) if math.isfinite(inp.peak_equity) else inp.equity
    drawdown = (peak - inp.equity) / peak  # not 1 - e/p: 9,200 of 10,000 is 8 % exactly
    gross = sum(abs(p.notional) for p in inp.positions)
    exposure_pct = gross / inp.equity
    net_weights = [p.notional / inp.equity for p in inp.positions]
    figures = inp.figures if inp.figures is not None else portfolio_figures(inp)
    horizon, daily, tail = figures.var_horizon, figures.var_daily, figures.tail
    notes.extend(figures.notes)
    if figures.failed:
        floors.append(50.0)
    worst_var = max((v.var for v in daily if v.level == 0.99), default=0.0)
    worst_es = max((v.es for v in daily if v.level == 0.99), default=0.0)
    weights_abs = [abs(w) for w in net_weights]
    hhi = sum((w / sum(weights_abs)) ** 2 for w in weights_abs) if gross > 0 else 0.0
    fullness = min(1.0, exposure_pct / inp.max_exposure_pct) if inp.max_exposure_pct > 0 else 1.0
    correlation = _correlation(inp)
    halt_depth = cfg.ladder[-1].drawdown if cfg.ladder else 0.15
    leverage = exposure_pct  # gross notional per unit of equity
    health = 100.0 if inp.stale_data else 50.0 if inp.model_issues or inp.health_issues else 0.0
    if inp.health_issues:
        notes.append(f"health: {'; '.join(inp.health_issues)[:300]}")
    components = {
        "var": _clip(worst_var / cfg.var_limit),
        "es": _clip(worst_es / cfg.es_limit),
        "drawdown": _clip(drawdown / halt_depth),
        "exposure": max(
            _clip(exposure_pct / inp.max_exposure_pct) if inp.max_exposure_pct > 0 else 100.0,
            _clip(leverage / inp.max_leverage) if inp.max_leverage > 0 else 100.0,
        ),
        "concentration": _clip(hhi * fullness) if len(inp.positions) > 1 else _clip(fullness),
        "correlation": _clip(correlation * fullness),
        "tail": tail.score if tail is not None else 0.0,
        "health": health,
    }
    score = sum(WEIGHTS[k] * v for k, v in components.items())
    tier = _tier(drawdown, cfg.ladder)
    if tier:
        floors.append(cfg.ladder[tier - 1].floor)
    if worst_var >= 2.0 * cfg.var_limit:
        floors.append(75.0)
        notes.append(
            f"daily VaR 99 % {worst_var:.2%} is at least twice its limit {cfg.var_limit:.2%}"
        )
    elif worst_var > cfg.var_limit:
        floors.append(50.0)
        notes.append(f"daily VaR 99 % {worst_var:.2%} is above its limit {cfg.var_limit:.2%}")
    if inp.stale_data:
        floors.append(50.0)
        notes.append(f"stale data: {', '.join(inp.stale_data)} (fail closed: HIGH)")
    score = min(100.0, max([score, *floors]))
    level = level_of(score)
    measures = _measures(inp, level, tier, worst_var, exposure_pct)
    return RiskAssessment(
        score=score,
        level=level,
        components=tuple(components.items()),
        var_horizon=horizon,
        var_daily=daily,
        tail=tail,
        drawdown=drawdown,
        exposure_pct=exposure_pct,
        leverage=leverage,
        concentration=hhi,
        correlation=correlation,
        tier=tier,
        measures=measures,
        notes=tuple(notes),
        figures=figures,
    )


def _measures(
    inp: RiskInput, level: RiskLevel, tier: int, worst_var: float, exposure_pct: float
) -> tuple[RiskMeasure, ...]:
    cfg = inp.config
    out: list[RiskMeasure] = []
    reached = cfg.ladder[tier - 1] if tier else None
    if reached is not None and reached.size_multiplier < 1.0:
        out.append(
            RiskMeasure(
                kind=MeasureKind.SCALE_SIZE,
                value=reached.size_multiplier,
                reason=f"drawdown tier {tier} (from {reached.drawdown:.0%})",
            )
        )
    tighten = {RiskLevel.HIGH: cfg.high_tighten, RiskLevel.CRITICAL: cfg.critical_tighten}
    if level in tighten and tighten[level] < 1.0:
        out.append(
            RiskMeasure(
                kind=MeasureKind.TIGHTEN_STOPS, value=tighten[level], reason=f"risk {level.value}"
            )
        )
    keep = 1.0
    why: list[str] = []
    # Entering a tier that closes part of the exposure asks once (not again every hour).
    for k in range(inp.previous_tier, tier):
        if cfg.ladder[k].close_fraction > 0:
            keep *= 1.0 - cfg.ladder[k].close_fraction
            why.append(f"drawdown tier {k + 1} closes {cfg.ladder[k].close_fraction:.0%}")
    if worst_var > cfg.var_limit and exposure_pct > 0:
        keep = min(keep, cfg.var_limit / worst_var)
        why.append(f"daily VaR 99 % {worst_var:.2%} over its limit {cfg.var_limit:.2%}")
    if keep < 1.0 and exposure_pct > 0:
        out.append(RiskMeasure(kind=MeasureKind.REDUCE_EXPOSURE, value=keep, reason="; ".join(why)))
    halt = level is RiskLevel.CRITICAL or (reached is not None and reached.halt)
    pause = halt or (reached is not None and reached.pause)
    if pause:
        reason = (
            f"risk {level.value}"
            if level is RiskLevel.CRITICAL
            else f"drawdown tier {tier} (from {reached.drawdown:.0%})"  # type: ignore[union-attr]
        )
        out.append(RiskMeasure(kind=MeasureKind.PAUSE, value=2.0 if halt else 1.0, reason=reason))
    return tuple(out)


def _closed_assessment(inp: RiskInput, notes: list[str]) -> RiskAssessment:
    """Return the assessment of an input nothing can be computed on: CRITICAL, halted."""
    return RiskAssessment(
        score=100.0,
        level=RiskLevel.CRITICAL,
        components=tuple((k, 100.0) for k in WEIGHTS),
        var_horizon=(),
        var_daily=(),
        tail=None,
        drawdown=1.0,
        exposure_pct=0.0,
        leverage=0.0,
        concentration=0.0,
        correlation=0.0,
        tier=len(inp.config.ladder),
        measures=(
            RiskMeasure(
                kind=MeasureKind.TIGHTEN_STOPS,
                value=inp.config.critical_tighten,
                reason="no equity",
            ),
            RiskMeasure(kind=MeasureKind.PAUSE, value=2.0, reason="no equity"),
        ),
        notes=tuple(notes),
    )
