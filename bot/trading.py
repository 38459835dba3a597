"""Build the trading side (paper exchange, signals, execution, exits, engine) from settings.

Shared by every mode: the demo and run processes and the backtester call ``build_engine`` with
their own clock, bus and exchange, which is how they run the same engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

from bot.sizing import sizing_from
from core.brains.exit_config import (
    BreakEvenConfig,
    DynamicConfig,
    ExitConfig,
    LegSpec,
    ProfitLockConfig,
    StopAnchor,
    Target,
    TrailingConfig,
)
from core.brains.exits import StopFallback
from core.brains.regime import RegimeConfig
from core.brains.risk import DrawdownTier, RiskConfig
from core.brains.sizing import TradingCosts
from core.clock import Clock
from core.config import ExitSettings, Settings
from core.domain.enums import MarketType
from core.domain.market import timeframe_to_ms
from core.domain.policy import Policy
from core.errors import ConfigError
from core.exchange.paper import PaperExchange
from core.exchange.sim import FillModelConfig
from core.market.rules_book import RulesBook
from core.ml.ensemble import EnsembleConfig
from core.ports import Exchange, KeyValueRepo, Storage, TradeRepo
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.execution import ExecutionService
from core.services.exit_executor import ExitExecutor
from core.services.order_plans import EngineConfig
from core.services.portfolio import AccountView, view_account
from core.services.risk_limits import FundingLookup, RiskLimitsService
from core.services.signal_book import MAX_HISTORY, SignalBook
from core.services.sizing_service import SizingService
from core.services.trading_state import TradingStateService
from core.signals.base import SignalProvider
from core.signals.ema_rsi import EmaRsiConfig, EmaRsiCross
from core.signals.mean_reversion import MeanReversion, MeanReversionConfig
from core.signals.meta import MetaConfig, MetaStrategy


def exit_config_from(exits: ExitSettings, what: str = "QT__EXITS__* settings") -> ExitConfig:
    """Return the Exit Brain config: percent legs, TP1 -> break-even, later legs -> previous."""
    legs = []
    try:  # a leg the Exit Brain refuses (a target <= 0, a zero fraction): the same one line
        for i, (pct, fraction) in enumerate(zip(exits.tp_pcts, exits.tp_fractions, strict=True)):
            last = i == len(exits.tp_pcts) - 1
            anchor = StopAnchor.NONE
            if exits.break_even_after_tp1 and not last:
                anchor = StopAnchor.BREAK_EVEN if i == 0 else StopAnchor.PREVIOUS_LEG
            legs.append(LegSpec(target=Target.pct(pct), fraction=fraction, move_stop_to=anchor))
        return ExitConfig(
            legs=tuple(legs),
            stop=Target.pct(exits.stop_pct),
            dynamic=DynamicConfig(
                enabled=exits.dynamic,
                reference_atr_pct=exits.dynamic_reference_atr_pct,
                min_scale=exits.dynamic_min_scale,
                max_scale=exits.dynamic_max_scale,
                confidence_stretch=exits.dynamic_confidence_stretch,
                max_stop_pct=exits.dynamic_max_stop_pct,
            ),
            break_even=BreakEvenConfig(
                enabled=exits.break_even_after_tp1, fee_buffer_pct=exits.break_even_buffer_pct
            ),
            max_hold_hours=exits.max_hold_hours,
            trailing=TrailingConfig(
                atr_multiple=exits.trail_atr,
                min_factor=exits.trail_min_factor,
                step_per_r=exits.trail_step_per_r,
                after_tp=exits.trail_after_tp,
            ),
            profit_lock=ProfitLockConfig(
                trigger_pct=exits.profit_lock_trigger_pct, lock_pct=exits.profit_lock_pct
            ),
        )
    except ValueError as e:
        raise ConfigError(f"invalid {what}: {e}") from e


def exit_profiles_from(exits: ExitSettings) -> dict[str, ExitConfig]:
    """Return the ladder of every regime profile (QT__EXITS__PROFILES) by its name."""
    return {
        name: exit_config_from(exits.profile(name), f"QT__EXITS__PROFILES[{name}]")
        for name in exits.profiles
    }


def regime_config_from(settings: Settings) -> RegimeConfig:
    """Return the one regime detector's config of the process (QT__REGIME__*)."""
    try:
        config = RegimeConfig(**settings.regime.model_dump())
    except ValueError as e:
        raise ConfigError(f"invalid QT__REGIME__* settings: {e}") from e
    if config.warmup_candles > MAX_HISTORY:  # a backtest would know regimes demo and run never do
        raise ConfigError(
            f"invalid QT__REGIME__* settings: the warm-up ({config.warmup_candles} candles) is "
            f"longer than the {MAX_HISTORY} candles a running process keeps per symbol"
        )
    return config


