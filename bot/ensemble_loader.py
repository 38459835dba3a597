"""Load the newest saved version of each member into the ensemble provider.

Every artifact is verified against the sha256 the registry recorded before it is parsed: a
tampered or missing file refuses the whole ensemble with one line naming it, rather than
trading on a model nobody trained.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.trading import ensemble_config_from, exit_config_from
from core.config import Settings
from core.errors import DataError
from core.ml.ensemble import EnsembleMember, EnsembleProvider
from core.ml.features import feature_set
from core.ml.health import healthy_on_validation
from core.ml.members import MEMBERS
from core.ml.versions import load_version
from core.ports import ModelVersionRepo

NO_VERSIONS = (
    "the ensemble has no saved model versions (of members not disabled): run "
    "`qt models train` first"
)


async def load_ensemble(settings: Settings, *, after_training: bool = False) -> EnsembleProvider:
    """Return the ensemble of the newest version of every member not disabled, from the
    configured database; raise ``DataError`` when there is none. ``after_training``: serving
    only candles that close after their training ended."""
    provider = await saved_ensemble(settings, after_training=after_training)
    if provider is None:
        raise DataError(NO_VERSIONS)
    return provider


async def saved_ensemble(
    settings: Settings, *, after_training: bool = False
) -> EnsembleProvider | None:
    """Return ``load_ensemble``'s ensemble, or None when no version is saved yet (a
    tampered or missing artifact still raises ``ArtifactError``)."""
    from storage import open_storage

    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        return await newest_ensemble(
            settings, storage.model_versions, settings.app.data_dir, after_training=after_training
        )
    finally:
        await storage.stop()


async def newest_ensemble(
    settings: Settings, repo: ModelVersionRepo, data_dir: Path, *, after_training: bool = False
) -> EnsembleProvider | None:
    """Return the ensemble of the newest version in ``repo`` of every member not disabled,
    their files verified under ``data_dir`` (None: no version saved yet); ``after_training``:
    serving only candles that close after their training ended (a record kept of its
    signals, the meta-strategy's, stays out of sample)."""
    config = ensemble_config_from(settings)
    versions = [
        v
        for name in sorted(MEMBERS)
        if name not in config.disabled and (v := await repo.newest(name)) is not None
    ]
    if not versions:
        return None
    members = []
    for version in versions:
        loaded = await asyncio.to_thread(load_version, data_dir, version)
        members.append(
            EnsembleMember(
                name=version.member,
                member=loaded.artifact.member,
                trained_until_ms=version.train_end_ms,
                version_id=version.id,
                healthy_on_validation=healthy_on_validation(version.metrics),
            )
        )
    provider = EnsembleProvider(
        [] if after_training else members,
        config,
        exits=exit_config_from(settings.exits),
        timeframe=settings.trading.timeframe,
        walk_forward=after_training,
    )
    if after_training:
        provider.add_set(members, max(m.trained_until_ms for m in members))
    return provider


def refuse_other_features(provider: EnsembleProvider, timeframe: str) -> None:
    """Raise ``DataError`` when a loaded member was trained on another feature set than the
    one computed on ``timeframe`` candles: the ensemble would leave it out of every decision
    (all of them: it would never trade), which a live process says nowhere."""
    wanted = feature_set(provider.features, timeframe).hash
    other = [
        m.version_id
        for m in provider.members
        if (schema := m.member.features) is not None and schema.feature_set_hash != wanted
    ]
    if other:
        raise DataError(
            f"the saved models {', '.join(other)} were trained on another feature set than "
            f"the one computed on {timeframe} candles (another timeframe, or features changed "
            f"since): train them on {timeframe} candles (`qt models train`) and restart"
        )
