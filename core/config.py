"""Settings: one pydantic-settings model, read from ``QT__SECTION__KEY`` variables and ``.env``.

Unknown keys are rejected (a typo must not silently fall back to a default), secrets are
``SecretStr`` and cross-field rules are checked once at start-up with messages that name the
variable to set. Components receive their own section, never the whole ``Settings``.
"""

from __future__ import annotations

import math
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from core.domain.enums import MarketType, TradingMode
from core.domain.margin import DEFAULT_TIERS, MarginConfig, MarginMode, MarginTier
from core.domain.market import timeframe_to_ms
from core.domain.market_rules import (
    COARSEST_STEP,
    FINEST_STEP,
    LARGEST_MINIMUM,
    MarketRules,
)
from core.errors import ConfigError
from core.market.universe import UniverseRules
from core.redaction import REDACTED, URL_FIELD, masked_url

ENV_PREFIX = "QT__"
ENV_DELIMITER = "__"
ENV_FILE_ENCODING = "utf-8-sig"  # UTF-8, with or without the BOM some editors write


class Section(BaseModel):
    """Base of every settings section: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class AppSettings(Section):
    """Where things live and how much is logged."""

    data_dir: Path = Path("user_data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # our own packages
    # Libraries (aiosqlite, ccxt, asyncio, ...): their DEBUG lines drown ours, so only if asked.
    third_party_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"


class DatabaseSettings(Section):
    """Database URL; empty means SQLite at ``<data_dir>/quantum_trader.sqlite`` (paper) or
    ``<data_dir>/quantum_trader_live.sqlite`` (live). A ``SecretStr``: a URL may carry a
    password (``scheme://user:password@host/...``), which is masked wherever the URL is shown
    (``core.redaction``: logs, errors, the audit trail, ``qt config show``)."""

    url: SecretStr = SecretStr("")


class ExchangeSettings(Section):
    """The venue, reached through ccxt."""

    name: str = "binance"
    market_type: MarketType = MarketType.SPOT
    api_key: SecretStr = SecretStr("")
    api_secret: SecretStr = SecretStr("")
    sandbox: bool = False
    timeout_ms: int = Field(default=10_000, gt=0)


class TradingSettings(Section):
    """What we trade and whether orders are real."""

    mode: TradingMode = TradingMode.PAPER
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT", "ETH/USDT"])
    timeframe: str = "1h"
    quote_currency: str = "USDT"
    max_leverage: int = Field(default=1, ge=1, le=125)
    # Live trading needs this exact phrase too, so a copied .env cannot go live by accident.
    live_confirmation: str = ""
    # A position at the venue the bot did not open (or larger than the bot's trade in it),
    # found at start: reduce (trading goes REDUCING with a critical alert until resumed), warn
    # (an alert only) or adopt (taken over as the bot's own trade with a stop at the venue;
    # reduce when the stop cannot be placed, the bot trades that symbol already, or the
    # process does not trade the symbol: core.services.reconciliation)
    unknown_positions: Literal["reduce", "warn", "adopt"] = "reduce"

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        timeframe_to_ms(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> TradingSettings:
        if not self.symbols:
            raise ValueError("trading.symbols must name at least one symbol")
        for sym in self.symbols:
            if "/" not in sym:
                raise ValueError(f"symbol {sym!r} is not of the form BASE/QUOTE (e.g. BTC/USDT)")
        # The account's cash is the quote currency: it cannot buy a coin quoted in another one,
        # so every entry would be refused (a backtest with 0 trades and no word why).
        other = [s for s in self.symbols if _quote_of(s) != self.quote_currency]
        if other:
            raise ValueError(
                f"QT__TRADING__QUOTE_CURRENCY={self.quote_currency} is not the quote currency "
                f"of {', '.join(other)}: trade symbols quoted in {self.quote_currency} "
                "or set the quote currency they share"
            )
        return self


def _quote_of(symbol: str) -> str:
    """Return the quote of ``BASE/QUOTE`` or a perp's ``BASE/QUOTE:SETTLE``."""
    return symbol.split("/", 1)[1].split(":", 1)[0]


class PaperSettings(Section):
    """The paper exchange: starting balance, fees and slippage."""

    starting_balance: Decimal = Field(default=Decimal(10_000), gt=0)
    maker_fee: Decimal = Field(default=Decimal("0.001"), ge=0, lt=Decimal("0.05"))
    taker_fee: Decimal = Field(default=Decimal("0.001"), ge=0, lt=Decimal("0.05"))
    slippage_bps: Decimal = Field(default=Decimal(2), ge=0, le=500)


class RiskSettings(Section):
    """Sizing and pre-trade limits (the static policy until the policy store takes over)."""

    risk_per_trade: Decimal = Field(default=Decimal("0.01"), gt=0, le=Decimal("0.2"))
    max_position_pct: Decimal = Field(default=Decimal("0.5"), gt=0, le=10)
    max_position_notional: Decimal = Field(default=Decimal(1_000_000), gt=0)
    max_open_positions: int = Field(default=2, ge=1, le=100)
    max_total_exposure_pct: Decimal = Field(default=Decimal("1.0"), gt=0, le=50)
    allow_short: bool = False
    # Volatility targeting: an entry's risk x (target / the symbol's forecast daily volatility),
    # within [min, max]; 0: off.
    vol_target_pct: Decimal = Field(default=Decimal(0), ge=0, le=50)
    vol_scale_min: Decimal = Field(default=Decimal("0.5"), gt=0, le=1)
    vol_scale_max: Decimal = Field(default=Decimal("1.5"), ge=1, le=5)
    # --- pre-trade limits (README: Pre-trade limits); 0 turns a limit off -------------------
    daily_loss_limit_pct: Decimal = Field(default=Decimal("0.05"), ge=0, lt=1)
    loss_streak_limit: int = Field(default=3, ge=0, le=1000)
    loss_streak_cooldown_s: int = Field(default=6 * 3600, ge=0)
    max_entries_per_hour: int = Field(default=4, ge=0, le=10_000)
    symbol_cooldown_s: int = Field(default=3600, ge=0)
    max_correlation: float = Field(default=0.8, ge=-1, le=1)  # 1 = off
    max_funding_rate: Decimal = Field(default=Decimal("0.001"), ge=0, lt=1)  # perps, per 8 h
    funding_unknown_denies: bool = False
    min_liquidation_buffer_pct: Decimal = Field(default=Decimal("0.005"), ge=0, lt=1)


# Regime labels (core.brains.regime.Regime.label) and the two groups a profile may name: a
# label's own profile wins over its group's.
EXIT_PROFILE_NAMES = (
    "trend_low_vol",
    "trend_high_vol",
    "range_low_vol",
    "range_high_vol",
    "trend",
    "range",
)


class ExitProfileSettings(Section):
    """One regime's ladder; a field left out keeps the seed ladder's (QT__EXITS__*)."""

    tp_pcts: list[Decimal] | None = None
    tp_fractions: list[Decimal] | None = None
    stop_pct: Decimal | None = Field(default=None, gt=0, lt=100)
    break_even_after_tp1: bool | None = None


class ExitSettings(Section):
    """The Exit Brain's take-profit ladder and stop (percent moves from the entry)."""

    tp_pcts: list[Decimal] = Field(
        default_factory=lambda: [Decimal("1.95"), Decimal("3.25"), Decimal("5.20")]
    )
    tp_fractions: list[Decimal] = Field(
        default_factory=lambda: [Decimal("0.3"), Decimal("0.3"), Decimal("0.4")]
    )
    stop_pct: Decimal = Field(default=Decimal(2), gt=0, lt=100)
    dynamic: bool = False
    # Dynamic scaling bounds: scale = clamp((ATR/entry) / reference, min, max), stretched by
    # confidence (0.5 neutral) by up to +/- confidence_stretch; stops never beyond max_stop_pct.
    dynamic_reference_atr_pct: Decimal = Field(default=Decimal("1.5"), gt=0)
    dynamic_min_scale: Decimal = Field(default=Decimal("0.5"), gt=0, le=1)
    dynamic_max_scale: Decimal = Field(default=Decimal(2), ge=1)
    dynamic_confidence_stretch: Decimal = Field(default=Decimal("0.25"), ge=0, lt=1)
    dynamic_max_stop_pct: Decimal = Field(default=Decimal(4), gt=0, lt=100)
    break_even_after_tp1: bool = True
    # Break-even sits this many percent beyond the entry, to cover the fees of the round trip.
    break_even_buffer_pct: Decimal = Field(default=Decimal("0.2"), ge=0, lt=10)
    stop_fallback: Literal["bot_side", "market_exit"] = "bot_side"
    # Ladders per regime (README: Regimes and the meta-strategy), JSON: {"trend": {"tp_pcts":
    # [2, 4, 8], "tp_fractions": [0.3, 0.3, 0.4], "stop_pct": 2.5}}; a field left out keeps the
    # ladder above, a regime without a profile trades the ladder above.
    profiles: dict[str, ExitProfileSettings] = Field(default_factory=dict)
    # Candle-close moves of the Exit Brain (README: How a trade happens); 0 turns each off.
    # Exit at market once held this many hours (MAX_HOLD).
    max_hold_hours: Decimal = Field(default=Decimal(0), ge=0)
    # Trail what is left after the last filled take-profit at best - trail_atr * f * ATR,
    # f = max(trail_min_factor, 1 - profit_in_R * trail_step_per_r) (TRAILING_STOP); it starts
    # once trail_after_tp legs filled (0: all but the last, which still caps the runner).
    trail_atr: Decimal = Field(default=Decimal(0), ge=0)
    trail_min_factor: Decimal = Field(default=Decimal("0.5"), gt=0, le=1)
    trail_step_per_r: Decimal = Field(default=Decimal("0.1"), ge=0)
    trail_after_tp: int = Field(default=0, ge=0)
    # Once the price was profit_lock_trigger_pct % in favour, the stop locks profit_lock_pct %
    # of profit (PROFIT_LOCK).
    profit_lock_trigger_pct: Decimal = Field(default=Decimal(0), ge=0, lt=100)
    profit_lock_pct: Decimal = Field(default=Decimal(0), ge=0, lt=100)

    @model_validator(mode="after")
    def _check(self) -> ExitSettings:
        if len(self.tp_pcts) != len(self.tp_fractions) or not self.tp_pcts:
            raise ValueError(
                f"exits.tp_pcts ({len(self.tp_pcts)}) and exits.tp_fractions "
                f"({len(self.tp_fractions)}) need the same, non-zero length"
            )
        if sum(self.tp_fractions) != 1:
            raise ValueError(f"exits.tp_fractions must sum to 1, was {sum(self.tp_fractions)}")
        if (
            self.profit_lock_trigger_pct > 0
            and self.profit_lock_pct >= self.profit_lock_trigger_pct
        ):
            raise ValueError(
                f"QT__EXITS__PROFIT_LOCK_PCT ({self.profit_lock_pct}) must be below "
                f"QT__EXITS__PROFIT_LOCK_TRIGGER_PCT ({self.profit_lock_trigger_pct})"
            )
        unknown = sorted(set(self.profiles) - set(EXIT_PROFILE_NAMES))
        if unknown:
            raise ValueError(
                f"QT__EXITS__PROFILES: unknown regime {', '.join(unknown)}; "
                f"known: {', '.join(EXIT_PROFILE_NAMES)}"
            )
        for name in self.profiles:
            try:
                self.profile(name)
            except ValidationError as e:
                why = "; ".join(str(i["msg"]).removeprefix("Value error, ") for i in e.errors())
                raise ValueError(f"QT__EXITS__PROFILES[{name}]: {why}") from None
        return self

    def profile(self, name: str) -> ExitSettings:
        """Return the ladder of profile ``name``: its fields over the ladder above."""
        fields = self.profiles[name].model_dump(exclude_none=True)
        base = self.model_dump(exclude={"profiles"})
        return ExitSettings.model_validate({**base, **fields})


class StrategySettings(Section):
    """The signal provider and its parameters."""

    # None: the mode's default (qt demo trades the ensemble; qt run and qt backtest ema_rsi)
    provider: Literal["ema_rsi", "ensemble", "mean_reversion", "meta"] | None = None
    ema_fast: int = Field(default=20, ge=2)
    ema_slow: int = Field(default=50, ge=3)
    rsi_low: float = Field(default=30.0, ge=0, le=100)
    rsi_high: float = Field(default=70.0, ge=0, le=100)
    # The mean-reversion baseline and the meta-strategy (README: Regimes and the meta-strategy)
    mr_period: int = Field(default=20, ge=2)
    mr_entry_z: float = Field(default=2.0, gt=0)
    mr_exit_z: float = Field(default=0.0, ge=0)
    meta_min_record: int = Field(default=10, ge=1)  # resolved entries in the regime to compete
    meta_window: int = Field(default=50, ge=0)  # the newest outcomes scored; 0: all
    meta_horizon: int = Field(default=24, ge=1)  # candles an outcome may take to resolve
    meta_fallback: Literal["ema_rsi", "mean_reversion"] = "ema_rsi"
    # The ML ensemble (README: Training and the ensemble)
    ensemble_threshold: float = Field(default=0.6, gt=0.5, lt=1)
    ensemble_min_weight: float = Field(default=0.1, ge=0, le=1)
    ensemble_max_weight: float = Field(default=0.9, ge=0, le=1)
    ensemble_window: int = Field(default=168, ge=1)
    ensemble_temperature: float = Field(default=0.05, gt=0)
    ensemble_disabled: list[str] = Field(default_factory=list)

    @field_validator("provider", mode="before")
    @classmethod
    def _empty_provider_is_default(cls, value: object) -> object:
        return None if value == "" else value

    def provider_in(self, mode: Literal["demo", "run", "backtest"]) -> str:
        """Return the provider ``mode`` trades: the one set, else the demo's ensemble or
        everywhere else the baseline (ema_rsi)."""
        if self.provider is not None:
            return self.provider
        return "ensemble" if mode == "demo" else "ema_rsi"

    @model_validator(mode="after")
    def _weights_ordered(self) -> StrategySettings:
        if self.ensemble_min_weight > self.ensemble_max_weight:
            raise ValueError(
                f"strategy.ensemble_min_weight ({self.ensemble_min_weight}) is above "
                f"strategy.ensemble_max_weight ({self.ensemble_max_weight})"
            )
        return self


class ModelsSettings(Section):
    """What the members are trained on (``qt models train``, the learning manager), and the
    walk-forward inside ``qt backtest --strategy ensemble --walk-forward``."""

    # market hours between two learning checks in a walk-forward backtest (live: learning's
    # check_every_hours); the check trains when learning's due policy says so
    retrain_hours: float = Field(default=168.0, gt=0)
    window_days: float = Field(default=90.0, ge=0)  # rolling training window; 0: expanding
    embargo: int = Field(default=24, ge=0)  # candles between training labels and the holdout
    members: list[str] = Field(default_factory=lambda: ["xgb", "lgbm"])
    trees: int = Field(default=0, ge=0)  # 0: each member's default
    # Market hours between two trainings of a member (JSON); a member not named is trained
    # at every scheduled training. The torch members cost 10-50x a GBDT's fit.
    cadence_hours: dict[str, float] = Field(
        default_factory=lambda: {"nhits": 672.0, "patchtst": 672.0}
    )
    warm_start: bool = True  # a torch member retrained starts from its previous weights
    epochs: int = Field(default=0, ge=0)  # torch members' epochs; 0: each member's default
    warm_epochs: int = Field(default=0, ge=0)  # ... from a warm start; 0: the member's default

    @field_validator("cadence_hours")
    @classmethod
    def _positive_cadences(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {name: h for name, h in value.items() if not (h > 0 and math.isfinite(h))}
        if bad:
            raise ValueError(f"models.cadence_hours must be finite and > 0 hours, was {bad}")
        return value

    @property
    def retrain_s(self) -> float:
        """Return the market seconds between two learning checks of a walk-forward."""
        return self.retrain_hours * 3600.0


class LearningSettings(Section):
    """The continuous learning manager (core.services.learning): when ``qt run`` and ``qt
    demo`` retrain the ensemble's members, how a candidate is gated against the champion,
    how long it predicts in shadow, what drift triggers an early retrain, what is kept."""

    enabled: bool = True  # with QT__STRATEGY__PROVIDER=ensemble
    check_every_hours: float = Field(default=1.0, gt=0)  # the due check (and shadow review)
    every_hours: float = Field(default=168.0, gt=0)  # the schedule between two trainings
    min_new_candles: int = Field(default=168, ge=0)  # per symbol, since the champion's end
    min_new_trades: int = Field(default=100, ge=0)
    need_trades: bool = False  # true: also min_new_trades closed trades, wins and losses
    timeout_minutes: float = Field(default=60.0, gt=0)  # a training run killed after this
    gate_margin: float = Field(default=0.0, ge=0)  # log-loss per row the candidate must gain
    gate_alpha: float = Field(default=0.05, gt=0, lt=1)
    gate_test: Literal["diebold-mariano", "paired-bootstrap"] = "diebold-mariano"
    gate_min_rows: int = Field(default=100, ge=10)
    # The cost-aware validation: the member's strategy backtested on the held-out candles
    # (bot.holdout_backtest); a candidate that passes the log-loss gate but returns more
    # than BACKTEST_MARGIN_PCT points less than its champion there is rejected.
    backtest_validation: bool = True
    backtest_margin_pct: float = Field(default=1.0, ge=0)
    shadow_hours: float = Field(default=48.0, ge=0)  # live record before a promotion
    shadow_min_rows: int = Field(default=48, ge=1)  # resolved live predictions, paired
    shadow_margin: float = Field(default=0.0, ge=0)  # worse than the champion by at most this
    drift_window_rows: int = Field(default=200, ge=10)
    # 0.1: a GBDT's validation log-loss leans optimistic by 0.03-0.05 (early stopping chose
    # on those rows; measured in the demo): a smaller excess calls that drift
    drift_log_loss_excess: float = Field(default=0.1, gt=0)
    drift_hit_rate_drop: float = Field(default=0.08, gt=0)
    # a feature's PSI, the champion's training rows against its newest DRIFT_PSI_ROWS live
    # ones per symbol since its promotion (at least 100 needed)
    drift_psi: float = Field(default=0.25, gt=0)
    drift_psi_rows: int = Field(default=720, ge=100)
    rollback_on_drift: bool = False  # true: a drifting champion is rolled back at once
    keep_candidates: int = Field(default=5, ge=0)  # per member, besides every champion ever


class DrawdownTierSettings(Section):
    """One tier of the drawdown ladder (from ``drawdown_pct`` of the rolling peak on)."""

    drawdown_pct: Decimal = Field(gt=0, lt=100)
    size_multiplier: Decimal = Field(default=Decimal(1), gt=0, le=1)
    pause: bool = False  # no new entries (REDUCING)
    close_fraction: Decimal = Field(default=Decimal(0), ge=0, le=1)  # once, on entering it
    halt: bool = False
    floor: float = Field(default=0.0, ge=0, le=100)  # the least risk score while in it


def _default_ladder() -> list[DrawdownTierSettings]:
    # The written policy of the system we replace: 5 % -> size x 0.75, 8 % -> no new entries,
    # 12 % -> close half, 15 % -> halt.
    tiers = (
        ("5", False, "0", False, 25.0),
        ("8", True, "0", False, 50.0),
        ("12", True, "0.5", False, 62.5),
        ("15", True, "0", True, 75.0),
    )
    return [
        DrawdownTierSettings(
            drawdown_pct=Decimal(d),
            size_multiplier=Decimal("0.75"),
            pause=pause,
            close_fraction=Decimal(close),
            halt=halt,
            floor=floor,
        )
        for d, pause, close, halt, floor in tiers
    ]


class BrainSettings(Section):
    """The Risk and CEO Brains (QT__BRAINS__*): when they run and the Risk Brain's limits."""

    enabled: bool = True
    assess_every_minutes: int = Field(default=60, ge=1, le=24 * 60)
    review_every_hours: float = Field(default=24.0, ge=1, le=24 * 30)  # the Strategy Brain
    var_limit_pct: Decimal = Field(default=Decimal(8), gt=0, lt=100)  # daily VaR 99 %
    es_limit_pct: Decimal = Field(default=Decimal(12), gt=0, lt=100)  # daily ES 99 %
    ladder: list[DrawdownTierSettings] = Field(default_factory=_default_ladder)
    peak_days: int = Field(default=30, ge=1, le=3650)  # the drawdown's rolling peak
    mc_paths: int = Field(default=100_000, ge=1_000, le=10_000_000)
    # The VaR/ES of unchanged positions is computed again after this many hours (0: at every
    # assessment); any change of the positions computes it at once.
    var_refresh_hours: float = Field(default=4.0, ge=0, le=24 * 7)
    flatten_on_emergency: bool = False


class SizingSettings(Section):
    """Which method sets each entry's size multiplier of the fixed-fractional risk size
    (core.services.sizing_service): bounded to [0, cap], at most 1 while the brains cut
    sizes, then capped by the policy and the risk gate; a failing method falls back to fixed."""

    method: Literal["fixed", "volatility", "kelly", "rl"] = "fixed"
    cap: float = Field(default=1.5, gt=0, le=3)
    # volatility: target / the entry's forecast daily volatility (percent), within [floor, cap]
    vol_target_pct: float = Field(default=2.0, gt=0, le=50)
    vol_floor: float = Field(default=0.0, ge=0, le=3)  # also what an unmeasurable vol gets
    # kelly: fraction x the growth-optimal multiplier of the recent closed trades
    kelly_fraction: float = Field(default=0.25, gt=0, le=1)
    kelly_min_trades: int = Field(default=20, ge=1, le=1000)
    kelly_without_record: float = Field(default=1.0, ge=0, le=3)
    # The account the simple methods read (the RL policy's own training settings win)
    recent_trades: int = Field(default=20, ge=1, le=1000)
    idle_cap_days: float = Field(default=30.0, gt=0)
    # rl: the policy's artifact folder and (optional) its manifest's sha256, the version;
    # no folder: the model registry's rl_sizer champion, trained by the learning manager
    # every retrain_hours (a first one at once) and shadowed over shadow_trades closed
    # trades before it sizes any
    policy_dir: str = ""
    policy_sha256: str = ""
    # A policy whose training data (the walk's last candle) ended longer ago than this falls
    # back; 0: any age
    max_age_days: float = Field(default=30.0, ge=0)
    # qt evaluate --sizing's gate: the policy sizes live trades only when its annualised
    # Sharpe beat the best simple method's by this much out of sample (core.ml.rl.gate)
    gate_margin: float = Field(default=0.1, ge=0, le=10)
    # qt evaluate --sizing's walk: its parts (the first only trains), the closed trades a
    # fold's policy needs, each PPO training's budget and the control's permutation seed
    eval_folds: int = Field(default=4, ge=2, le=20)
    eval_min_train: int = Field(default=20, ge=1)
    eval_timesteps: int = Field(default=20_480, ge=256, le=10_000_000)
    eval_control_seed: int = Field(default=0, ge=0)
    retrain_hours: float = Field(default=168.0, gt=0)
    # the stored candles the registry's training walks forward over (days back; 0: all): the
    # trades the policy learns from, many more than the members' rolling window gives
    train_days: float = Field(default=0.0, ge=0)
    shadow_trades: int = Field(default=30, ge=1, le=1000)

    @model_validator(mode="after")
    def _check(self) -> SizingSettings:
        if self.policy_sha256 and not self.policy_dir:
            raise ValueError("QT__SIZING__POLICY_SHA256 requires QT__SIZING__POLICY_DIR")
        if self.vol_floor > self.cap or self.kelly_without_record > self.cap:
            raise ValueError(
                "QT__SIZING__VOL_FLOOR and QT__SIZING__KELLY_WITHOUT_RECORD must be at most "
                f"QT__SIZING__CAP={self.cap}"
            )
        return self


class RegimeSettings(Section):
    """The market regime detector (core.brains.regime), one for the whole process."""

    adx_period: int = Field(default=14, ge=1)
    trend_adx: float = Field(default=25.0, gt=0, lt=100)
    vol_window: int = Field(default=24, ge=1)
    vol_history: int = Field(default=720, ge=1)
    high_vol_ratio: float = Field(default=1.3, gt=0)
    confirm: int = Field(default=3, ge=1)


class SymbolRulesOverride(Section):
    """An operator's rules for one symbol; a field left out keeps the rules it would have."""

    amount_step: Decimal | None = Field(default=None, ge=FINEST_STEP, le=COARSEST_STEP)
    price_tick: Decimal | None = Field(default=None, ge=FINEST_STEP, le=COARSEST_STEP)
    min_amount: Decimal | None = Field(default=None, ge=0, le=LARGEST_MINIMUM)
    min_notional: Decimal | None = Field(default=None, ge=0, le=LARGEST_MINIMUM)


class MarketRulesSettings(Section):
    """Market rules where the venue's are not known (README: Market rules).

    Each symbol's rules come from the venue (``qt run``, stored by it and by ``qt data
    download``), ``symbols`` (per-symbol overrides, JSON: ``{"XRP/USDT": {"price_tick":
    "0.0001"}}``) or the candles; these global values are the last fallback (and the minimum
    order value assumed where the venue's is not known).
    """

    amount_step: Decimal = Field(default=Decimal("0.00001"), ge=FINEST_STEP, le=COARSEST_STEP)
    price_tick: Decimal = Field(default=Decimal("0.01"), ge=FINEST_STEP, le=COARSEST_STEP)
    min_notional: Decimal = Field(default=Decimal(5), ge=0, le=LARGEST_MINIMUM)
    symbols: dict[str, SymbolRulesOverride] = Field(default_factory=dict)

    @field_validator("symbols")
    @classmethod
    def _symbol_names(cls, value: dict[str, SymbolRulesOverride]) -> dict[str, SymbolRulesOverride]:
        bad = [name for name in value if "/" not in name]
        if bad:
            raise ValueError(f"market.symbols keys are symbols like XRP/USDT, was {bad}")
        return value

    def default_rules(self) -> MarketRules:
        """Return the rules of a symbol nothing else is known of."""
        return MarketRules(
            symbol="*",
            amount_step=self.amount_step,
            price_tick=self.price_tick,
            min_notional=self.min_notional,
        )

    def overrides(self) -> dict[str, dict[str, Decimal]]:
        """Return, per symbol, the rule fields the operator set."""
        return {s: o.model_dump(exclude_none=True) for s, o in self.symbols.items()}


class MarginSettings(Section):
    """Perps: how positions are margined and liquidated on the paper venue and in backtests,
    and what the engine checks its stops against (live, the venue decides)."""

    mode: MarginMode = MarginMode.ISOLATED
    # Maintenance tiers as [notional floor, rate] pairs, first floor 0 (Binance's leverage
    # brackets); the maintenance amounts follow from them.
    tiers: list[tuple[Decimal, Decimal]] = Field(
        default_factory=lambda: [(t.floor, t.rate) for t in DEFAULT_TIERS]
    )
    liquidation_fee: Decimal = Field(default=Decimal("0.0125"), ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> MarginSettings:
        self.config()  # the tiers must form a valid table
        return self

    def config(self) -> MarginConfig:
        """Return the margin model these settings describe."""
        return MarginConfig(
            mode=self.mode,
            tiers=tuple(MarginTier(floor=f, rate=r) for f, r in self.tiers),
            liquidation_fee=self.liquidation_fee,
        )


_STABLECOINS = ("USDC", "FDUSD", "TUSD", "BUSD", "DAI", "USDP", "USDE", "EUR")


class UniverseSettings(Section):
    """What to trade: the static list of ``trading.symbols`` or, with mode ``volume``, the
    top N by quote volume after filters, refreshed every ``refresh_hours`` (README: Universe of
    symbols)."""

    mode: Literal["static", "volume"] = "static"
    top_n: int = Field(default=12, ge=1, le=500)
    quote: str = ""  # empty: QT__TRADING__QUOTE_CURRENCY (the account can buy nothing else)
    min_price: float = Field(default=0.0, ge=0)
    min_quote_volume: float = Field(default=0.0, ge=0)
    # Glob patterns on the symbol. Stablecoins by default: among the most traded, never moving.
    blacklist: list[str] = Field(default_factory=lambda: [f"{coin}/*" for coin in _STABLECOINS])
    min_listing_days: float = Field(default=30.0, ge=0, le=3650)
    refresh_hours: float = Field(default=24.0, gt=0, le=24 * 30)

    @field_validator("blacklist")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.strip() or "/" not in pattern:
                raise ValueError(
                    f"blacklist pattern {pattern!r} must match BASE/QUOTE symbols "
                    '(e.g. "*DOWN/*" or "USDC/USDT")'
                )
        return value

    @property
    def dynamic(self) -> bool:
        """Return whether the universe is selected by volume (not the static list)."""
        return self.mode == "volume"

    def rules(self, quote_currency: str) -> UniverseRules:
        """Return the selection rules, quoted in ``quote_currency`` unless set here."""
        return UniverseRules(
            top_n=self.top_n,
            quote=self.quote or quote_currency,
            min_price=self.min_price,
            min_quote_volume=self.min_quote_volume,
            blacklist=tuple(self.blacklist),
            min_listing_days=self.min_listing_days,
        )

    @property
    def refresh_ms(self) -> int:
        """Return the refresh interval in milliseconds."""
        return int(self.refresh_hours * 3_600_000)


class DemoSettings(Section):
    """The offline demo: a replayed market in accelerated time."""

    candles_per_second: float = Field(default=2.0, gt=0, le=10_000)
    seed: int = 7
    # 3000 (125 days of 1h): what the demo's ensemble trains on at start (fewer rows and
    # the leak guard takes chance patterns for leaks, the models learn nothing)
    history_candles: int = Field(default=3_000, ge=0)
    replay_candles: int = Field(default=2_000, ge=1)
    # The synthetic market's drifts times this: trends the ensemble can learn (1: plain)
    trend_scale: float = Field(default=6.0, ge=0, le=100)
    # A crash of the synthetic market CRASH_AFTER_CANDLES into the replay (0: none): every
    # symbol gaps CRASH_PCT % down and stays there (the brains' EMERGENCY, shown live).
    crash_after_candles: int = Field(default=0, ge=0)
    crash_pct: float = Field(default=30.0, gt=0, lt=100)
    data_file: Path | None = None
    start_ms: int = 1_704_067_200_000  # 2024-01-01T00:00:00Z, market time of the synthetic replay

    @field_validator("data_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value


class ChatSettings(Section):
    """Operating the bot from a phone: Telegram and Discord tokens, who may do what."""

    # Empty: that front end does not start (the console always serves the demo).
    telegram_token: SecretStr = SecretStr("")
    discord_token: SecretStr = SecretStr("")
    # Allowlist, JSON: "platform:user id" -> viewer | operator | admin, e.g.
    # {"telegram:123456789": "admin", "discord:987654321": "viewer"}. Anyone else is refused.
    users: dict[str, Literal["viewer", "operator", "admin"]] = Field(default_factory=dict)
    confirm_ttl_s: float = Field(default=60.0, gt=0, le=3600)  # a confirmation expires
    refusal_every_s: float = Field(default=3600.0, ge=0)  # one refusal per unknown user per
    # Push alerts, JSON kind -> loud | silent | off over the defaults (bot/chat/render.py):
    # fill, trade, risk, mode, state, alert, models, error, process, report.
    alerts: dict[str, Literal["loud", "silent", "off"]] = Field(default_factory=dict)
    push_interval_s: float = Field(default=1.0, ge=0.05, le=600)  # per target: one message per
    # --- Discord (bot/discord_front): where its slash commands live and its alerts go.
    # A server (guild) id: the slash commands appear there at once (else globally, which
    # Discord takes up to an hour to show). Empty: global.
    discord_guild_id: int | None = Field(default=None, gt=0)
    # The channel push alerts are posted to. Empty: Discord serves commands, pushes nothing.
    discord_channel_id: int | None = Field(default=None, gt=0)

    @field_validator("discord_guild_id", "discord_channel_id", mode="before")
    @classmethod
    def _empty_discord_id_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("users")
    @classmethod
    def _platform_and_id(cls, users: dict[str, str]) -> dict[str, str]:
        for key in users:
            platform, _, user_id = key.partition(":")
            if platform not in ("telegram", "discord", "console") or not user_id.strip():
                raise ValueError(
                    f"chat user {key!r}: keys are platform:user id, the platform one of "
                    "telegram, discord, console (e.g. telegram:123456789)"
                )
        return users

    @field_validator("alerts")
    @classmethod
    def _known_kinds(cls, alerts: dict[str, str]) -> dict[str, str]:
        kinds = (
            "fill", "trade", "risk", "mode", "state", "alert", "models", "error", "process",
            "report",
        )  # fmt: skip
        unknown = sorted(set(alerts) - set(kinds))
        if unknown:
            raise ValueError(f"unknown alert kind(s) {unknown}: one of {', '.join(kinds)}")
        return alerts

    # --- the Telegram front end (bot/telegram) ---
    # Chats the push alerts go to, JSON list of chat ids; empty: the private chat of every
    # allowlisted telegram user (a private chat's id is the user's id).
    telegram_chat_ids: list[int] = Field(default_factory=list)
    # The Bot API's address, the token appended (a self-hosted telegram-bot-api server, or a
    # test's fake one).
    telegram_api_url: str = Field(default="https://api.telegram.org/bot", pattern=r"^https?://")

    def telegram_push_chats(self) -> list[int]:
        """Return the chats Telegram pushes to (``telegram_chat_ids``, else the allowlisted
        telegram users' private chats)."""
        if self.telegram_chat_ids:
            return list(self.telegram_chat_ids)
        ids = (key.partition(":")[2].strip() for key in self.users if key.startswith("telegram:"))
        return [int(i) for i in ids if i.lstrip("-").isdigit()]


class Settings(BaseSettings):
    """All settings. Read from the environment (``QT__SECTION__KEY``) and an optional .env file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        env_file_encoding=ENV_FILE_ENCODING,  # checked first by load_settings (_env_text)
        extra="forbid",
        frozen=True,
    )

    app: AppSettings = AppSettings()
    database: DatabaseSettings = DatabaseSettings()
    exchange: ExchangeSettings = ExchangeSettings()
    trading: TradingSettings = TradingSettings()
    paper: PaperSettings = PaperSettings()
    risk: RiskSettings = RiskSettings()
    exits: ExitSettings = ExitSettings()
    strategy: StrategySettings = StrategySettings()
    market: MarketRulesSettings = MarketRulesSettings()
    margin: MarginSettings = MarginSettings()
    demo: DemoSettings = DemoSettings()
    universe: UniverseSettings = UniverseSettings()
    models: ModelsSettings = ModelsSettings()
    learning: LearningSettings = LearningSettings()
    regime: RegimeSettings = RegimeSettings()
    brains: BrainSettings = BrainSettings()
    sizing: SizingSettings = SizingSettings()
    chat: ChatSettings = ChatSettings()

    @model_validator(mode="after")
    def _live_needs_keys(self) -> Settings:
        if self.trading.mode is TradingMode.LIVE:
            if not self.exchange.api_key.get_secret_value():
                raise ValueError("QT__TRADING__MODE=live requires QT__EXCHANGE__API_KEY")
            if not self.exchange.api_secret.get_secret_value():
                raise ValueError("QT__TRADING__MODE=live requires QT__EXCHANGE__API_SECRET")
            if self.trading.live_confirmation != "I accept real-money risk":
                raise ValueError(
                    "QT__TRADING__MODE=live requires "
                    "QT__TRADING__LIVE_CONFIRMATION='I accept real-money risk'"
                )
            if self.exchange.market_type is MarketType.SPOT:
                raise ValueError(
                    "QT__TRADING__MODE=live trades USDT-margined perpetuals only "
                    "(QT__EXCHANGE__MARKET_TYPE=perp): a spot venue has no reduce-only orders, "
                    "so it cannot hold the take-profit ladder and the stop on the same coins"
                )
        quote = self.universe.quote
        if self.universe.dynamic and quote and quote != self.trading.quote_currency:
            raise ValueError(
                f"QT__UNIVERSE__QUOTE={quote} is not QT__TRADING__QUOTE_CURRENCY="
                f"{self.trading.quote_currency}: the account can only buy symbols quoted in "
                "its own currency (leave QT__UNIVERSE__QUOTE empty)"
            )
        tf_ms = timeframe_to_ms(self.trading.timeframe)
        if self.universe.dynamic and self.universe.refresh_ms < tf_ms:
            raise ValueError(
                f"QT__UNIVERSE__REFRESH_HOURS={self.universe.refresh_hours} is shorter than "
                f"QT__TRADING__TIMEFRAME={self.trading.timeframe}: a refresh between two candle "
                "closes has nothing new to rank by"
            )
        if self.exchange.market_type is MarketType.SPOT and self.trading.max_leverage != 1:
            raise ValueError(
                "QT__TRADING__MAX_LEVERAGE > 1 requires QT__EXCHANGE__MARKET_TYPE=perp"
            )
        if self.sizing.method == "volatility" and self.risk.vol_target_pct > 0:
            raise ValueError(
                "QT__SIZING__METHOD=volatility and QT__RISK__VOL_TARGET_PCT > 0 would target "
                "the volatility twice: set QT__RISK__VOL_TARGET_PCT=0"
            )
        if self.exchange.market_type is MarketType.SPOT and self.risk.allow_short:
            raise ValueError(
                "QT__RISK__ALLOW_SHORT=true requires QT__EXCHANGE__MARKET_TYPE=perp "
                "(spot cannot sell what the account does not hold)"
            )
        return self

    def with_market(self, symbols: list[str], timeframe: str) -> Settings:
        """Return these settings trading ``symbols`` on ``timeframe`` (the symbols of a demo's
        or a backtest's candle files), checked like configured ones."""
        data = {**self.trading.model_dump(), "symbols": symbols, "timeframe": timeframe}
        try:
            trading = TradingSettings.model_validate(data)
        except ValidationError as e:
            raise ConfigError(_describe(e)) from e
        return self.model_copy(update={"trading": trading})

    @property
    def database_url(self) -> str:
        """Return the configured URL or the default SQLite file under the data dir: its own
        file for live trading, so paper trades are never reconciled against a real venue."""
        if url := self.database.url.get_secret_value():
            return url
        name = "quantum_trader_live" if self.trading.mode is TradingMode.LIVE else "quantum_trader"
        return f"sqlite+aiosqlite:///{self.app.data_dir / f'{name}.sqlite'}"


def known_env_names() -> set[str]:
    """Return every ``QT__SECTION__KEY`` name the settings accept."""
    names = set()
    for section_name, field in Settings.model_fields.items():
        section_type = field.annotation
        if not (isinstance(section_type, type) and issubclass(section_type, BaseModel)):
            raise TypeError(f"settings field {section_name} must be a section model")
        for key in section_type.model_fields:
            names.add(f"{ENV_PREFIX}{section_name}{ENV_DELIMITER}{key}".upper())
    return names


def _env_text(env_file: Path) -> str:
    """Return the env file's text; ``ConfigError`` when it is no file, cannot be read or is
    not UTF-8 (a Windows editor's Latin-1 "réglages")."""
    if env_file.is_dir():
        raise ConfigError(f"env file {env_file} is a folder, not a file")
    if not env_file.exists():
        raise ConfigError(f"env file {env_file} does not exist")
    try:
        raw = env_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the env file {env_file}: {exc.strerror or exc}") from exc
    try:
        return raw.decode(ENV_FILE_ENCODING)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{env_file} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}): save "
            "it as UTF-8"
        ) from exc


def _dotenv_names(text: str) -> list[str]:
    names = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            names.append(line.split("=", 1)[0].removeprefix("export ").strip())
    return names


def _reject_unknown(names: list[str], where: str) -> None:
    known = known_env_names()
    unknown = sorted(
        n for n in names if n.upper().startswith(ENV_PREFIX) and n.upper() not in known
    )
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in {where}: {', '.join(unknown)}. "
            "Valid names are listed in .env.example"
        )


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Read and validate settings, raising ``ConfigError`` with a readable message.

    ``env_file`` defaults to ``./.env`` when that file exists; real environment variables win
    over the file, and ``overrides`` (section dicts, from CLI flags) win over both.
    """
    if env_file is None and Path(".env").exists():  # a folder named .env is refused below
        env_file = Path(".env")
    _reject_unknown(list(os.environ), "the environment")
    if env_file is not None:
        _reject_unknown(_dotenv_names(_env_text(env_file)), str(env_file))
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as e:
        raise ConfigError(_describe(e)) from e
    except SettingsError as e:  # a JSON value that does not parse: {bad or [BTC/USDT
        section = str(e).split('"')[1] if '"' in str(e) else "..."
        cause = f": {e.__cause__}" if e.__cause__ else ""
        raise ConfigError(
            f"invalid settings: a QT__{section.upper()}__* value is not valid JSON{cause} "
            '(lists are JSON lists, e.g. QT__TRADING__SYMBOLS=\'["BTC/USDT","ETH/USDT"]\', '
            "maps JSON objects)"
        ) from e


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = ENV_DELIMITER.join(str(p) for p in item["loc"]).upper()
        name = f"{ENV_PREFIX}{loc}" if loc else "settings"
        msg = str(item["msg"]).removeprefix("Value error, ")
        lines.append(msg if msg.startswith(ENV_PREFIX) else f"{name}: {msg}")
    if len(lines) == 1:  # the common case: one line
        return f"invalid settings: {lines[0]}"
    return "invalid settings:\n  " + "\n  ".join(lines)


def redacted(settings: Settings) -> dict[str, Any]:
    """Return settings as plain data with secrets shown as ``**********`` (or empty)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for section_name, section in settings:
        for key, value in section:
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                shown = masked_url(secret) if key == URL_FIELD else REDACTED
                data[section_name][key] = shown if secret else ""
    return data
