"""``qt data`` end to end for the data-correctness fixes (issue 9): repair, sorting, market kinds,
timestamp units, listing. The harness (``cli``, ``write_csv``, ...) is ``test_cli``'s.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import (
    T0,
    Cli,
    H,
    candles,
    flat,
    stored_series,
    write_csv,
)
from tests.integration.test_cli import cli as cli  # the fixture, re-exported for pytest


def test_repair_drops_a_future_dated_row_and_keeps_the_rest(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 1000))
    lines = path.read_text().splitlines()
    fields = lines[2].split(",")
    fields[0] = "1802944800000"  # data row 2 mistyped as 2027-02-17
    lines[2] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")

    refused = cli("data", "import", str(path))
    repaired = cli("data", "import", "--repair", str(path))

    assert refused.exit_code == 2
    assert "future (" in flat(refused.stderr)
    assert "first at row 2," in flat(refused.stderr)
    assert repaired.exit_code == 0, repaired.output
    out = flat(repaired.stdout)
    assert f"{path}: 999 candles -> binance" in out
    assert "dropped: 1 invalid rows (future=1)" in out
    assert stored_series(cli.db_file) == {("binance", "BTC/USDT", "1h", 999)}


def test_import_sorts_a_newest_first_file_when_asked(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 100))
    header, *body = path.read_text().splitlines()
    path.write_text("\n".join([header, *reversed(body)]) + "\n")

    refused = cli("data", "import", str(path))
    imported = cli("data", "import", "--sort", str(path))

    assert refused.exit_code == 2
    assert "not_increasing" in flat(refused.stderr)
    assert imported.exit_code == 0, imported.output
    assert f"{path}: 100 candles -> binance" in flat(imported.stdout)
    assert "sorted by time: 100 rows changed place" in flat(imported.stdout)
    assert stored_series(cli.db_file) == {("binance", "BTC/USDT", "1h", 100)}


def test_microsecond_timestamps_are_checked_and_imported_as_ms(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 48))
    header, *body = path.read_text().splitlines()
    path.write_text("\n".join([header, *(line.replace(",", "000,", 1) for line in body)]) + "\n")

    checked = cli("data", "check", str(path))
    imported = cli("data", "import", str(path))
    listed = cli("data", "list")

    assert checked.exit_code == 0, checked.output
    assert "2024-01-01T00:00:00Z -> 2024-01-02T23:00:00Z" in checked.stdout
    assert "timestamps: 48 rows were in microseconds, converted to ms" in flat(checked.stdout)
    assert imported.exit_code == 0, imported.output
    assert "2024-01-01T00:00:00Z" in listed.stdout


def test_a_file_cut_off_mid_line_imports_with_repair(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 30))
    path.write_text(path.read_text() + "1704175200000,29000.1,29100")  # an interrupted write

    refused = cli("data", "import", str(path))
    repaired = cli("data", "import", "--repair", str(path))

    assert refused.exit_code == 2
    assert "data row 31 (1-based, header not counted) has 3 fields" in flat(refused.stderr)
    assert repaired.exit_code == 0, repaired.output
    assert "dropped the truncated last line, data row 31" in flat(repaired.stdout)
    assert stored_series(cli.db_file) == {("binance", "BTC/USDT", "1h", 30)}


def test_list_never_truncates_on_a_narrow_console_and_prints_json(cli: Cli, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 48))
    assert cli("data", "import", str(csv)).exit_code == 0

    narrow = cli("data", "list", COLUMNS="60")
    as_json = cli("data", "list", "--json", COLUMNS="60")

    assert narrow.exit_code == 0, narrow.output
    assert "…" not in narrow.stdout
    assert "2024-01-01T00:00:00Z" in narrow.stdout
    assert "2024-01-02T23:00:00Z" in narrow.stdout
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == [
        {
            "exchange": "binance",
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "first": "2024-01-01T00:00:00Z",
            "last": "2024-01-02T23:00:00Z",
            "first_ms": T0,
            "last_ms": T0 + 47 * H,
            "rows": 48,
        }
    ]
