"""The candle cache: a second load reads the parse back, and nothing it holds is trusted
when the source changed, the entry is damaged or the folder cannot be written."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from core.errors import CandleValidationError
from core.market.candle_cache import CandleCache
from core.market.importers import read_candle_file
from core.market.synthetic import generate_candles

HOUR_MS = 3_600_000


def write_csv(path: Path, n: int = 300, seed: int = 3, *, ts_scale: int = 1) -> Path:
    s = generate_candles("BTC/USDT", "1h", n, seed=seed)
    lines = ["timestamp,open,high,low,close,volume"] + [
        f"{int(t) * ts_scale}," + ",".join(repr(float(x)) for x in row)
        for t, *row in zip(s.ts_ms, s.open, s.high, s.low, s.close, s.volume, strict=True)
    ]
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def same(a, b) -> bool:  # type: ignore[no-untyped-def]
    return (
        a.series.symbol == b.series.symbol
        and np.array_equal(a.series.ts_ms, b.series.ts_ms)
        and all(
            np.array_equal(getattr(a.series, c), getattr(b.series, c))
            for c in ("open", "high", "low", "close", "volume")
        )
        and a.report.notes == b.report.notes
    )


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.candles")) if folder.exists() else []


def test_a_second_load_comes_from_the_cache_and_equals_the_parse(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "BTC_USDT-1h.csv.gz")
    cache = CandleCache(tmp_path / "cache")
    plain = read_candle_file(src)
    first = read_candle_file(src, cache=cache)
    assert len(entries(cache.folder)) == 1
    assert cache.load(src) is not None
    second = read_candle_file(src, cache=cache)
    assert same(plain, first) and same(first, second)
    assert second.series.close.flags.writeable  # as a parse gives


def test_notes_of_the_parse_are_kept_for_a_cached_load(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "BTC_USDT-1h.csv", ts_scale=1000)  # timestamps in µs
    cache = CandleCache(tmp_path / "cache")
    first = read_candle_file(src, cache=cache)
    second = read_candle_file(src, cache=cache)
    assert first.report.notes and second.report.notes == first.report.notes
    assert same(first, second)


def test_a_changed_source_is_parsed_again(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "BTC_USDT-1h.csv")
    cache = CandleCache(tmp_path / "cache")
    read_candle_file(src, cache=cache)
    write_csv(src, n=200, seed=9)  # another content, another size
    again = read_candle_file(src, cache=cache)
    assert len(again.series) == 200
    assert same(again, read_candle_file(src))


def test_the_same_size_and_time_with_another_content_is_not_trusted(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "BTC_USDT-1h.csv")
    cache = CandleCache(tmp_path / "cache")
    read_candle_file(src, cache=cache)
    st = src.stat()
    text = src.read_text()
    changed = text.replace("\n1", "\n2", 1) if "\n1" in text else None
    assert changed is not None and len(changed) == len(text)
    src.write_text(changed)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p or rsync -t would leave it
    assert cache.load(src) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:-9] + bytes([b[-9] ^ 1]) + b[-8:],  # one bit of one price
        lambda b: b"not an entry",
        lambda b: b"",
        lambda b: b.replace(b'"version": 1', b'"version": 7'),  # another format
    ],
    ids=["truncated", "bit-flip", "foreign", "empty", "version"],
)
def test_a_damaged_entry_is_ignored_and_rebuilt(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    src = write_csv(tmp_path / "BTC_USDT-1h.csv")
    cache = CandleCache(tmp_path / "cache")
    expected = read_candle_file(src, cache=cache)
    entry = cache.entry(src)
    entry.write_bytes(damage(entry.read_bytes()))
    assert cache.load(src) is None
    again = read_candle_file(src, cache=cache)
    assert same(again, expected)
    assert cache.load(src) is not None  # rewritten whole


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_folder_that_cannot_be_written_means_no_cache(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "BTC_USDT-1h.csv")
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        loaded = read_candle_file(src, cache=CandleCache(folder))
    finally:
        folder.chmod(stat.S_IRWXU)
    assert same(loaded, read_candle_file(src))
    assert entries(folder) == []


def test_a_cache_folder_in_the_place_of_a_file_means_no_cache(tmp_path: Path) -> None:
    # Works as root too: a file where the folder should be cannot hold entries.
    src = write_csv(tmp_path / "BTC_USDT-1h.csv")
    blocked = tmp_path / "cache"
    blocked.write_text("a file, not a folder")
    assert same(read_candle_file(src, cache=CandleCache(blocked)), read_candle_file(src))
    assert blocked.read_text() == "a file, not a folder"


def test_cached_candles_are_still_validated(tmp_path: Path) -> None:
    # The cache holds the parse of a file read before "now" moved back: the rule still applies.
    src = write_csv(tmp_path / "BTC_USDT-1h.csv")
    cache = CandleCache(tmp_path / "cache")
    loaded = read_candle_file(src, cache=cache)
    before_last = int(loaded.series.ts_ms[-1])  # the last candle closes an hour after this
    with pytest.raises(CandleValidationError):
        read_candle_file(src, cache=cache, now_ms=before_last)
    assert cache.load(src) is not None


def test_repair_loads_never_use_or_fill_the_cache(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "BTC_USDT-1h.csv")
    src.write_text(src.read_text() + "1,2,3")  # a cut-off last line: only repair reads it
    cache = CandleCache(tmp_path / "cache")
    repaired = read_candle_file(src, cache=cache, repair=True)
    assert entries(cache.folder) == []
    assert any("truncated" in n for n in repaired.report.notes)