def policy_from(settings: Settings) -> Policy:
    """Return the static policy snapshot built from the risk settings."""
    r = settings.risk
    return Policy(
        risk_per_trade=r.risk_per_trade,
        max_position_pct=r.max_position_pct,
        max_position_notional=r.max_position_notional,
        max_open_positions=r.max_open_positions,
        max_leverage=settings.trading.max_leverage,
        max_total_exposure_pct=r.max_total_exposure_pct,
        allow_short=r.allow_short and settings.exchange.market_type is MarketType.PERP,
        vol_target_pct=r.vol_target_pct,
        vol_scale_min=r.vol_scale_min,
        vol_scale_max=r.vol_scale_max,
        daily_loss_limit_pct=r.daily_loss_limit_pct,
        loss_streak_limit=r.loss_streak_limit,
        loss_streak_cooldown_s=r.loss_streak_cooldown_s,
        max_entries_per_hour=r.max_entries_per_hour,
        symbol_cooldown_s=r.symbol_cooldown_s,
        max_correlation=r.max_correlation,
        max_funding_rate=r.max_funding_rate or None,
        funding_unknown_denies=r.funding_unknown_denies,
        min_liquidation_buffer_pct=r.min_liquidation_buffer_pct,
    )


def risk_config_from(settings: Settings) -> RiskConfig:
    """Return the Risk Brain's limits and drawdown ladder (QT__BRAINS__*)."""
    b = settings.brains
    try:
        return RiskConfig(
            var_limit=float(b.var_limit_pct) / 100.0,
            es_limit=float(b.es_limit_pct) / 100.0,
            ladder=tuple(
                DrawdownTier(
                    drawdown=float(t.drawdown_pct) / 100.0,
                    size_multiplier=float(t.size_multiplier),
                    pause=t.pause,
                    close_fraction=float(t.close_fraction),
                    halt=t.halt,
                    floor=t.floor,
                )
                for t in b.ladder
            ),
            mc_paths=b.mc_paths,
        )
    except ValueError as e:
        raise ConfigError(f"invalid QT__BRAINS__* settings: {e}") from e


def provider_from(settings: Settings) -> SignalProvider:
    """Return the configured signal provider when it needs nothing loaded (the ensemble
    needs its saved models, which each mode loads: ``bot.ensemble_loader``; ``meta`` here
    chooses among the baselines, ``meta_from`` with the ensemble too)."""
    s = settings.strategy
    if s.provider == "ensemble":
        raise ConfigError(
            "QT__STRATEGY__PROVIDER=ensemble is loaded from its saved models by the mode "
            "(bot.ensemble_loader), not built here"
        )
    if s.provider == "mean_reversion":
        return mean_reversion_from(settings)
    if s.provider == "meta":
        return meta_from(settings)
    return ema_rsi_from(settings)


