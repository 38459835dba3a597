"""Exit brain configuration: the take-profit ladder, the stop and the scaling settings.

Frozen values validated on construction with ValueError messages that name the field and the value
received. Targets are positive magnitudes; the position side decides their direction (see
``core.brains.exits``). Defaults are the ladder of the system we replace: TP1 +1.95 % for 30 %,
TP2 +3.25 % for 30 %, TP3 +5.20 % for 40 %, stop −2 % for the whole position.
"""

from __future__ import annotations

from dataclasses import field
from decimal import Decimal
from enum import StrEnum

from core.values import value_class

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)


def require_decimal(what: str, value: object) -> None:
    """Raise ValueError unless ``value`` is a finite Decimal (floats would break exact sums)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{what} must be a finite Decimal, was {type(value).__name__} {value!r}")


def _to_decimal(what: str, value: Decimal | float | int | str) -> Decimal:
    if isinstance(value, float):
        raise ValueError(f"{what} must be exact (Decimal, int or str), was float {value!r}")
    try:
        result = Decimal(value)
    except ArithmeticError as exc:  # decimal.InvalidOperation
        raise ValueError(f"{what} must be a number, was {value!r}") from exc
    require_decimal(what, result)
    return result


class TargetKind(StrEnum):
    """How a target is expressed."""

    PRICE = "price"
    PERCENT = "percent"
    ATR = "atr"


@value_class(frozen=True, slots=True, kw_only=True)
class Target:
    """An absolute price, a percent move from entry (``1.95`` = 1.95 %) or a multiple of ATR."""

    kind: TargetKind
    value: Decimal

    def __post_init__(self) -> None:
        require_decimal(f"{self.kind} target", self.value)
        if self.value <= ZERO:
            raise ValueError(
                f"{self.kind} target must be > 0 (distances are magnitudes; the side sets the "
                f"direction), was {self.value}"
            )

    @classmethod
    def pct(cls, value: Decimal | int | str) -> Target:
        """Return a target ``value`` percent away from the entry."""
        return cls(kind=TargetKind.PERCENT, value=_to_decimal("percent target", value))

    @classmethod
    def atr(cls, value: Decimal | int | str) -> Target:
        """Return a target ``value`` ATRs away from the entry."""
        return cls(kind=TargetKind.ATR, value=_to_decimal("ATR target", value))

    @classmethod
    def price(cls, value: Decimal | int | str) -> Target:
        """Return a target at the absolute price ``value``."""
        return cls(kind=TargetKind.PRICE, value=_to_decimal("price target", value))


class StopAnchor(StrEnum):
    """Where the stop moves once a leg is completely filled."""

    NONE = "none"
    BREAK_EVEN = "break_even"
    PREVIOUS_LEG = "previous_leg"


@value_class(frozen=True, slots=True, kw_only=True)
class LegSpec:
    """One take-profit leg: where, what fraction of the position, and where the stop goes after."""

    target: Target
    fraction: Decimal
    move_stop_to: StopAnchor = StopAnchor.NONE

    def __post_init__(self) -> None:
        require_decimal("leg fraction", self.fraction)
        if not ZERO < self.fraction <= ONE:
            raise ValueError(f"leg fraction must be in (0, 1], was {self.fraction}")


@value_class(frozen=True, slots=True, kw_only=True)
class BreakEvenConfig:
    """Break-even stop: the entry moved ``fee_buffer_pct`` percent to the profit side (fees)."""

    enabled: bool = True
    fee_buffer_pct: Decimal = Decimal("0.2")

    def __post_init__(self) -> None:
        require_decimal("break_even.fee_buffer_pct", self.fee_buffer_pct)
        if self.fee_buffer_pct < ZERO:
            raise ValueError(f"break_even.fee_buffer_pct must be >= 0, was {self.fee_buffer_pct}")


@value_class(frozen=True, slots=True, kw_only=True)
class DynamicConfig:
    """Volatility and confidence scaling of the ladder; disabled means the static ladder exactly.

    Volatility scale: ``clamp((atr / entry) / reference_atr_pct)``, for percent legs (and a percent
    stop when ``scale_stop``). ``confidence_stretch`` s maps confidence c in [0, 1] to
    ``1 + s·(2c − 1)`` (0.5 is neutral), for percent and ATR legs. Every multiplier is clamped to
    ``[min_scale, max_scale]``; in dynamic mode every stop is capped at ``max_stop_pct`` of entry.
    """

    enabled: bool = False
    reference_atr_pct: Decimal = Decimal("1.5")
    min_scale: Decimal = Decimal("0.5")
    max_scale: Decimal = Decimal("2")
    confidence_stretch: Decimal = Decimal("0.25")
    scale_stop: bool = True
    max_stop_pct: Decimal = Decimal("4")

    def __post_init__(self) -> None:
        for name in ("reference_atr_pct", "min_scale", "max_scale", "confidence_stretch"):
            require_decimal(f"dynamic.{name}", getattr(self, name))
        require_decimal("dynamic.max_stop_pct", self.max_stop_pct)
        if self.reference_atr_pct <= ZERO:
            raise ValueError(f"dynamic.reference_atr_pct must be > 0, was {self.reference_atr_pct}")
        if not ZERO < self.min_scale <= ONE <= self.max_scale:
            raise ValueError(
                "dynamic scales need 0 < min_scale <= 1 <= max_scale, "
                f"was min_scale={self.min_scale} max_scale={self.max_scale}"
            )
        if not ZERO <= self.confidence_stretch < ONE:
            raise ValueError(
                f"dynamic.confidence_stretch must be in [0, 1), was {self.confidence_stretch}"
            )
        if not ZERO < self.max_stop_pct < HUNDRED:
            raise ValueError(f"dynamic.max_stop_pct must be in (0, 100), was {self.max_stop_pct}")


@value_class(frozen=True, slots=True, kw_only=True)
class TrailingConfig:
    """ATR trailing stop for what remains after the last filled take-profit (0 = off).

    The stop follows the best price seen since the entry (high for a long, low for a short) at
    ``best - atr_multiple * f * ATR``, ``f = max(min_factor, 1 - profit_r * step_per_r)`` with
    ``profit_r`` the best move in units of the initial stop distance: the trail tightens as the
    profit grows. It starts once ``after_tp`` take-profit legs are completely filled (0: all
    but the last, so the ladder's final leg still caps the runner while it trails).
    """

    atr_multiple: Decimal = ZERO
    min_factor: Decimal = Decimal("0.5")
    step_per_r: Decimal = Decimal("0.1")
    after_tp: int = 0

    def __post_init__(self) -> None:
        for name in ("atr_multiple", "min_factor", "step_per_r"):
            require_decimal(f"trailing.{name}", getattr(self, name))
        if self.atr_multiple < ZERO:
            raise ValueError(f"trailing.atr_multiple must be >= 0, was {self.atr_multiple}")
        if not ZERO < self.min_factor <= ONE:
            raise ValueError(f"trailing.min_factor must be in (0, 1], was {self.min_factor}")
        if self.step_per_r < ZERO:
            raise ValueError(f"trailing.step_per_r must be >= 0, was {self.step_per_r}")
        if self.after_tp < 0:
            raise ValueError(f"trailing.after_tp must be >= 0, was {self.after_tp}")

    @property
    def enabled(self) -> bool:
        """Return True when the trailing stop is on."""
        return self.atr_multiple > ZERO


@value_class(frozen=True, slots=True, kw_only=True)
class ProfitLockConfig:
    """Once the best price was ``trigger_pct`` % in favour, the stop locks ``lock_pct`` % of
    profit (0 = off)."""

    trigger_pct: Decimal = ZERO
    lock_pct: Decimal = ZERO

    def __post_init__(self) -> None:
        require_decimal("profit_lock.trigger_pct", self.trigger_pct)
        require_decimal("profit_lock.lock_pct", self.lock_pct)
        if self.trigger_pct < ZERO or self.lock_pct < ZERO:
            raise ValueError(
                "profit_lock percents must be >= 0, "
                f"was trigger_pct={self.trigger_pct} lock_pct={self.lock_pct}"
            )
        if self.trigger_pct > ZERO and self.lock_pct >= self.trigger_pct:
            raise ValueError(
                f"profit_lock.lock_pct ({self.lock_pct}) must be below its trigger_pct "
                f"({self.trigger_pct}): the stop would sit at or beyond the price"
            )

    @property
    def enabled(self) -> bool:
        """Return True when the profit lock is on."""
        return self.trigger_pct > ZERO


DEFAULT_LEGS: tuple[LegSpec, ...] = (
    LegSpec(target=Target.pct("1.95"), fraction=Decimal("0.3"), move_stop_to=StopAnchor.BREAK_EVEN),
    LegSpec(
        target=Target.pct("3.25"), fraction=Decimal("0.3"), move_stop_to=StopAnchor.PREVIOUS_LEG
    ),
    LegSpec(target=Target.pct("5.20"), fraction=Decimal("0.4")),
)


@value_class(frozen=True, slots=True, kw_only=True)
class ExitConfig:
    """The ladder (``legs``, named TP1, TP2, …), the stop, dynamic and break-even settings,
    and the candle-close moves: maximum holding time, trailing stop, profit lock."""

    legs: tuple[LegSpec, ...] = DEFAULT_LEGS
    stop: Target = field(default_factory=lambda: Target.pct(2))
    dynamic: DynamicConfig = field(default_factory=DynamicConfig)
    break_even: BreakEvenConfig = field(default_factory=BreakEvenConfig)
    # Stop moves on candle closes (core.brains.exit_moves); all off by default.
    max_hold_hours: Decimal = ZERO  # exit at market once held this long (0 = off)
    trailing: TrailingConfig = field(default_factory=TrailingConfig)
    profit_lock: ProfitLockConfig = field(default_factory=ProfitLockConfig)

    def __post_init__(self) -> None:
        require_decimal("max_hold_hours", self.max_hold_hours)
        if self.max_hold_hours < ZERO:
            raise ValueError(f"max_hold_hours must be >= 0, was {self.max_hold_hours}")
        if not self.legs:
            raise ValueError("exit config needs at least one take-profit leg, was none")
        total = sum((leg.fraction for leg in self.legs), ZERO)
        if total != ONE:
            raise ValueError(f"leg fractions must sum to exactly 1, was {total}")
        if self.legs[0].move_stop_to is StopAnchor.PREVIOUS_LEG:
            raise ValueError("TP1 cannot move the stop to the previous leg: it has none")
        # Same-kind distances must grow; price legs and mixed kinds are checked against the entry
        # when the plan is made.
        last: dict[TargetKind, tuple[int, Decimal]] = {}
        for i, leg in enumerate(self.legs, start=1):
            kind, value = leg.target.kind, leg.target.value
            if kind is not TargetKind.PRICE and kind in last and value <= last[kind][1]:
                prev_i, prev_v = last[kind]
                raise ValueError(
                    f"targets must be strictly increasing away from entry: TP{i} {kind} {value} "
                    f"is not beyond TP{prev_i} {prev_v}"
                )
            last[kind] = (i, value)
