"""Build the live sizing service from the QT__SIZING__* settings.

Chosen once, here: ``fixed`` (the default), ``volatility`` or ``kelly`` (the simple sizers)
or ``rl`` (the PPO policy in ``QT__SIZING__POLICY_DIR``). An RL artifact that is missing or
tampered, or a policy never judged against the simple sizers, does not stop the process: it is
refused (``load_policy``, ``FallbackReason.UNGATED``), logged, and every entry sizes
fixed-fractional with a ``SizingFallback`` event saying why (fail closed). A policy whose
gate did not pass (``core.ml.rl.gate``) sizes nothing either: the best simple method its
comparison named sizes instead, and the log says why.
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
    account = SizingAccount(recent_trades=s.recent_trades, idle_cap_days=s.idle_cap_days)
    source, account, why = (
        _policy_source(s, account)
        if s.method == "rl"
        else (_simple_source(s.method, s), account, "")
    )
    return SizingService(bus=bus, clock=clock, source=source, cap=s.cap, account=account, why=why)


def _simple_source(method: str, s: SizingSettings) -> SizingSource:
    try:
        if method == "volatility":
            vol = VolTargetParams(target_vol=s.vol_target_pct, floor=s.vol_floor, cap=s.cap)
            return VolatilitySizing(vol)
        if method == "kelly":
            kelly = KellyParams(
                fraction=s.kelly_fraction,
                cap=s.cap,
                min_trades=s.kelly_min_trades,
                without_record=s.kelly_without_record,
            )
            return KellySizing(kelly)
    except ConfigError as e:
        raise ConfigError(f"invalid QT__SIZING__* settings: {e}") from e
    return FixedSizing()


def _policy_source(
    s: SizingSettings, account: SizingAccount
) -> tuple[SizingSource, SizingAccount, str]:
    """Return the source, its account and why it sizes (for /models)."""
    from core.ml.rl.gate import LIVE_METHOD
    from core.ml.rl.policy import load_policy  # torch: only when RL sizing is chosen

    folder = Path(s.policy_dir)
    try:
        policy = load_policy(folder, expected_sha256=s.policy_sha256 or None)
    except ArtifactError as e:
        log.error("sizing: the RL policy in %s is refused, entries size fixed: %s", folder, e)
        return RefusedSizing("rl", FallbackReason.ARTIFACT, str(e)), account, ""
    gate = policy.gate
    if gate is None:
        detail = "it was never judged against the simple sizers (qt evaluate --sizing does)"
        log.error("sizing: the RL policy in %s sizes no entry: %s", folder, detail)
        return RefusedSizing("rl", FallbackReason.UNGATED, detail), account, ""
    if not gate.passed:
        simple = LIVE_METHOD[gate.best_simple]
        log.warning(
            "sizing: the RL policy in %s did not pass its gate, %s sizes: %s",
            folder,
            simple,
            gate.reason,
        )
        why = f"QT__SIZING__METHOD=rl, but its policy did not pass its gate: {gate.reason}"
        return _simple_source(simple, s), account, why
    source = PolicySizing(policy, max_age_ms=round(s.max_age_days * DAY_MS))
    # The account as the policy was trained to see it (core.ml.rl.env.SizingEnvConfig).
    try:
        account = SizingAccount(
            recent_trades=int(policy.env.get("recent_trades", s.recent_trades)),
            idle_cap_days=float(policy.env.get("idle_cap_days", s.idle_cap_days)),
        )
    except (ConfigError, TypeError, ValueError) as e:
        detail = f"its training account settings are not usable: {e}"
        return RefusedSizing("rl", FallbackReason.SPEC_MISMATCH, detail), account, ""
    return source, account, f"the policy in {folder}: {gate.reason}"
