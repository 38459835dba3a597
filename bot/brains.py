"""Build the policy store and the brains (Risk, CEO) of a process or a backtest from settings.

One wiring for every mode: ``qt run``, the demo and ``qt backtest`` get the same services and
the same ``risk_assessment`` job (on simulated time in a backtest).
"""

from __future__ import annotations

from bot.trading import policy_from, risk_config_from
from core.brains.ceo import CeoConfig
from core.clock import Clock
from core.config import Settings
from core.domain.market import timeframe_to_ms
from core.ports import Storage
from core.services.brains import Brains
from core.services.bus import EventBus
from core.services.ceo_service import CeoService
from core.services.engine import Engine
from core.services.policy_store import PolicyStore
from core.services.risk_service import RiskService
from core.services.strategy_service import StrategyService


def policy_store(settings: Settings, storage: Storage, bus: EventBus, clock: Clock) -> PolicyStore:
    """Return the policy store over the settings' policy (started by the caller)."""
    return PolicyStore(storage.decisions, policy_from(settings), bus=bus, clock=clock)


def build_brains(
    settings: Settings,
    *,
    engine: Engine,
    store: PolicyStore,
    storage: Storage,
    bus: EventBus,
    clock: Clock,
    record: bool = True,
) -> Brains | None:
    """Return the brains of the process (None: QT__BRAINS__ENABLED=false). ``record``: keep
    each assessment in ``risk_assessments`` (a backtest's storage is thrown away: it only
    publishes them)."""
    b = settings.brains
    if not b.enabled:
        return None
    risk = RiskService(
        engine=engine,
        policy=store.current,
        repo=storage.decisions,
        state=storage.state,
        bus=bus,
        clock=clock,
        config=risk_config_from(settings),
        peak_days=b.peak_days,
        figures_every_ms=round(b.var_refresh_hours * 3_600_000),
        record=record,
    )
    ceo = CeoService(
        engine=engine,
        store=store,
        repo=storage.decisions,
        state=storage.state,
        bus=bus,
        clock=clock,
        config=CeoConfig(max_age_ms=3 * b.assess_every_minutes * 60_000),
        flatten_on_emergency=b.flatten_on_emergency,
    )
    strategy = StrategyService(
        engine=engine,
        store=store,
        repo=storage.decisions,
        bus=bus,
        clock=clock,
        candle_ms=timeframe_to_ms(settings.trading.timeframe),
    )
    return Brains(risk, ceo, store, strategy)
