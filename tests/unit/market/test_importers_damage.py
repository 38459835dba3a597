"""read_candle_file on damaged or interrupted input: a truncated last line (an interrupted write),
a malformed line inside the file, and a stop signal arriving while Arrow reads."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from core.errors import DataError
from core.market.importers import read_candle_file
from core.market.synthetic import generate_candles

T0 = 1_704_067_200_000


def csv_lines(n: int) -> list[str]:
    s = generate_candles("BTC/USDT", "1h", n, seed=5, start_ms=T0)
    return ["timestamp,open,high,low,close,volume"] + [
        f"{c.ts_ms},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r}"
        for c in map(s.candle, range(n))
    ]


def write(path: Path, text: str) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["BTC_USDT-1h.csv", "BTC_USDT-1h.csv.gz"])
def test_a_truncated_last_line_is_named_and_repair_drops_it(tmp_path: Path, name: str) -> None:
    lines = csv_lines(50)
    path = write(tmp_path / name, "\n".join([*lines, "1704247200000,29000.1,29100"]))
    with pytest.raises(DataError) as info:
        read_candle_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: data row 51 (1-based, header not counted) has 3 fields")
    assert "'1704247200000,29000.1,29100'" in message
    assert "repair drops a truncated last line" in message

    loaded = read_candle_file(path, repair=True)
    assert len(loaded.series) == 50
    assert (
        "dropped the truncated last line, data row 51 (3 of 6 fields): an interrupted write?"
        in loaded.report.summary_lines()
    )


def test_a_malformed_line_inside_the_file_is_refused_even_when_repairing(tmp_path: Path) -> None:
    lines = csv_lines(50)
    lines[20] = lines[20].rsplit(",", 2)[0]  # data row 20 lost two fields
    path = write(tmp_path / "BTC_USDT-1h.csv", "\n".join(lines) + "\n")
    for repair in (False, True):
        with pytest.raises(DataError, match=rf"^{path}: data row 20 \(1-based.*\) has 4 fields"):
            read_candle_file(path, repair=repair)


def test_a_stop_signal_during_the_read_is_not_reported_as_a_bad_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrow cancels a read on the main thread when a signal with a Python handler arrives (the
    # process's SIGTERM handler), hands the signal to that handler and raises ArrowCancelled.
    path = write(tmp_path / "BTC_USDT-1h.csv", "\n".join(csv_lines(10)) + "\n")

    def cancelled(*args: object, **kwargs: object) -> None:
        raise pa.ArrowCancelled("Operation cancelled. Detail: received signal 15", signum=15)

    monkeypatch.setattr(pa_csv, "read_csv", cancelled)
    with pytest.raises(pa.ArrowCancelled):
        read_candle_file(path)
