"""Build the live sizing service from the QT__SIZING__* settings.

Chosen once, here: ``fixed`` (the default), ``volatility`` or ``kelly`` (the simple sizers)
or ``rl`` (the PPO policy in ``QT__SIZING__POLICY_DIR``). An RL artifact that is missing or
tampered does not stop the process: it is refused (``load_policy``), logged, and every entry
sizes fixed-fractional with a ``SizingFallback`` event saying why (fail closed).
"""

from __future__ import annotations

import logging
from pathlib import Path

from core.brains.sizing_policies import KellyParams, VolTargetParams
from core.clock import Clock
from core.config import Settings, SizingSettings
from core.errors import ArtifactError, ConfigError
from core.ml.rl.book import SizingAccount
from core.services.bus import EventBus
from core.services.sizing_service import SizingService
from core.services.sizing_sources import (
    DAY_MS,
    FallbackReason,
    FixedSizing,
    KellySizing,
    PolicySizing,
    RefusedSizing,
    SizingSource,
    VolatilitySizing,
)

log = logging.getLogger(__name__)


def sizing_from(settings: Settings, *, bus: EventBus, clock: Clock) -> SizingService:
    """Return the sizing service the settings choose (see module docstring)."""
    s = settings.sizing
    source, account = _source(s)
    return SizingService(bus=bus, clock=clock, source=source, cap=s.cap, account=account)


def _source(s: SizingSettings) -> tuple[SizingSource, SizingAccount]:
    account = SizingAccount(recent_trades=s.recent_trades, idle_cap_days=s.idle_cap_days)
    try:
        if s.method == "volatility":
            vol = VolTargetParams(target_vol=s.vol_target_pct, floor=s.vol_floor, cap=s.cap)
            return VolatilitySizing(vol), account
        if s.method == "kelly":
            kelly = KellyParams(
                fraction=s.kelly_fraction,
                cap=s.cap,
                min_trades=s.kelly_min_trades,
                without_record=s.kelly_without_record,
            )
            return KellySizing(kelly), account
    except ConfigError as e:
        raise ConfigError(f"invalid QT__SIZING__* settings: {e}") from e
    if s.method == "rl":
        return _policy_source(s, account)
    return FixedSizing(), account


def _policy_source(s: SizingSettings, account: SizingAccount) -> tuple[SizingSource, SizingAccount]:
    from core.ml.rl.policy import load_policy  # torch: only when RL sizing is chosen

    folder = Path(s.policy_dir)
    try:
        policy = load_policy(folder, expected_sha256=s.policy_sha256 or None)
    except ArtifactError as e:
        log.error("sizing: the RL policy in %s is refused, entries size fixed: %s", folder, e)
        return RefusedSizing("rl", FallbackReason.ARTIFACT, str(e)), account
    source = PolicySizing(policy, max_age_ms=round(s.max_age_days * DAY_MS))
    # The account as the policy was trained to see it (core.ml.rl.env.SizingEnvConfig).
    try:
        account = SizingAccount(
            recent_trades=int(policy.env.get("recent_trades", s.recent_trades)),
            idle_cap_days=float(policy.env.get("idle_cap_days", s.idle_cap_days)),
        )
    except (ConfigError, TypeError, ValueError) as e:
        detail = f"its training account settings are not usable: {e}"
        return RefusedSizing("rl", FallbackReason.SPEC_MISMATCH, detail), account
    return source, account
