from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from core.config import known_env_names, load_settings, redacted
from core.domain.enums import MarketType, TradingMode
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
ENV_EXAMPLE = ROOT / ".env.example"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray ./.env


def test_env_example_parses_and_lists_every_setting() -> None:
    settings = load_settings(ENV_EXAMPLE)
    assert settings.trading.mode is TradingMode.PAPER
    assert settings.trading.symbols == ["BTC/USDT", "ETH/USDT"]
    assert settings.demo.data_file is None
    listed = set(re.findall(r"^(QT__[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert listed == known_env_names()


def test_defaults_are_paper_spot() -> None:
    settings = load_settings()
    assert settings.trading.mode is TradingMode.PAPER
    assert settings.exchange.market_type is MarketType.SPOT
    assert settings.database_url.endswith("user_data/quantum_trader.sqlite")


def test_live_requires_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT__TRADING__MODE", "live")
    with pytest.raises(ConfigError, match="QT__TRADING__MODE=live requires QT__EXCHANGE__API_KEY"):
        load_settings()


def test_live_requires_confirmation_even_with_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT__TRADING__MODE", "live")
    monkeypatch.setenv("QT__EXCHANGE__API_KEY", "k")
    monkeypatch.setenv("QT__EXCHANGE__API_SECRET", "s")
    with pytest.raises(ConfigError, match="LIVE_CONFIRMATION"):
        load_settings()
    monkeypatch.setenv("QT__TRADING__LIVE_CONFIRMATION", "I accept real-money risk")
    with pytest.raises(ConfigError, match=r"MARKET_TYPE=perp.*no reduce-only orders"):
        load_settings()  # live spot: refused
    monkeypatch.setenv("QT__EXCHANGE__MARKET_TYPE", "perp")
    live = load_settings()
    assert live.trading.mode is TradingMode.LIVE
    assert live.database_url.endswith("user_data/quantum_trader_live.sqlite")  # never paper's


def test_unknown_env_key_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT__TRADING__SYMBOL", "BTC/USDT")
    with pytest.raises(ConfigError, match=r"unknown setting.*QT__TRADING__SYMBOL"):
        load_settings()


def test_unknown_key_in_env_file_rejected(tmp_path: Path) -> None:
    env = tmp_path / "custom.env"
    env.write_text("QT__PAPER__FEE=0.1\n")
    with pytest.raises(ConfigError, match=r"custom.env.*QT__PAPER__FEE"):
        load_settings(env)


def test_bad_values_named_by_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT__PAPER__TAKER_FEE", "-1")
    monkeypatch.setenv("QT__TRADING__TIMEFRAME", "1x")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "QT__PAPER__TAKER_FEE" in str(err.value)
    assert "unknown timeframe '1x'" in str(err.value)


def test_leverage_needs_perp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT__TRADING__MAX_LEVERAGE", "3")
    with pytest.raises(ConfigError, match="MARKET_TYPE=perp"):
        load_settings()
    monkeypatch.setenv("QT__EXCHANGE__MARKET_TYPE", "perp")
    assert load_settings().trading.max_leverage == 3


def test_env_beats_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("QT__TRADING__TIMEFRAME=4h\nQT__DEMO__SEED=3\n")
    monkeypatch.setenv("QT__DEMO__SEED", "11")
    settings = load_settings()
    assert settings.trading.timeframe == "4h"
    assert settings.demo.seed == 11


def test_missing_env_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.env")


def test_redacted_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT__EXCHANGE__API_KEY", "very-secret-key")
    data = redacted(load_settings())
    assert data["exchange"]["api_key"] == "**********"
    assert "very-secret-key" not in repr(data)
    assert data["exchange"]["api_secret"] == ""


def test_exit_settings_reach_the_exit_brain(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.trading import exit_config_from

    monkeypatch.setenv("QT__EXITS__DYNAMIC", "true")
    monkeypatch.setenv("QT__EXITS__DYNAMIC_MAX_SCALE", "3")
    monkeypatch.setenv("QT__EXITS__BREAK_EVEN_BUFFER_PCT", "0.35")
    config = exit_config_from(load_settings().exits)
    assert config.dynamic.enabled and config.dynamic.max_scale == 3
    assert config.break_even.fee_buffer_pct == Decimal("0.35")
    monkeypatch.setenv("QT__EXITS__DYNAMIC_MIN_SCALE", "1.5")
    with pytest.raises(ConfigError, match="QT__EXITS__DYNAMIC_MIN_SCALE"):
        load_settings()


def test_candle_close_exit_settings_reach_the_exit_brain(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.trading import exit_config_from

    config = exit_config_from(load_settings().exits)
    assert not config.trailing.enabled and not config.profit_lock.enabled  # off by default
    assert config.max_hold_hours == 0
    monkeypatch.setenv("QT__EXITS__MAX_HOLD_HOURS", "48")
    monkeypatch.setenv("QT__EXITS__TRAIL_ATR", "2.5")
    monkeypatch.setenv("QT__EXITS__TRAIL_AFTER_TP", "1")
    monkeypatch.setenv("QT__EXITS__PROFIT_LOCK_TRIGGER_PCT", "1.5")
    monkeypatch.setenv("QT__EXITS__PROFIT_LOCK_PCT", "0.3")
    config = exit_config_from(load_settings().exits)
    assert config.max_hold_hours == 48
    assert (config.trailing.atr_multiple, config.trailing.after_tp) == (Decimal("2.5"), 1)
    assert config.profit_lock.lock_pct == Decimal("0.3")
    monkeypatch.setenv("QT__EXITS__PROFIT_LOCK_PCT", "1.5")  # at its trigger: no room
    with pytest.raises(ConfigError, match=r"QT__EXITS__PROFIT_LOCK_PCT .* must be below"):
        load_settings()
    monkeypatch.setenv("QT__EXITS__PROFIT_LOCK_PCT", "0.3")
    monkeypatch.setenv("QT__EXITS__TRAIL_MIN_FACTOR", "0")
    with pytest.raises(ConfigError, match="QT__EXITS__TRAIL_MIN_FACTOR"):
        load_settings()


def test_the_quote_currency_must_be_every_symbols_quote(monkeypatch: pytest.MonkeyPatch) -> None:
    # EUR cash cannot buy a coin quoted in USDT: every entry would be refused, silently.
    monkeypatch.setenv("QT__TRADING__QUOTE_CURRENCY", "EUR")
    with pytest.raises(ConfigError, match=r"QT__TRADING__QUOTE_CURRENCY=EUR.*BTC/USDT, ETH/USDT"):
        load_settings()
    monkeypatch.setenv("QT__TRADING__SYMBOLS", '["BTC/EUR","ETH/USDT"]')
    with pytest.raises(ConfigError, match=r"ETH/USDT") as err:
        load_settings()
    assert "BTC/EUR" not in str(err.value)
    monkeypatch.setenv("QT__TRADING__SYMBOLS", '["BTC/EUR","ETH/EUR"]')
    assert load_settings().trading.quote_currency == "EUR"
    monkeypatch.setenv("QT__TRADING__QUOTE_CURRENCY", "USDT")
    monkeypatch.setenv("QT__TRADING__SYMBOLS", '["BTC/USDT:USDT"]')  # a perp, settled in USDT
    assert load_settings().trading.symbols == ["BTC/USDT:USDT"]


def test_a_symbol_set_from_files_is_checked_like_the_configured_one() -> None:
    settings = load_settings()
    moved = settings.with_market(["SOL/USDT"], "4h")
    assert (moved.trading.symbols, moved.trading.timeframe) == (["SOL/USDT"], "4h")
    with pytest.raises(ConfigError, match=r"QT__TRADING__QUOTE_CURRENCY=USDT.*BTC/EUR"):
        settings.with_market(["BTC/EUR"], "1h")


def test_short_selling_needs_perp(monkeypatch: pytest.MonkeyPatch) -> None:
    # Spot cannot sell what it does not hold: the setting used to be dropped without a word.
    monkeypatch.setenv("QT__RISK__ALLOW_SHORT", "true")
    with pytest.raises(ConfigError, match=r"ALLOW_SHORT=true requires .*MARKET_TYPE=perp"):
        load_settings()
    monkeypatch.setenv("QT__EXCHANGE__MARKET_TYPE", "perp")
    assert load_settings().risk.allow_short


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [("QT__MARKET__SYMBOLS", "{bad", "MARKET"), ("QT__TRADING__SYMBOLS", "[bad", "TRADING")],
)
def test_a_json_value_that_does_not_parse_is_a_config_error_naming_the_section(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, field: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=rf"a QT__{field}__\* value is not valid JSON: Expect"):
        load_settings()


@pytest.mark.parametrize(
    "override",
    [{"price_tick": "1e-25"}, {"amount_step": "1e10"}, {"min_notional": "1e30"}],
)
def test_a_symbol_override_outside_any_venues_grid_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, override: dict[str, str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="QT__MARKET__SYMBOLS__X/USDT__"):
        load_settings(market={"symbols": {"X/USDT": override}})


def test_the_ensemble_is_a_strategy_provider_with_bounded_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QT__STRATEGY__PROVIDER", "ensemble")
    monkeypatch.setenv("QT__STRATEGY__ENSEMBLE_DISABLED", '["lgbm"]')
    settings = load_settings()
    assert settings.strategy.provider == "ensemble"
    assert settings.strategy.ensemble_disabled == ["lgbm"]
    monkeypatch.setenv("QT__STRATEGY__ENSEMBLE_MIN_WEIGHT", "0.6")
    monkeypatch.setenv("QT__STRATEGY__ENSEMBLE_MAX_WEIGHT", "0.5")
    with pytest.raises(ConfigError, match=r"ensemble_min_weight \(0.6\) is above"):
        load_settings()
    monkeypatch.delenv("QT__STRATEGY__ENSEMBLE_MIN_WEIGHT")
    monkeypatch.setenv("QT__STRATEGY__ENSEMBLE_THRESHOLD", "0.5")  # both sides would fire
    with pytest.raises(ConfigError, match="ENSEMBLE_THRESHOLD"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "demo", "run"),
    [(None, "ensemble", "ema_rsi"), ("", "ensemble", "ema_rsi"), ("ema_rsi", "ema_rsi", "ema_rsi"),
     ("ensemble", "ensemble", "ensemble")],
)  # fmt: skip
def test_the_demo_trades_the_ensemble_unless_a_provider_is_set(
    monkeypatch: pytest.MonkeyPatch, value: str | None, demo: str, run: str
) -> None:
    if value is not None:
        monkeypatch.setenv("QT__STRATEGY__PROVIDER", value)
    strategy = load_settings().strategy
    assert (strategy.provider_in("demo"), strategy.provider_in("run")) == (demo, run)
    assert strategy.provider_in("backtest") == run


def test_member_cadences_default_the_torch_members_to_four_weeks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.learning import cadences

    # the members not named (the GBDTs) are trained at every scheduled training
    assert cadences(load_settings()) == {"nhits": 672 * 3_600_000, "patchtst": 672 * 3_600_000}
    monkeypatch.setenv("QT__MODELS__CADENCE_HOURS", '{"nhits": 0}')
    with pytest.raises(ConfigError, match=r"QT__MODELS__CADENCE_HOURS.*> 0 hours"):
        load_settings()
