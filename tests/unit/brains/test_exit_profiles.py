"""Regime exit profiles: which ladder a regime gets, and bad profile settings as one line."""

from __future__ import annotations

import json
import os
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.trading import exit_config_from, exit_profiles_from
from core.brains.exit_config import ExitConfig, Target
from core.brains.exit_profiles import DEFAULT_PROFILE, ExitProfiles
from core.brains.regime import Regime
from core.config import Settings, load_settings
from core.errors import ConfigError

SEED = ExitConfig()
WIDE = ExitConfig(stop=Target.pct(3))
TIGHT = ExitConfig(stop=Target.pct(1))


def test_a_label_profile_wins_over_its_group_and_the_rest_trade_the_seed_ladder() -> None:
    profiles = ExitProfiles(default=SEED, by_name={"trend": WIDE, "range_low_vol": TIGHT})
    assert profiles.name_for(Regime.TREND_LOW_VOL) == "trend"
    assert profiles.name_for(Regime.TREND_HIGH_VOL) == "trend"
    assert profiles.name_for(Regime.RANGE_LOW_VOL) == "range_low_vol"
    assert profiles.name_for(Regime.RANGE_HIGH_VOL) == DEFAULT_PROFILE
    assert profiles.name_for(Regime.UNKNOWN) == DEFAULT_PROFILE
    assert profiles.config("trend") is WIDE and profiles.config(DEFAULT_PROFILE) is SEED
    assert profiles.config("range") is SEED  # a name no longer configured: the seed ladder


def settings_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, profiles: object) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QT__EXITS__STOP_PCT", "2.5")
    monkeypatch.setenv("QT__EXITS__PROFILES", json.dumps(profiles))
    return load_settings()


def test_a_profile_keeps_the_seed_ladders_fields_it_leaves_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(monkeypatch, tmp_path, {"trend": {"tp_pcts": [2, 4, 8]}})
    [(name, trend)] = exit_profiles_from(settings.exits).items()
    seed = exit_config_from(settings.exits)
    assert name == "trend"
    assert [leg.target.value for leg in trend.legs] == [D(2), D(4), D(8)]
    assert [leg.fraction for leg in trend.legs] == [leg.fraction for leg in seed.legs]
    assert trend.stop == seed.stop == Target.pct(D("2.5"))


@pytest.mark.parametrize(
    ("profiles", "message"),
    [
        ({"trendy": {}}, "QT__EXITS__PROFILES: unknown regime trendy; known: trend_low_vol"),
        ({"range": {"tp_pcts": [1, 2]}}, "QT__EXITS__PROFILES[range]: exits.tp_pcts (2)"),
        ({"trend": {"stop_pct": 0}}, "QT__EXITS__PROFILES__TREND__STOP_PCT: Input should be"),
        ({"trend": {"tp_pct": [1]}}, "QT__EXITS__PROFILES__TREND__TP_PCT: Extra inputs"),
    ],
)
def test_bad_profile_settings_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, profiles: object, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_with(monkeypatch, tmp_path, profiles)
    text = str(caught.value)
    assert "\n" not in text and message in text


def test_a_ladder_the_exit_brain_refuses_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(monkeypatch, tmp_path, {"trend": {"tp_pcts": [3, 2, 4]}})
    with pytest.raises(ConfigError, match=r"^invalid QT__EXITS__PROFILES\[trend\]: targets must"):
        exit_profiles_from(settings.exits)


@pytest.mark.parametrize(
    "ladder", [{"tp_pcts": [-1, 2, 4]}, {"tp_pcts": [0, 2, 4]}, {"tp_fractions": [0, 0.5, 0.5]}]
)
def test_a_leg_the_exit_brain_refuses_is_one_clear_line_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ladder: dict[str, list[float]]
) -> None:
    settings = settings_with(monkeypatch, tmp_path, {"trend": ladder})
    with pytest.raises(ConfigError, match=r"^invalid QT__EXITS__PROFILES\[trend\]: "):
        exit_profiles_from(settings.exits)
    seed = settings.exits.model_copy(update=ladder)  # the seed ladder's legs: the same line
    with pytest.raises(ConfigError, match=r"^invalid QT__EXITS__\* settings: "):
        exit_config_from(seed)
