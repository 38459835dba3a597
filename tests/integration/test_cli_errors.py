"""``qt`` refuses bad outputs and unusable databases with one clear line (exit 2), never a
traceback, and checks a backtest's outputs before it runs."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli import Cli, candles, flat, write_csv
from tests.integration.test_cli import cli as cli  # the fixture (re-exported: pytest finds it)

UNWRITABLE = Path("/sys/qt-backtests")  # creating anything in sysfs fails, even as root


def _backtest_args(tmp_path: Path) -> list[str]:
    data = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 300, seed=7))
    return ["backtest", "--data", str(data), "--no-charts"]


def test_backtest_outputs_are_checked_before_it_runs(cli: Cli, tmp_path: Path) -> None:
    a_file = tmp_path / "report.txt"
    a_file.write_text("not a folder")
    cases = [
        (["--out", str(a_file)], f"{a_file} is a file"),
        (["--out", str(a_file / "deeper")], f"{a_file} is a file"),
        (["--out", str(UNWRITABLE)], f"cannot write the report to {UNWRITABLE}"),
        (["--name", "../escape"], "run_name '../escape' must be"),
    ]
    for extra, message in cases:
        result = cli(*_backtest_args(tmp_path), *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in flat(result.stderr), extra
        assert "candles/s" not in result.stdout  # refused before the backtest ran
        assert "Traceback" not in result.output
