"""QT__UNIVERSE__*: static by default; a volume universe's bad values are named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray ./.env


def test_static_list_is_the_default_and_volume_rules_follow_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not load_settings().universe.dynamic
    monkeypatch.setenv("QT__UNIVERSE__MODE", "volume")
    monkeypatch.setenv("QT__UNIVERSE__TOP_N", "5")
    monkeypatch.setenv("QT__UNIVERSE__MIN_PRICE", "0.01")
    monkeypatch.setenv("QT__UNIVERSE__BLACKLIST", '["BNB/*", "*DOWN/*"]')
    monkeypatch.setenv("QT__UNIVERSE__REFRESH_HOURS", "6")
    u = load_settings().universe
    rules = u.rules("USDT")
    assert u.dynamic and u.refresh_ms == 6 * 3_600_000
    assert (rules.top_n, rules.quote, rules.min_price) == (5, "USDT", 0.01)
    assert rules.blacklist == ("BNB/*", "*DOWN/*")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MODE", "top", r"QT__UNIVERSE__MODE: Input should be 'static' or 'volume'"),
        ("TOP_N", "0", r"QT__UNIVERSE__TOP_N: Input should be greater than or equal to 1"),
        ("MIN_PRICE", "-1", r"QT__UNIVERSE__MIN_PRICE: Input should be greater than or equal"),
        ("MIN_QUOTE_VOLUME", "lots", r"QT__UNIVERSE__MIN_QUOTE_VOLUME: Input should be a valid"),
        ("MIN_LISTING_DAYS", "-3", r"QT__UNIVERSE__MIN_LISTING_DAYS: Input should be greater"),
        ("REFRESH_HOURS", "0", r"QT__UNIVERSE__REFRESH_HOURS: Input should be greater than 0"),
        ("BLACKLIST", '["BTC"]', r"QT__UNIVERSE__BLACKLIST: blacklist pattern 'BTC' must match"),
        ("BLACKLIST", "BTC/*", r"a QT__UNIVERSE__\* value is not valid JSON: .* \(lists are JSON"),
        ("QUOTE", "BTC", r"QT__UNIVERSE__QUOTE=BTC is not QT__TRADING__QUOTE_CURRENCY=USDT"),
    ],
)
def test_bad_universe_settings_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv("QT__UNIVERSE__MODE", "volume")
    monkeypatch.setenv(f"QT__UNIVERSE__{name}", value)
    with pytest.raises(ConfigError, match=message) as err:
        load_settings()
    assert "\n" not in str(err.value)


def test_a_refresh_shorter_than_the_timeframe_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT__UNIVERSE__MODE", "volume")
    monkeypatch.setenv("QT__UNIVERSE__REFRESH_HOURS", "0.5")
    with pytest.raises(ConfigError, match=r"REFRESH_HOURS=0\.5 is shorter than .*TIMEFRAME=1h"):
        load_settings()
