"""The Strategy Brain's input: the review's thresholds, the members' records, the choices in
force, and the one frozen input with its checks (bad input is one ``DataError`` naming it)."""

from __future__ import annotations

import math
from dataclasses import field

from core.brains.strategy_stats import Prediction
from core.domain.trades import ClosedTrade
from core.errors import DataError
from core.values import value_class

DAY_MS = 86_400_000


@value_class(frozen=True, slots=True, kw_only=True)
class StrategyReviewConfig:
    """Thresholds of the review (see the module docstring)."""

    window_ms: int = 30 * DAY_MS  # 0: every trade and prediction given
    min_trades: int = 20
    regime_min_trades: int = 10
    disable_profit_factor: float = 0.8
    disable_min_trades: int = 30
    enable_profit_factor: float = 1.0
    primary_margin: float = 0.1  # per-trade Sharpe a challenger must lead by
    regime_margin_pct: float = 0.1  # mean return per trade, percent
    min_predictions: int = 50
    min_weight: float = 0.05
    max_weight: float = 0.6
    hysteresis: float = 0.05
    temperature: float = 0.05  # the ensemble's: log-loss differences are small

    def __post_init__(self) -> None:
        counts = ("min_trades", "regime_min_trades", "disable_min_trades", "min_predictions")
        for name in counts:
            if getattr(self, name) < 2:
                raise ValueError(f"strategy review {name} must be >= 2, was {getattr(self, name)}")
        if self.window_ms < 0:
            raise ValueError(f"strategy review window_ms must be >= 0, was {self.window_ms}")
        if not 0.0 <= self.min_weight <= self.max_weight <= 1.0:
            raise ValueError(
                "strategy review weights need 0 <= min_weight <= max_weight <= 1, were "
                f"{self.min_weight}, {self.max_weight}"
            )
        if not 0.0 <= self.disable_profit_factor <= self.enable_profit_factor:
            raise ValueError(
                "strategy review needs 0 <= disable_profit_factor <= enable_profit_factor, were "
                f"{self.disable_profit_factor}, {self.enable_profit_factor}"
            )
        for name in ("hysteresis", "primary_margin", "regime_margin_pct"):
            if not 0.0 <= getattr(self, name) < math.inf:
                raise ValueError(f"strategy review {name} must be >= 0, was {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"strategy review temperature must be > 0, was {self.temperature}")


@value_class(frozen=True, slots=True, kw_only=True)
class MemberOutcome:
    """One member's out-of-sample prediction on a symbol's candle (open time ``ts_ms``) and
    its resolved label: what a running ensemble hands the review."""

    symbol: str
    ts_ms: int
    p_up: float
    up: bool
    regime: str = ""  # the candle's regime label, when known


@value_class(frozen=True, slots=True, kw_only=True)
class MemberRecord:
    """One model member's resolved predictions and when it was last retrained."""

    member: str
    predictions: tuple[Prediction, ...]
    last_retrain_ms: int | None = None


@value_class(frozen=True, slots=True, kw_only=True)
class StrategyState:
    """The choices in force (from the policy snapshot); the review moves from them."""

    primary: str | None = None
    fallback: str | None = None
    disabled: tuple[str, ...] = ()
    regime_providers: tuple[tuple[str, str], ...] = ()  # (regime, provider)
    weights: tuple[tuple[str, float], ...] = ()  # (member, weight)


@value_class(frozen=True, slots=True, kw_only=True)
class StrategyReviewInput:
    """Everything the review looks at. ``providers``: every provider that can be chosen
    (those without a trade in the window are reviewed too); every trade needs its provider."""

    as_of_ms: int
    trades: tuple[ClosedTrade, ...]
    members: tuple[MemberRecord, ...] = ()
    providers: tuple[str, ...] = ()
    current: StrategyState = field(default_factory=StrategyState)
    config: StrategyReviewConfig = field(default_factory=StrategyReviewConfig)
    # The trades are complete from this time on (a process knows those it closed since it
    # started); None: complete.
    record_from_ms: int | None = None

    @property
    def covers_window(self) -> bool:
        """Return whether the trades given are complete over the whole review window."""
        if self.record_from_ms is None:
            return True
        start = self.window_start_ms
        return start is not None and self.record_from_ms <= start

    def __post_init__(self) -> None:
        for t in self.trades:
            _check_trade(t, self.as_of_ms)
        names = [m.member for m in self.members]
        if len(set(names)) != len(names):
            raise DataError(f"strategy review: member names must be distinct, were {names}")
        for m in self.members:
            for p in m.predictions:
                _check_prediction(m.member, p, self.as_of_ms)
        for member, w in self.current.weights:
            if not (math.isfinite(w) and w >= 0):
                raise DataError(f"strategy review: current weight of {member} was {w}")

    @property
    def window_start_ms(self) -> int | None:
        """Return the exclusive start of the review window (None: no start)."""
        return self.as_of_ms - self.config.window_ms if self.config.window_ms else None


def _check_trade(t: ClosedTrade, as_of_ms: int) -> None:
    if not t.pnl.is_finite() or not math.isfinite(t.pnl_pct):
        raise DataError(
            f"strategy review: trade {t.trade_id} has pnl {t.pnl} and return {t.pnl_pct}; "
            "both must be finite"
        )
    if not t.provider:
        raise DataError(f"strategy review: trade {t.trade_id} has no provider")
    if not t.opened_ms <= t.closed_ms <= as_of_ms:
        raise DataError(
            f"strategy review: trade {t.trade_id} opened at {t.opened_ms} and closed at "
            f"{t.closed_ms}; it must close after it opens and by the review time {as_of_ms}"
        )


def _check_prediction(member: str, p: Prediction, as_of_ms: int) -> None:
    if not (math.isfinite(p.p_up) and 0.0 <= p.p_up <= 1.0):
        raise DataError(f"strategy review: {member} P(up) at {p.ts_ms} was {p.p_up}, not in [0, 1]")
    if p.ts_ms > as_of_ms:
        raise DataError(
            f"strategy review: {member} prediction at {p.ts_ms} is after the review time {as_of_ms}"
        )
    if p.traded and not (
        p.pnl is not None and math.isfinite(p.pnl) and p.ret is not None and math.isfinite(p.ret)
    ):
        raise DataError(
            f"strategy review: {member} traded prediction at {p.ts_ms} has pnl {p.pnl} and "
            f"return {p.ret}; both must be finite"
        )
