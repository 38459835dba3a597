"""Settings -> the mean-reversion baseline, the meta-strategy and the one regime config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.trading import provider_from, regime_config_from
from core.brains.regime import RegimeConfig
from core.config import Settings, load_settings
from core.errors import ConfigError
from core.services.signal_book import SignalBook
from core.signals.ema_rsi import EmaRsiCross
from core.signals.mean_reversion import MeanReversion
from core.signals.meta import MetaStrategy


def settings_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_mean_reversion_and_meta_are_built_from_their_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {
        "QT__STRATEGY__PROVIDER": "mean_reversion",
        "QT__STRATEGY__MR_PERIOD": "30",
        "QT__STRATEGY__MR_ENTRY_Z": "2.5",
    }
    mr = provider_from(settings_with(monkeypatch, tmp_path, **env))
    assert isinstance(mr, MeanReversion)
    assert (mr.config.period, mr.config.entry_z, mr.config.allow_short) == (30, 2.5, False)

    env = {
        "QT__STRATEGY__PROVIDER": "meta",
        "QT__STRATEGY__META_MIN_RECORD": "7",
        "QT__STRATEGY__META_FALLBACK": "mean_reversion",
        "QT__REGIME__TREND_ADX": "30",
    }
    settings = settings_with(monkeypatch, tmp_path, **env)
    meta = provider_from(settings)
    assert isinstance(meta, MetaStrategy)
    assert [p.name for p in meta.candidates] == ["ema_rsi", "mean_reversion"]
    assert (meta.config.min_record, meta.config.fallback) == (7, "mean_reversion")
    assert meta.config.regime == regime_config_from(settings) == RegimeConfig(trend_adx=30.0)


def test_bad_regime_and_meta_settings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="QT__REGIME__CONFIRM: Input should be greater"):
        settings_with(monkeypatch, tmp_path, QT__REGIME__CONFIRM="0")
    settings = settings_with(
        monkeypatch,
        tmp_path,
        QT__STRATEGY__PROVIDER="meta",
        QT__STRATEGY__META_WINDOW="3",
        QT__STRATEGY__META_MIN_RECORD="5",
    )
    with pytest.raises(ConfigError, match=r"^invalid QT__STRATEGY__META_\* settings: meta window"):
        provider_from(settings)
    settings = settings_with(
        monkeypatch, tmp_path, QT__STRATEGY__MR_ENTRY_Z="1", QT__STRATEGY__MR_EXIT_Z="1"
    )
    with pytest.raises(ConfigError, match=r"^invalid QT__STRATEGY__MR_\* settings: need 0"):
        provider_from(
            settings.model_copy(
                update={
                    "strategy": settings.strategy.model_copy(update={"provider": "mean_reversion"})
                }
            )
        )


def test_a_regime_warm_up_longer_than_a_process_keeps_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A running process keeps 5,000 candles a symbol: with a longer warm-up its regimes would
    stay unknown for ever in demo and run, while a backtest (the whole series) knows them."""
    settings = settings_with(monkeypatch, tmp_path, QT__REGIME__VOL_HISTORY="5000")
    with pytest.raises(ConfigError, match=r"^invalid QT__REGIME__\* settings: .*warm-up"):
        regime_config_from(settings)
    with pytest.raises(ValueError, match="regime warm-up"):
        SignalBook(EmaRsiCross(), regime=RegimeConfig(vol_history=5000))
