"""``qt models train|list`` end to end, offline.

Training spawns worker processes, as in production; the members are kept tiny (10 trees, one
thread) so a training run takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.market.synthetic import generate_candles
from tests.integration.test_cli import T0, Cli, flat, write_csv
from tests.integration.test_cli import cli as cli  # the fixture

TINY = ("--trees", "10", "--threads", "1")
UNTIL_MS = 1_708_387_200_000  # 2024-02-20


def candle_file(tmp_path: Path, n: int = 1800) -> Path:
    """Return a 1h BTC/USDT file from 2024-01-01 (1,800 candles: to 2024-03-15)."""
    folder = tmp_path / "candles"
    folder.mkdir()
    series = generate_candles("BTC/USDT", "1h", n, seed=3, start_ms=T0)
    return write_csv(folder / "BTC_USDT-1h.csv", series)


def train(cli: Cli, data: Path) -> None:
    """Train both tree members on ``data`` up to 2024-02-20."""
    result = cli(
        "models", "train", "--data", str(data), "--members", "xgb,lgbm", *TINY,
        "--until", "2024-02-20",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "saved xgb-" in out and "saved lgbm-" in out and "AUC" in out
    assert "validation (held out, purged) from 2024-02-" in out


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_train_saves_a_version_per_member_and_list_refuses_a_tampered_file(
    cli: Cli, tmp_path: Path
) -> None:
    train(cli, candle_file(tmp_path))
    meta = json.loads(next((cli.data_dir / "models" / "xgb").glob("*/metadata.json")).read_text())
    assert meta["train_end_ms"] <= UNTIL_MS  # nothing from --until on was seen
    assert {"log_loss", "log_loss_base", "accuracy", "auc"} <= set(meta["metrics"])

    listed = cli("models", "list")
    assert listed.exit_code == 0, listed.output
    out = flat(listed.stdout)
    assert out.count("verified") == 2 and out.count("CANDIDATE") == 2
    assert "2024-01-09 07:00 to 2024-02-19" in out  # first label to after the last candle used

    model = next((cli.data_dir / "models" / "xgb").glob("*/model.json"))
    model.write_bytes(model.read_bytes().replace(b"1", b"2", 1))
    tampered = cli("models", "list")
    assert tampered.exit_code == 0, tampered.output
    assert "Traceback" not in tampered.output
    out = flat(tampered.stdout)
    assert "refused: model file" in out and "tampered or corrupt" in out
    assert out.count("verified") == 1  # lgbm's files are intact


def test_an_unknown_member_is_one_line(cli: Cli, tmp_path: Path) -> None:
    data = candle_file(tmp_path, 50)
    result = cli("models", "train", "--data", str(data), "--members", "xgb,gpt")
    assert result.exit_code != 0
    assert "--members: unknown member 'gpt'; known: lgbm, nhits, patchtst, xgb" in one_line(
        result.stderr
    )


def test_train_fits_a_torch_member_on_the_symbols_consecutive_candles(
    cli: Cli, tmp_path: Path
) -> None:
    result = cli(
        "models", "train", "--data", str(candle_file(tmp_path)), "--members", "nhits",
        "--epochs", "1", "--threads", "1", "--until", "2024-02-20",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "saved nhits-" in flat(result.stdout) and "epochs=1" in flat(result.stdout)
    meta = json.loads(next((cli.data_dir / "models" / "nhits").glob("*/member.json")).read_text())
    assert meta["params"]["epochs"] == 1 and meta["params"]["n_threads"] == 1
    assert meta["fit"]["epochs"] == 1 and meta["fit"]["warm_start"] is False


def test_list_without_versions_says_how_to_make_one(cli: Cli) -> None:
    result = cli("models", "list")
    assert result.exit_code == 0
    assert "no model versions yet: try `qt models train`" in result.stdout
