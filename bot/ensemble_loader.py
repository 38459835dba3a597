"""Load the newest saved version of each member into the ensemble provider.

Every artifact is verified against the sha256 the registry recorded before it is parsed: a
tampered or missing file refuses the whole ensemble with one line naming it, rather than
trading on a model nobody trained.
"""

from __future__ import annotations

import asyncio

from bot.trading import ensemble_config_from, exit_config_from
from core.config import Settings
from core.errors import DataError
from core.ml.ensemble import EnsembleMember, EnsembleProvider
from core.ml.members import MEMBERS
from core.ml.versions import load_version


async def load_ensemble(settings: Settings, *, after_training: bool = False) -> EnsembleProvider:
    """Return the ensemble of the newest version of every member not disabled;
    ``after_training``: serving only candles that close after their training ended."""
    from storage import open_storage

    config = ensemble_config_from(settings)
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        versions = [
            v
            for name in sorted(MEMBERS)
            if name not in config.disabled
            and (v := await storage.model_versions.newest(name)) is not None
        ]
    finally:
        await storage.stop()
    if not versions:
        raise DataError(
            "the ensemble has no saved model versions (of members not disabled): run "
            "`qt models train` first"
        )
    members = []
    for version in versions:
        loaded = await asyncio.to_thread(load_version, settings.app.data_dir, version)
        members.append(
            EnsembleMember(
                name=version.member,
                member=loaded.artifact.member,
                trained_until_ms=version.train_end_ms,
                version_id=version.id,
                healthy_on_validation=version.metrics.get("healthy", 1.0) >= 1.0,
            )
        )
    provider = EnsembleProvider(
        [] if after_training else members,
        config,
        exits=exit_config_from(settings.exits),
        timeframe=settings.trading.timeframe,
        walk_forward=after_training,
    )
    if after_training:  # a record kept of its signals (the meta-strategy's): out of sample
        provider.add_set(members, max(m.trained_until_ms for m in members))
    return provider
