"""``qt backtest --strategy ensemble``: the newest saved versions trade out of sample only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.trading import provider_from
from core.config import load_settings
from core.errors import ConfigError
from tests.integration.test_cli import Cli, flat
from tests.integration.test_cli import cli as cli  # the fixture
from tests.integration.test_cli_models import candle_file, one_line, train

ENSEMBLE = ("--strategy", "ensemble", "--no-charts")


def test_the_ensemble_trades_after_its_training_window_and_is_refused_inside_it(
    cli: Cli, tmp_path: Path
) -> None:
    data = candle_file(tmp_path)  # 2024-01-01 .. 2024-03-15
    train(cli, data)  # up to 2024-02-20

    in_sample = cli("backtest", "--data", str(data), *ENSEMBLE)
    assert in_sample.exit_code != 0
    line = one_line(in_sample.stderr)
    assert "trading from 2024-01-01 00:00 would be in sample" in line
    assert "--timerange 20240220-" in line and "walk-forward retrain" in line
    assert "candles/s" not in in_sample.stdout

    outside = cli("backtest", "--data", str(data), *ENSEMBLE, "--timerange", "20240220-")
    assert outside.exit_code == 0, outside.output
    assert "ensemble of lgbm-" in flat(outside.stdout) and "candles/s" in outside.stdout

    model = next((cli.data_dir / "models" / "lgbm").glob("*/model.txt"))
    model.write_bytes(model.read_bytes() + b"\n")
    tampered = cli("backtest", "--data", str(data), *ENSEMBLE, "--timerange", "20240220-")
    assert tampered.exit_code != 0
    assert "truncated or altered" in one_line(tampered.stderr)


def test_a_walk_forward_backtest_needs_no_saved_models_and_says_what_it_trained(
    cli: Cli, tmp_path: Path
) -> None:
    data = candle_file(tmp_path)  # 2024-01-01 .. 2024-03-15, no version saved
    env = {"QT__MODELS__RETRAIN_HOURS": "240", "QT__MODELS__TREES": "10"}
    result = cli(
        "backtest",
        "--data",
        str(data),
        *ENSEMBLE,
        "--walk-forward",
        "--timerange",
        "20240201-",
        **env,
    )
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert (
        "walk-forward ensemble of xgb, lgbm: the learning manager checks every 240 market "
        "hours, trains every 168 h (given 168 new candles)" in out
    )
    # Checked every 10 days from 2024-02-01 (the last close, 2024-03-15 00:00, ends the run):
    # the first check's candles fail the leak guard by chance, which the report says; the
    # next trains the first champions, the later ones candidates the gate judges.
    assert (
        "walk-forward (the learning manager): 4 check(s), 4 training run(s), 6 model(s) "
        "trained;" in out
    )
    assert "2 first champion, 1 not trained, 4 rejected; served from 2024-02-21 00:00 UTC" in out
    assert (
        "not trained 1: 2024-02-11 00:00 every member: BTC/USDT: the leak guard refused the "
        "features" in out
    )
    assert "rejected 4: 2024-03-02 00:00 xgb: not significant: improvement" in out
    report = json.loads(next((cli.data_dir / "backtests").glob("backtest-*.json")).read_text())
    assert report["learning"]["counts"] == {
        "drifted": 2,
        "first champion": 2,
        "not trained": 1,
        "rejected": 4,
    }
    assert report["learning"]["checks"] == 4 and len(report["learning"]["decisions"]) == 9
    assert "candles/s" in out

    ema = cli("backtest", "--data", str(data), "--strategy", "ema_rsi", "--walk-forward")
    assert ema.exit_code != 0 and "needs --strategy ensemble" in flat(ema.output)


def test_an_ensemble_backtest_without_versions_is_one_line(cli: Cli, tmp_path: Path) -> None:
    result = cli("backtest", "--data", str(candle_file(tmp_path, 50)), *ENSEMBLE)
    assert result.exit_code != 0
    assert "no saved model versions" in one_line(result.stderr)


def test_provider_from_builds_the_baseline_only_the_modes_load_the_ensemble(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.env
    settings = load_settings(strategy={"provider": "ensemble"})
    with pytest.raises(ConfigError, match=r"loaded from its saved models by the mode"):
        provider_from(settings)
