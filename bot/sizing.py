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
from typing import TYPE_CHECKING

from core.brains.sizing_policies import KellyParams, VolTargetParams
from core.clock import Clock
from core.config import Settings, SizingSettings
from core.domain.model_versions import ModelVersion
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

if TYPE_CHECKING:
    from core.ml.rl.policy import SizingPolicy

log = logging.getLogger(__name__)


def sizing_from(settings: Settings, *, bus: EventBus, clock: Clock) -> SizingService:
    """Return the sizing service the settings choose (see module docstring)."""
    s = settings.sizing
    account = SizingAccount(recent_trades=s.recent_trades, idle_cap_days=s.idle_cap_days)
    if s.method != "rl":
        source, why = _simple_source(s.method, s), ""
    elif not s.policy_dir:  # the registry's champion: the learning manager serves it
        source, why = no_champion("no rl_sizer champion was served yet"), ""
    else:
        source, account, why = _policy_source(s, account)
    return SizingService(bus=bus, clock=clock, source=source, cap=s.cap, account=account, why=why)


def no_champion(why: str) -> SizingSource:
    """Return what sizes while the registry has no usable RL sizer: fixed, refusing ``rl``."""
    return RefusedSizing("rl", FallbackReason.NO_CHAMPION, why)


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
    """Return the source of the policy folder, its account and why it sizes (for /models)."""
    from core.ml.rl.policy import load_policy  # torch: only when RL sizing is chosen

    folder = Path(s.policy_dir)
    try:
        policy = load_policy(folder, expected_sha256=s.policy_sha256 or None)
    except ArtifactError as e:
        log.error("sizing: the RL policy in %s is refused, entries size fixed: %s", folder, e)
        return RefusedSizing("rl", FallbackReason.ARTIFACT, str(e)), account, ""
    # The account as the policy was trained to see it (core.ml.rl.env.SizingEnvConfig).
    try:
        account = policy_account(policy, s)
    except (ConfigError, TypeError, ValueError) as e:
        detail = f"its training account settings are not usable: {e}"
        return RefusedSizing("rl", FallbackReason.SPEC_MISMATCH, detail), account, ""
    source, why = policy_source(policy, s, f"the policy in {folder}")
    return source, account, why


def policy_account(policy: SizingPolicy, s: SizingSettings) -> SizingAccount:
    """Return the account the policy was trained to see (``ValueError``: not usable)."""
    return SizingAccount(
        recent_trades=int(policy.env.get("recent_trades", s.recent_trades)),
        idle_cap_days=float(policy.env.get("idle_cap_days", s.idle_cap_days)),
    )


def policy_source(policy: SizingPolicy, s: SizingSettings, where: str) -> tuple[SizingSource, str]:
    """Return what sizes for a loaded policy and why: the policy when its gate passed, the
    best simple method its comparison named when not, fixed (refused) when never judged."""
    from core.ml.rl.gate import LIVE_METHOD

    gate = policy.gate
    if gate is None:
        detail = "it was never judged against the simple sizers (qt evaluate --sizing does)"
        log.error("sizing: %s sizes no entry: %s", where, detail)
        return RefusedSizing("rl", FallbackReason.UNGATED, detail), ""
    if not gate.passed:
        simple = LIVE_METHOD[gate.best_simple]
        log.warning("sizing: %s did not pass its gate, %s sizes: %s", where, simple, gate.reason)
        why = f"QT__SIZING__METHOD=rl, but its policy did not pass its gate: {gate.reason}"
        return _simple_source(simple, s), why
    return PolicySizing(
        policy, max_age_ms=round(s.max_age_days * DAY_MS)
    ), f"{where}: {gate.reason}"


def registry_source(
    policy: SizingPolicy, version: ModelVersion, s: SizingSettings, account: SizingAccount
) -> tuple[SizingSource, str]:
    """Return what sizes for a registry version of the RL sizer (``SizerSources.live``):
    refused when it was trained to see another account than this process keeps."""
    try:
        wanted = policy_account(policy, s)
    except (ConfigError, TypeError, ValueError) as e:
        detail = f"{version.id}: its training account settings are not usable: {e}"
        return RefusedSizing("rl", FallbackReason.SPEC_MISMATCH, detail), ""
    if (wanted.recent_trades, wanted.idle_cap_days) != (
        account.recent_trades,
        account.idle_cap_days,
    ):
        detail = (
            f"{version.id} was trained on an account of {wanted.recent_trades} recent trades "
            f"and {wanted.idle_cap_days:g} idle days, this process keeps "
            f"{account.recent_trades} and {account.idle_cap_days:g} (QT__SIZING__RECENT_TRADES, "
            "QT__SIZING__IDLE_CAP_DAYS)"
        )
        return RefusedSizing("rl", FallbackReason.SPEC_MISMATCH, detail), ""
    return policy_source(policy, s, f"the registry's {version.id}")
