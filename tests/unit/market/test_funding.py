"""Funding-rate files: both layouts, gzip, and a clear error naming file, row and rule."""

from __future__ import annotations

import gzip
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.errors import DataError
from core.market.funding import FundingRates, funding_symbol, read_funding_file
from core.market.importers import infer_symbol_timeframe

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
H8 = 8 * 3_600_000


def write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_our_layout_gzipped_with_the_symbol_from_the_name(tmp_path: Path) -> None:
    rows = f"timestamp,funding_rate\n{T0},0.0001\n{T0 + H8},-0.00005\n"
    rates = read_funding_file(write(tmp_path / "BTC_USDT-funding.csv.gz", rows))
    assert rates == FundingRates(
        symbol="BTC/USDT", ts_ms=(T0, T0 + H8), rates=(D("0.0001"), D("-0.00005"))
    )
    assert rates.between(T0, T0 + H8) == [(T0 + H8, D("-0.00005"))]  # (after, until]
    assert rates.next_after(T0 + 1) == T0 + H8 and rates.next_after(T0 + H8 + 1) is None


def test_binance_public_data_layout_and_freqtrade_style_name(tmp_path: Path) -> None:
    rows = f"calc_time,funding_interval_hours,last_funding_rate\n{T0},8,0.00010000\n"
    path = write(tmp_path / "ETH_USDT_USDT-8h-funding_rate.csv", rows)
    assert funding_symbol(path) == "ETH/USDT"
    assert read_funding_file(path).rates == (D("0.0001"),)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("rates.csv", "timestamp,funding_rate\n1,0\n", "name it BASE_QUOTE-funding.csv"),
        ("BTC_USDT-funding.csv", "time,rate\n", "expected columns timestamp,funding_rate"),
        ("BTC_USDT-funding.csv", "timestamp,funding_rate\n1704067200,0.0001\n", ":2: timestamp"),
        ("BTC_USDT-funding.csv", f"timestamp,funding_rate\n{T0},abc\n", ":2: not a timestamp"),
        ("BTC_USDT-funding.csv", f"timestamp,funding_rate\n{T0},0.5\n", ":2: funding rate 0.5"),
        (
            "BTC_USDT-funding.csv",
            f"timestamp,funding_rate\n{T0},0.0001\n{T0},0.0001\n",
            ":3: timestamp 1704067200000 is not after",
        ),
        ("BTC_USDT-funding.csv", "timestamp,funding_rate\n", "no funding rows"),
    ],
)
def test_bad_files_are_rejected_naming_file_row_and_rule(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(DataError, match=message) as info:
        read_funding_file(path)
    assert str(path) in str(info.value)


def test_a_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such funding file"):
        read_funding_file(tmp_path / "BTC_USDT-funding.csv")


def test_a_file_with_a_byte_order_mark_and_crlf_is_read(tmp_path: Path) -> None:
    # Spreadsheet exports start with a UTF-8 BOM, which is not part of the first column's name.
    path = tmp_path / "BTC_USDT-funding.csv"
    path.write_bytes(b"\xef\xbb\xbftimestamp,funding_rate\r\n1672531200000,0.0001\r\n")
    assert read_funding_file(path).rates == (D("0.0001"),)
    gz = tmp_path / "ETH_USDT-funding.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_funding_file(gz).ts_ms == (1672531200000,)


def test_freqtrade_funding_files_map_to_the_symbol_of_its_futures_candles(tmp_path: Path) -> None:
    funding = Path("futures/BTC_USDT_USDT-8h-funding_rate.feather")
    candles = Path("futures/BTC_USDT_USDT-1h-futures.feather")
    assert funding_symbol(funding) == infer_symbol_timeframe(candles)[0] == "BTC/USDT"
    path = tmp_path / "ETH_USDT_USDT-8h-funding_rate.json"
    path.write_text(
        f"[[{T0}, 0.0001, 0.0001, 0.0001, 0.0001, 0.0], [{T0 + H8}, -0.0002, 0, 0, 0, 0]]"
    )
    rates = read_funding_file(path)
    assert (rates.symbol, rates.ts_ms, rates.rates) == (
        "ETH/USDT",
        (T0, T0 + H8),
        (D("0.0001"), D("-0.0002")),
    )


@pytest.mark.parametrize(("unit", "factor"), [("microseconds", 1000), ("nanoseconds", 1_000_000)])
def test_us_and_ns_timestamps_are_converted_to_ms_and_said_so(
    tmp_path: Path, unit: str, factor: int
) -> None:
    # Read as ms, a file in µs settled nothing and was reported as modelled (net 0).
    rows = "".join(f"{(T0 + k * H8) * factor},0.0001\n" for k in range(3))
    rates = read_funding_file(
        write(tmp_path / "BTC_USDT-funding.csv", "timestamp,funding_rate\n" + rows)
    )
    assert rates.ts_ms == (T0, T0 + H8, T0 + 2 * H8)
    assert rates.notes == (f"timestamps: 3 rows were in {unit}, converted to ms",)


def test_a_sub_millisecond_timestamp_is_refused_naming_its_row(tmp_path: Path) -> None:
    text = f"timestamp,funding_rate\n{T0 * 1000},0.0001\n{(T0 + H8) * 1000 + 1},0.0001\n"
    with pytest.raises(
        DataError, match=r"timestamp \d+ at line 3 is in microseconds but not a whole"
    ):
        read_funding_file(write(tmp_path / "BTC_USDT-funding.csv", text))