def ema_rsi_from(settings: Settings) -> EmaRsiCross:
    """Return the EMA/RSI baseline configured by QT__STRATEGY__*: also what trades while
    nothing better is ready (the demo's ensemble training; ``qt run`` without saved models)."""
    s = settings.strategy
    try:
        return EmaRsiCross(
            EmaRsiConfig(
                fast=s.ema_fast,
                slow=s.ema_slow,
                rsi_low=s.rsi_low,
                rsi_high=s.rsi_high,
                allow_short=settings.risk.allow_short,
            )
        )
    except ValueError as e:
        raise ConfigError(f"invalid QT__STRATEGY__* settings: {e}") from e


def mean_reversion_from(settings: Settings) -> MeanReversion:
    """Return the mean-reversion baseline configured by QT__STRATEGY__MR_*."""
    s = settings.strategy
    try:
        return MeanReversion(
            MeanReversionConfig(
                period=s.mr_period,
                entry_z=s.mr_entry_z,
                exit_z=s.mr_exit_z,
                rsi_low=s.rsi_low,
                rsi_high=s.rsi_high,
                allow_short=policy_from(settings).allow_short,
            )
        )
    except ValueError as e:
        raise ConfigError(f"invalid QT__STRATEGY__MR_* settings: {e}") from e


def meta_from(settings: Settings, ensemble: SignalProvider | None = None) -> MetaStrategy:
    """Return the meta-strategy over the baselines (and ``ensemble`` when given)."""
    s = settings.strategy
    candidates: list[SignalProvider] = [ema_rsi_from(settings), mean_reversion_from(settings)]
    if ensemble is not None:
        candidates.append(ensemble)
    try:
        return MetaStrategy(
            candidates,
            MetaConfig(
                min_record=s.meta_min_record,
                window=s.meta_window,
                horizon=s.meta_horizon,
                fallback=s.meta_fallback,
                regime=regime_config_from(settings),
            ),
            exits=exit_config_from(settings.exits),
        )
    except ValueError as e:
        raise ConfigError(f"invalid QT__STRATEGY__META_* settings: {e}") from e


def trading_costs(settings: Settings) -> TradingCosts:
    """Return the fees and slippage sizing budgets for (the paper model's; live, an estimate)."""
    paper = settings.paper
    return TradingCosts(
        taker_fee=paper.taker_fee,
        max_fee=max(paper.maker_fee, paper.taker_fee),
        slippage=paper.slippage_bps / Decimal(10_000),
    )


def paper_exchange(
    settings: Settings, storage: Storage, clock: Clock, book: RulesBook | None = None
) -> PaperExchange:
    """Return the paper exchange configured by ``settings`` on ``storage``; with ``book`` it
    refuses orders off each symbol's grid or below its minimums, as the venue would."""
    return PaperExchange(
        storage=storage,
        clock=clock,
        fill_config=FillModelConfig(
            maker_fee=settings.paper.maker_fee,
            taker_fee=settings.paper.taker_fee,
            slippage_bps=settings.paper.slippage_bps,
        ),
        starting_balance=settings.paper.starting_balance,
        quote_currency=settings.trading.quote_currency,
        market_type=settings.exchange.market_type,
        max_leverage=settings.trading.max_leverage,
        min_notional=settings.market.min_notional,
        margin=settings.margin.config(),
        rules=None if book is None else book.rules,
    )


