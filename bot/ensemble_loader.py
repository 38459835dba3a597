"""Load the serving version of each member into the ensemble provider.

A member serves its champion (the learning manager's, ``core.services.learning``), or its
newest candidate when it never had one (``qt models train``). Every artifact is verified
against the sha256 the registry recorded before it is parsed: a tampered or missing file is
never traded on. A backtest (``strict``) refuses the whole ensemble with one line naming the
file; a trading process falls back to the member's earlier champion, saying so, and with
none trades the members that load (or its baseline: ``bot.modes.run_provider``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bot.trading import ensemble_config_from, exit_config_from
from core.config import Settings
from core.domain.model_versions import ModelStatus, ModelVersion, earlier_champions
from core.errors import ArtifactError, ConfigError, DataError
from core.ml.ensemble import EnsembleMember, EnsembleProvider
from core.ml.features import feature_set
from core.ml.health import healthy_on_validation
from core.ml.members import MEMBERS
from core.ml.versions import LoadedVersion, load_version
from core.ports import ModelVersionRepo

log = logging.getLogger(__name__)

NO_VERSIONS = (
    "the ensemble has no saved model versions (of members not disabled): run "
    "`qt models train` first"
)


async def load_ensemble(settings: Settings, *, after_training: bool = False) -> EnsembleProvider:
    """Return the ensemble of the newest version of every member not disabled, from the
    configured database; raise ``DataError`` when there is none. ``after_training``: serving
    only candles that close after their training ended."""
    provider = await saved_ensemble(settings, after_training=after_training, strict=True)
    if provider is None:
        raise DataError(NO_VERSIONS)
    return provider


async def saved_ensemble(
    settings: Settings, *, after_training: bool = False, strict: bool = False
) -> EnsembleProvider | None:
    """Return the configured database's ensemble (``newest_ensemble``), None when no
    version serves; ``strict``: a tampered or missing artifact raises ``ArtifactError``."""
    from storage import open_storage

    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        return await newest_ensemble(
            settings,
            storage.model_versions,
            settings.app.data_dir,
            after_training=after_training,
            strict=strict,
        )
    finally:
        await storage.stop()


async def newest_ensemble(
    settings: Settings,
    repo: ModelVersionRepo,
    data_dir: Path,
    *,
    after_training: bool = False,
    strict: bool = False,
) -> EnsembleProvider | None:
    """Return the ensemble of every member not disabled that has a version to serve
    (``serving_candidates``: its champion, else an earlier champion when the champion's files
    are unreadable, else its newest candidate when it never had one), their files verified
    under ``data_dir`` (None: none has); ``after_training``: serving only candles that close
    after their training ended (a record kept of its signals, the meta-strategy's, stays
    out of sample). A version passed over for unreadable files is logged as a warning
    (``strict``: raises its ``ArtifactError``)."""
    config = ensemble_config_from(settings)
    members = []
    for name in sorted(MEMBERS):
        if name in config.disabled:
            continue
        loaded = await load_serving(repo, data_dir, name, strict=strict)
        if loaded is None:
            continue
        members.append(ensemble_member(loaded))
    if not members:
        return None
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


def learning_members(settings: Settings) -> tuple[str, ...]:
    """Return the members the manager trains: the ensemble's, less the disabled ones (a
    disabled name no member has, a typo that would disable nothing: ``ConfigError``)."""
    disabled = set(settings.strategy.ensemble_disabled)
    unknown = sorted(disabled - set(MEMBERS))
    if unknown:
        raise ConfigError(
            f"QT__STRATEGY__ENSEMBLE_DISABLED: unknown member {', '.join(unknown)}; known: "
            f"{', '.join(sorted(MEMBERS))}"
        )
    return tuple(m for m in settings.models.members if m not in disabled)


def ensemble_member(loaded: LoadedVersion) -> EnsembleMember:
    """Return a loaded version as the ensemble's member."""
    v = loaded.version
    return EnsembleMember(
        name=v.member,
        member=loaded.artifact.member,
        trained_until_ms=v.train_end_ms,
        version_id=v.id,
        healthy_on_validation=healthy_on_validation(v.metrics),
    )


async def serving_candidates(repo: ModelVersionRepo, member: str) -> list[ModelVersion]:
    """Return the versions of ``member`` that may serve, best first: its champion, then the
    earlier champions (``earlier_champions``: the most recently serving first); a member
    never promoted: its newest candidate (trained by ``qt models train``, or a registry from
    before the learning manager). A rejected or retired candidate never serves."""
    versions = await repo.list_versions(member)
    champions = [v for v in versions if v.status is ModelStatus.CHAMPION]
    earlier = earlier_champions(versions, champions[0].id if champions else "")
    if champions or earlier:
        return [*champions, *earlier]
    candidates = [v for v in versions if v.status is ModelStatus.CANDIDATE]
    return candidates[-1:]


async def load_serving(
    repo: ModelVersionRepo, data_dir: Path, member: str, *, strict: bool = False
) -> LoadedVersion | None:
    """Return the first of ``serving_candidates`` whose files verify (None: none does);
    each passed over is logged with why (``strict``: the first refused raises)."""
    for version in await serving_candidates(repo, member):
        try:
            return await asyncio.to_thread(load_version, data_dir, version)
        except ArtifactError as exc:
            if strict:
                raise
            log.warning("model version %s is not served: %s", version.id, exc)
    return None


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
