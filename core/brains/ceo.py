"""The CEO Brain: the operating mode from the latest risk assessment, pure.

A higher risk score always means more danger. The mode the score asks for:

    score >= 75 (CRITICAL)  EMERGENCY
    score >= 50 (HIGH)      PRESERVATION
    score < 15, drawdown < 2 % and the strategies earn (profit factor >= 1.2 over >= 20
    trades)                 EXPANSION
    otherwise               OPTIMIZATION

Moving to a more defensive mode is immediate. Moving back is one step at a time, once the
current mode has been held for its minimum dwell and the score is below the threshold that
entered it by the hysteresis band (EMERGENCY is left below 65, PRESERVATION below 40); EXPANSION
is left as soon as the score reaches 25. Fail closed: no assessment, or one older than
``max_age_ms``, asks for PRESERVATION at least. An operator's manual mode wins until it expires.
The decision carries its reasons; ``alert`` is set on entering EMERGENCY.

``mode_levers`` says what each mode sets on the policy (the README's table).
"""

from __future__ import annotations

import math
from dataclasses import field
from decimal import Decimal

from core.domain.enums import Mode, TradingState
from core.domain.policy import PolicyLevers
from core.values import value_class

HOUR_MS = 3_600_000


# What each mode sets on the policy (the README's table).
MODE_SETTINGS: dict[Mode, PolicyLevers] = {
    Mode.EXPANSION: PolicyLevers(
        mode=Mode.EXPANSION,
        size_multiplier=Decimal("1.25"),
        stop_tighten=Decimal(1),
        state=TradingState.ACTIVE,
        extra_positions=1,
    ),
    Mode.OPTIMIZATION: PolicyLevers(
        mode=Mode.OPTIMIZATION,
        size_multiplier=Decimal(1),
        stop_tighten=Decimal(1),
        state=TradingState.ACTIVE,
    ),
    Mode.PRESERVATION: PolicyLevers(
        mode=Mode.PRESERVATION,
        size_multiplier=Decimal("0.5"),
        stop_tighten=Decimal("0.75"),
        state=TradingState.REDUCING,
    ),
    Mode.EMERGENCY: PolicyLevers(
        mode=Mode.EMERGENCY,
        size_multiplier=Decimal("0.25"),
        stop_tighten=Decimal("0.5"),
        state=TradingState.HALTED,
    ),
}


@value_class(frozen=True, slots=True, kw_only=True)
class CeoConfig:
    """Thresholds (risk score), the hysteresis band and the minimum dwell per mode."""

    emergency_at: float = 75.0
    preservation_at: float = 50.0
    expansion_below: float = 15.0
    expansion_leave_at: float = 25.0
    band: float = 10.0
    expansion_max_drawdown: float = 0.02
    expansion_min_trades: int = 20
    expansion_min_profit_factor: float = 1.2
    dwell_ms: dict[Mode, int] = field(
        default_factory=lambda: {
            Mode.EXPANSION: 24 * HOUR_MS,
            Mode.OPTIMIZATION: 24 * HOUR_MS,  # before EXPANSION
            Mode.PRESERVATION: 6 * HOUR_MS,
            Mode.EMERGENCY: 24 * HOUR_MS,
        }
    )
    max_age_ms: int = 3 * HOUR_MS  # an assessment older than this is stale

    def __post_init__(self) -> None:
        if not 0 <= self.expansion_below < self.expansion_leave_at <= self.preservation_at:
            raise ValueError("need 0 <= expansion_below < expansion_leave_at <= preservation_at")
        if not self.preservation_at < self.emergency_at <= 100:
            raise ValueError("need preservation_at < emergency_at <= 100")
        if not 0 <= self.band < self.preservation_at:
            raise ValueError(
                f"the hysteresis band must be in [0, preservation_at), was {self.band}"
            )
        if any(v < 0 for v in self.dwell_ms.values()) or self.max_age_ms <= 0:
            raise ValueError("dwell times must be >= 0 and max_age_ms > 0")


@value_class(frozen=True, slots=True, kw_only=True)
class ManualMode:
    """A mode an operator set; ``until_ms`` None: until set otherwise."""

    mode: Mode
    until_ms: int | None
    reason: str
    actor: str = "operator"

    def active(self, now_ms: int) -> bool:
        """Return True while the manual mode holds."""
        return self.until_ms is None or now_ms < self.until_ms


@value_class(frozen=True, slots=True, kw_only=True)
class CeoInput:
    """What the CEO looks at. ``score``/``assessed_ms`` None: no assessment was made."""

    now_ms: int
    mode: Mode  # the current mode
    mode_since_ms: int
    score: float | None
    assessed_ms: int | None = None
    drawdown: float = 0.0
    trades: int = 0  # closed trades in the strategy review's window
    profit_factor: float | None = None
    manual: ManualMode | None = None
    config: CeoConfig = field(default_factory=CeoConfig)


