"""The numbers of a decision's orders: rules per symbol, sizing, exit plan requests, the stop
sizing plans for, and where the venue would liquidate.

Pure arithmetic over the engine's config and the venue's market rules; the engine decides when,
this module says how much and at what price.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import field
from decimal import Decimal

from core.brains.exit_profiles import DEFAULT_PROFILE, ExitProfiles
from core.brains.exits import ExitConfig, PlanRequest, plan_stop
from core.brains.sizing import SizingDecision, SizingInput, TradingCosts, size_position
from core.domain.enums import MarketType, PositionSide
from core.domain.margin import MarginConfig, MarginMode, liquidation_price
from core.domain.market_rules import MarketRules
from core.domain.policy import Policy
from core.market.rules_book import RulesBook
from core.services.portfolio import AccountView
from core.values import value_class


@value_class(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """What the engine trades and how."""

    timeframe: str
    # The symbols whose candles the process feeds it (at start: a dynamic universe's first
    # selection); a venue position in any other is never adopted (``Engine.not_adoptable``).
    symbols: tuple[str, ...]
    quote: str
    market_type: MarketType
    leverage: int
    rules: MarketRules  # a symbol's rules when the book holds none of it (settings' fallback)
    exits: ExitConfig
    costs: TradingCosts  # expected fees and slippage, for the risk budget
    margin: MarginConfig | None = None  # perps: the stop must sit inside liquidation
    # Ladders by regime profile name (core.brains.exit_profiles); ``exits`` is the default.
    exit_profiles: Mapping[str, ExitConfig] = field(default_factory=dict)


class OrderPlanner:
    """Size entries and plan exits by the rules of each symbol (see module docstring)."""

    def __init__(self, config: EngineConfig, book: RulesBook | None = None) -> None:
        self.config = config
        # Each symbol's precision and minimums (shared with the paper venue, which checks them).
        self.book = book or RulesBook(config.rules)
        self.profiles = ExitProfiles(default=config.exits, by_name=config.exit_profiles)

    def rules(self, symbol: str) -> MarketRules:
        """Return the rules orders of ``symbol`` are sized and rounded by."""
        return self.book.rules(symbol)

    def expected_fill(self, side: PositionSide, price: Decimal) -> Decimal:
        """Return where an entry at market is expected to fill: the price plus slippage."""
        return self.config.costs.fill_price(price, buy=side is PositionSide.LONG)

    def size(
        self,
        symbol: str,
        account: AccountView,
        entry: Decimal,
        stop: Decimal,
        policy: Policy,
        risk_scale: Decimal = Decimal(1),
    ) -> SizingDecision:
        """Return the entry's size: the risk budget at ``stop``, costs included, within the
        policy's caps, the cash and the symbol's rules."""
        rules, cfg = self.rules(symbol), self.config
        return size_position(
            SizingInput(
                equity=account.equity,
                free_cash=account.free_quote,
                entry_price=entry,
                stop_price=stop,
                total_exposure=account.exposure,
                leverage=cfg.leverage,
                amount_step=rules.amount_step,
                min_amount=rules.min_amount,
                min_notional=rules.min_notional,
                costs=cfg.costs,
                policy=policy,
                risk_scale=risk_scale,
            )
        )

    def plan_request(
        self,
        symbol: str,
        side: PositionSide,
        entry: Decimal,
        amount: Decimal,
        atr: float,
        confidence: float,
        profile: str = DEFAULT_PROFILE,
    ) -> PlanRequest:
        """Return what the Exit Brain needs to plan the exits of a position, on the ladder of
        ``profile`` (``core.brains.exit_profiles``)."""
        rules = self.rules(symbol)
        return PlanRequest(
            side=side,
            entry_price=entry,
            amount=amount,
            amount_step=rules.amount_step,
            price_tick=rules.price_tick,
            min_amount=max(rules.amount_step, rules.min_amount),
            min_notional=rules.min_notional,
            atr=atr if math.isfinite(atr) and atr > 0 else None,
            confidence=min(1.0, max(0.0, confidence)),
            config=self.profiles.config(profile),
        )

    def planned_stop(
        self,
        symbol: str,
        side: PositionSide,
        entry: Decimal,
        atr: float,
        confidence: float,
        profile: str = DEFAULT_PROFILE,
    ) -> Decimal:
        """Return where the Exit Brain would put the stop, for sizing before the entry."""
        rules = self.rules(symbol)
        unit = max(rules.amount_step, rules.min_amount)  # any size: the stop's price is the same
        return plan_stop(self.plan_request(symbol, side, entry, unit, atr, confidence, profile))

    def liquidation_price(
        self, side: PositionSide, amount: Decimal, entry: Decimal, free_cash: Decimal
    ) -> Decimal | None:
        """Return where the venue would liquidate the entry about to be sent (perps): isolated,
        backed by its own margin; cross, by the free cash (its own margin comes from there)."""
        margin, cfg = self.config.margin, self.config
        if margin is None or cfg.market_type is not MarketType.PERP:
            return None
        own = amount * entry / cfg.leverage
        collateral = own if margin.mode is MarginMode.ISOLATED else max(free_cash, own)
        return liquidation_price(side, amount, entry, collateral, margin)
