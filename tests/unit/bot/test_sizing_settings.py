"""QT__SIZING__* chooses the sizing method once, at start: contradictions are refused with the
variable to set, and an RL artifact that cannot be loaded is a fallback, not a crash."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.sizing import sizing_from
from core.clock import SimClock
from core.config import load_settings
from core.errors import ConfigError
from core.services.bus import EventBus
from core.services.sizing_service import SizingService
from core.services.sizing_sources import (
    FallbackReason,
    FixedSizing,
    KellySizing,
    RefusedSizing,
    VolatilitySizing,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Callable[..., SizingService]:
    def build(**env: str) -> SizingService:
        for key, value in env.items():
            monkeypatch.setenv(f"QT__SIZING__{key.upper()}", value)
        return sizing_from(load_settings(), bus=EventBus(), clock=SimClock(0))

    return build


def test_fixed_is_the_default(built: Callable[..., SizingService]) -> None:
    service = built()
    assert isinstance(service.source, FixedSizing) and service.cap == 1.5


def test_the_simple_methods_take_their_settings(built: Callable[..., SizingService]) -> None:
    vol = built(method="volatility", vol_target_pct="3", vol_floor="0.5", cap="1.2")
    assert isinstance(vol.source, VolatilitySizing)
    assert (vol.source.params.target_vol, vol.source.params.floor, vol.cap) == (3.0, 0.5, 1.2)
    kelly = built(method="kelly", kelly_fraction="0.5", kelly_min_trades="5", recent_trades="8")
    assert isinstance(kelly.source, KellySizing)
    assert (kelly.source.params.fraction, kelly.source.params.min_trades) == (0.5, 5)
    assert kelly.account.features(0).shape == (6,)


def test_rl_without_a_folder_waits_for_the_registry_champion_sizing_fixed(
    built: Callable[..., SizingService],
) -> None:
    service = built(method="rl")
    assert isinstance(service.source, RefusedSizing) and service.method == "rl"
    assert service.source.reason is FallbackReason.NO_CHAMPION


def test_a_missing_policy_folder_is_a_fallback_not_a_crash(
    built: Callable[..., SizingService], tmp_path: Path
) -> None:
    service = built(method="rl", policy_dir=str(tmp_path / "nowhere"))
    assert isinstance(service.source, RefusedSizing)
    assert service.source.reason is FallbackReason.ARTIFACT and service.method == "rl"


@pytest.mark.parametrize(
    ("env", "said"),
    [
        (
            {"QT__SIZING__METHOD": "rl", "QT__SIZING__POLICY_SHA256": "ab" * 32},
            "QT__SIZING__POLICY_SHA256 requires QT__SIZING__POLICY_DIR",
        ),
        ({"QT__SIZING__METHOD": "ppo"}, "QT__SIZING__METHOD"),
        ({"QT__SIZING__CAP": "0"}, "QT__SIZING__CAP"),
        ({"QT__SIZING__CAP": "1", "QT__SIZING__VOL_FLOOR": "1.2"}, "VOL_FLOOR"),
        (
            {"QT__SIZING__METHOD": "volatility", "QT__RISK__VOL_TARGET_PCT": "2"},
            "target the volatility twice",
        ),
    ],
)
def test_contradictory_sizing_settings_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], said: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=said):
        load_settings()


def test_the_evaluation_walk_takes_its_folds_and_budget_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.sizing_comparison import walk_sizes_config

    monkeypatch.setenv("QT__SIZING__EVAL_FOLDS", "6")
    monkeypatch.setenv("QT__SIZING__EVAL_MIN_TRAIN", "40")
    monkeypatch.setenv("QT__SIZING__EVAL_TIMESTEPS", "4096")
    monkeypatch.setenv("QT__SIZING__EVAL_CONTROL_SEED", "7")
    config = walk_sizes_config(load_settings().sizing)
    assert (config.folds, config.min_train, config.control_seed) == (6, 40, 7)
    assert config.ppo.total_timesteps == 4096
    monkeypatch.setenv("QT__SIZING__EVAL_FOLDS", "1")  # one part would leave nothing to test
    with pytest.raises(ConfigError, match="EVAL_FOLDS"):
        load_settings()


def test_registry_sizing_where_no_learning_manager_runs_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.modes import check_sizer_learns

    monkeypatch.setenv("QT__SIZING__METHOD", "rl")
    monkeypatch.setenv("QT__STRATEGY__PROVIDER", "ema_rsi")
    with pytest.raises(ConfigError, match="needs the ensemble trading"):
        check_sizer_learns(load_settings(), "run")
    monkeypatch.setenv("QT__STRATEGY__PROVIDER", "ensemble")
    check_sizer_learns(load_settings(), "run")  # the learning manager serves it
    monkeypatch.setenv("QT__LEARNING__ENABLED", "false")
    with pytest.raises(ConfigError, match="QT__LEARNING__ENABLED=true"):
        check_sizer_learns(load_settings(), "demo")