@value_class(frozen=True, slots=True, kw_only=True)
class CeoDecision:
    """The mode to run in, whether it changed, why, and whether to alert."""

    mode: Mode
    previous: Mode
    reasons: tuple[str, ...]
    manual: bool = False

    @property
    def changed(self) -> bool:
        """Return True when the mode changes."""
        return self.mode is not self.previous

    @property
    def alert(self) -> bool:
        """Return True on entering EMERGENCY."""
        return self.changed and self.mode is Mode.EMERGENCY


def mode_levers(mode: Mode) -> PolicyLevers:
    """Return what ``mode`` sets on the policy."""
    return MODE_SETTINGS[mode]


def _asked(inp: CeoInput, score: float) -> tuple[Mode, str]:
    cfg = inp.config
    if score >= cfg.emergency_at:
        return Mode.EMERGENCY, f"risk score {score:.0f} >= {cfg.emergency_at:.0f}"
    if score >= cfg.preservation_at:
        return Mode.PRESERVATION, f"risk score {score:.0f} >= {cfg.preservation_at:.0f}"
    earns = (
        inp.profit_factor is not None
        and inp.trades >= cfg.expansion_min_trades
        and inp.profit_factor >= cfg.expansion_min_profit_factor
    )
    # Hysteresis: EXPANSION is entered below expansion_below, kept below expansion_leave_at.
    below = cfg.expansion_leave_at if inp.mode is Mode.EXPANSION else cfg.expansion_below
    calm = score < below and inp.drawdown < cfg.expansion_max_drawdown
    if calm and earns:
        return Mode.EXPANSION, (
            f"risk score {score:.0f} < {below:.0f}, drawdown "
            f"{inp.drawdown:.1%}, profit factor {inp.profit_factor:.2f} over {inp.trades} trades"
        )
    return Mode.OPTIMIZATION, f"risk score {score:.0f}"


def _may_leave(inp: CeoInput, score: float) -> tuple[bool, str]:
    """Return whether the current mode may step toward a bolder one, and why not."""
    cfg = inp.config
    held = inp.now_ms - inp.mode_since_ms
    dwell = cfg.dwell_ms.get(inp.mode, 0)
    if held < dwell:
        return False, f"{inp.mode.value} held {held / HOUR_MS:.1f} h of its {dwell / HOUR_MS:.0f} h"
    leave_below = {
        Mode.EMERGENCY: cfg.emergency_at - cfg.band,
        Mode.PRESERVATION: cfg.preservation_at - cfg.band,
    }.get(inp.mode)
    if leave_below is not None and score >= leave_below:
        return False, f"risk score {score:.0f} not below {leave_below:.0f} (hysteresis)"
    return True, ""


def decide(inp: CeoInput) -> CeoDecision:
    """Return the mode to run in (see module docstring)."""
    if inp.manual is not None and inp.manual.active(inp.now_ms):
        until = "" if inp.manual.until_ms is None else f" until {inp.manual.until_ms}"
        return CeoDecision(
            mode=inp.manual.mode,
            previous=inp.mode,
            reasons=(f"manual mode by {inp.manual.actor}{until}: {inp.manual.reason}",),
            manual=True,
        )
    # A score that is not a number says nothing: fail closed as without one (NaN compares
    # false with every threshold, which would read as calm and step the mode down).
    stale = inp.score is None or inp.assessed_ms is None or not math.isfinite(inp.score)
    if not stale and inp.assessed_ms is not None:
        stale = inp.now_ms - inp.assessed_ms > inp.config.max_age_ms
    if stale or inp.score is None:
        why = (
            "no risk assessment"
            if inp.score is None
            else f"the risk score is {inp.score}"
            if not math.isfinite(inp.score)
            else "the risk assessment is stale"
        )
        floor = Mode.PRESERVATION
        mode = inp.mode if inp.mode.severity >= floor.severity else floor
        return CeoDecision(mode=mode, previous=inp.mode, reasons=(f"{why}: fail closed",))
    asked, why = _asked(inp, inp.score)
    if asked.severity > inp.mode.severity:
        return CeoDecision(mode=asked, previous=inp.mode, reasons=(why,))
    if asked.severity == inp.mode.severity:
        return CeoDecision(mode=inp.mode, previous=inp.mode, reasons=(why,))
    ok, wait = _may_leave(inp, inp.score)
    if not ok:
        return CeoDecision(mode=inp.mode, previous=inp.mode, reasons=(why, f"stays: {wait}"))
    step = {
        Mode.EMERGENCY: Mode.PRESERVATION,
        Mode.PRESERVATION: Mode.OPTIMIZATION,
        Mode.OPTIMIZATION: Mode.EXPANSION,
    }[inp.mode]
    return CeoDecision(mode=step, previous=inp.mode, reasons=(why, "one step at a time"))
