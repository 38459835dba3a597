"""``qt backtest --strategy meta|mean_reversion``: the report says which provider each trade
came from; without saved models or a walk-forward the meta-strategy says it chooses among
the baselines, with ``--walk-forward`` the ensemble joins as a candidate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.cli_backtest import chosen_provider
from core.config import load_settings
from core.market.importers import read_candle_file
from core.ml.ensemble import EnsembleProvider
from core.signals.meta import MetaStrategy
from tests.integration.test_cli import Cli, flat
from tests.integration.test_cli import cli as cli  # the fixture
from tests.integration.test_cli_models import UNTIL_MS, candle_file, train

QUICK_REGIMES = {"QT__REGIME__VOL_HISTORY": "200", "QT__STRATEGY__META_MIN_RECORD": "3"}


def test_meta_without_models_chooses_among_the_baselines_and_says_so(
    cli: Cli, tmp_path: Path
) -> None:
    data = candle_file(tmp_path)
    result = cli(
        "backtest", "--data", str(data), "--strategy", "meta", "--no-charts", **QUICK_REGIMES
    )
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "the meta-strategy chooses among ema_rsi and mean_reversion only" in out
    assert "Per provider" in out and "Per regime at entry" in out and "Per exit profile" in out
    assert "regimes: " in out and " change(s) over 1 symbol(s), into " in out
    assert "meta-strategy: the pick changed " in out
    csv_file = next((cli.data_dir / "backtests").glob("*-trades.csv"))
    header = csv_file.read_text(encoding="utf-8").splitlines()[0]
    assert ",provider,regime,exit_profile,p_up,members,top_features" in header


def test_mean_reversion_trades_alone(cli: Cli, tmp_path: Path) -> None:
    data = candle_file(tmp_path)
    result = cli("backtest", "--data", str(data), "--strategy", "mean_reversion", "--no-charts")
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "mean_reversion" in out and "meta-strategy" not in out


def test_meta_walks_the_ensemble_forward_as_a_candidate(cli: Cli, tmp_path: Path) -> None:
    data = candle_file(tmp_path)
    env = {"QT__MODELS__RETRAIN_HOURS": "480", "QT__MODELS__TREES": "10", **QUICK_REGIMES}
    result = cli(
        "backtest",
        "--data",
        str(data),
        "--strategy",
        "meta",
        "--walk-forward",
        "--no-charts",
        "--timerange",
        "20240201-",
        **env,
    )
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "walk-forward ensemble of xgb, lgbm: the learning manager checks every 480" in out
    assert "walk-forward (the learning manager): " in out and "Per provider" in out
    assert "chooses among ema_rsi and mean_reversion only" not in out


def test_an_unknown_strategy_lists_the_known_ones(cli: Cli, tmp_path: Path) -> None:
    result = cli("backtest", "--data", str(candle_file(tmp_path)), "--strategy", "magic")
    assert result.exit_code != 0
    assert "expected ema_rsi, mean_reversion, ensemble, meta" in flat(result.output)


def test_saved_models_enter_the_meta_record_from_the_end_of_their_training_only(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On its training candles a saved model is in sample: outcomes of its entries there would
    make its record, and so the meta-strategy's picks, look better than it is."""
    data = candle_file(tmp_path)  # 2024-01-01 .. 2024-03-15
    train(cli, data)  # up to 2024-02-20
    env = {
        "QT__APP__DATA_DIR": str(cli.data_dir),
        "QT__STRATEGY__PROVIDER": "meta",
        "QT__EXCHANGE__MARKET_TYPE": "perp",  # shorts: the tiny models lean down throughout
        "QT__RISK__ALLOW_SHORT": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    meta, trainer = asyncio.run(chosen_provider(load_settings(), walk_forward=False))
    assert isinstance(meta, MetaStrategy) and trainer is None
    [ensemble] = [p for p in meta.candidates if isinstance(p, EnsembleProvider)]
    series = read_candle_file(data).series
    entries = ensemble.compute(series).entry != 0
    trained_until = max(m.trained_until_ms for m in ensemble.members)
    assert UNTIL_MS - 86_400_000 < trained_until <= UNTIL_MS  # trained up to 2024-02-20
    closed_in_training = series.ts_ms + 3_600_000 <= trained_until
    assert not entries[closed_in_training].any()
    assert entries[~closed_in_training].any(), "no entry after training: the check is empty"