def build_engine(
    settings: Settings,
    *,
    clock: Clock,
    bus: EventBus,
    exchange: Exchange,
    trading_state: TradingStateService,
    provider: SignalProvider | None = None,
    state: KeyValueRepo | None = None,
    trades: TradeRepo | None = None,
    book: RulesBook | None = None,
    offload_signals: bool = False,
    policy: Callable[[], Policy] | None = None,
    funding: FundingLookup | None = None,
    sizing: SizingService | None = None,
) -> Engine:
    """Wire the engine and its collaborators for ``exchange``.

    ``provider`` replaces the configured signal provider (tests script their signals with it).
    ``state`` is where the engine keeps its open trades across restarts (None: not kept, as in
    backtests, which never restart); ``trades`` where it records each closed trade (None: in
    memory only, as in backtests). ``book``: each symbol's market rules, shared with the
    paper venue (None: the settings' fallback for every symbol). ``offload_signals``: compute
    the signals in a worker thread (a running process: its event loop never waits on them).
    ``policy``: the policy store's snapshots (None: the settings' policy, fixed).
    ``funding``: each symbol's funding rate for the limits (a backtest's funding files; None:
    unknown, as the exchange port does not tell it). The pre-trade limits keep their state in
    the trading state's store, next to the halt they may set. ``sizing``: each entry's size
    multiplier (None: the one QT__SIZING__* chooses, ``bot.sizing``).
    """
    if policy is None:
        fixed = policy_from(settings)

        def policy() -> Policy:
            return fixed

    quote = settings.trading.quote_currency
    engine: Engine | None = None

    async def account(marks: Mapping[str, Decimal]) -> AccountView:
        return await view_account(exchange, {**(engine.prices if engine else {}), **marks}, quote)

    async def exposure(symbol: str) -> tuple[Decimal, int, Decimal]:
        valued = await account({})
        return valued.equity, valued.open_positions_except(symbol), valued.exposure

    signals = SignalBook(
        provider or provider_from(settings),
        regime=regime_config_from(settings),
        offload=offload_signals,
    )
    limits = RiskLimitsService(
        store=trading_state.store,
        bus=bus,
        clock=clock,
        trading_state=trading_state,
        policy=policy,
        account=account,
        timeframe_ms=timeframe_to_ms(settings.trading.timeframe),
        signals=signals,
        perp=settings.exchange.market_type is MarketType.PERP,
        funding=funding,
    )
    execution = ExecutionService(
        exchange=exchange,
        bus=bus,
        clock=clock,
        trading_state=trading_state.current,
        policy=policy,
        exposure=exposure,
        limits=limits.context,
        order_gate=trading_state.order_gate,
        venue_reports_cancels=isinstance(exchange, PaperExchange),
    )
    book = book or RulesBook(settings.market.default_rules())
    exits = ExitExecutor(
        execution=execution,
        bus=bus,
        clock=clock,
        fallback=StopFallback(settings.exits.stop_fallback),
        rules=book.rules,
        trades=trades,
    )
    engine = Engine(
        config=EngineConfig(
            timeframe=settings.trading.timeframe,
            # what every mode feeds: the demo's markets, run's list or its universe's first
            symbols=tuple(settings.trading.symbols),
            quote=quote,
            market_type=settings.exchange.market_type,
            leverage=settings.trading.max_leverage,
            rules=settings.market.default_rules(),
            exits=exit_config_from(settings.exits),
            exit_profiles=exit_profiles_from(settings.exits),
            costs=trading_costs(settings),
            margin=(
                settings.margin.config()
                if settings.exchange.market_type is MarketType.PERP
                else None
            ),
        ),
        clock=clock,
        bus=bus,
        exchange=exchange,
        execution=execution,
        exits=exits,
        signals=signals,
        policy=policy,
        state=state,
        on_storage_failure=trading_state.fail_closed,
        book=book,
        sizing=sizing or sizing_from(settings, bus=bus, clock=clock),
    )
    return engine


def ensemble_config_from(settings: Settings) -> EnsembleConfig:
    """Return the ensemble's config from the strategy settings (shorts as the risk allows)."""
    s = settings.strategy
    try:
        return EnsembleConfig(
            threshold=s.ensemble_threshold,
            allow_short=policy_from(settings).allow_short,
            window=s.ensemble_window,
            temperature=s.ensemble_temperature,
            min_weight=s.ensemble_min_weight,
            max_weight=s.ensemble_max_weight,
            disabled=tuple(s.ensemble_disabled),
        )
    except ValueError as e:
        raise ConfigError(f"invalid QT__STRATEGY__ENSEMBLE_* settings: {e}") from e
