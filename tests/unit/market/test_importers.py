"""read_candle_file: CSV, CSV.gz, Freqtrade json/feather/parquet; names inferred; clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as pa_feather
import pyarrow.parquet as pa_parquet
import pytest

from core.domain.enums import CandleMarket
from core.domain.market import CandleSeries
from core.errors import CandleValidationError, DataError
from core.market.importers import infer_symbol_timeframe, read_candle_file
from core.market.synthetic import generate_candles

T0 = 1_704_067_200_000


@pytest.fixture
def series() -> CandleSeries:
    return generate_candles("BTC/USDT", "1h", 200, seed=11, start_ms=T0)


def csv_text(s: CandleSeries) -> str:
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(len(s)):
        c = s.candle(i)
        lines.append(f"{c.ts_ms},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r}")
    return "\n".join(lines) + "\n"


def rows(s: CandleSeries) -> list[list[float | int]]:
    return [
        [c.ts_ms, c.open, c.high, c.low, c.close, c.volume] for c in map(s.candle, range(len(s)))
    ]


def arrow_table(s: CandleSeries, unit: str = "ns") -> pa.Table:
    date = pa.array(s.ts_ms, pa.timestamp("ms", tz="UTC")).cast(pa.timestamp(unit, tz="UTC"))
    cols = {c: pa.array(getattr(s, c)) for c in ("open", "high", "low", "close", "volume")}
    return pa.table({"date": date, **cols})


def assert_same(a: CandleSeries, b: CandleSeries) -> None:
    for col in ("ts_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))


def test_csv(tmp_path: Path, series: CandleSeries) -> None:
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(csv_text(series))
    loaded = read_candle_file(path)
    assert (loaded.series.symbol, loaded.series.timeframe) == ("BTC/USDT", "1h")
    assert_same(loaded.series, series)
    assert loaded.report.rows == 200
    assert loaded.report.source == str(path)


def test_csv_gz(tmp_path: Path, series: CandleSeries) -> None:
    path = tmp_path / "ETH_USDT-1h.csv.gz"
    path.write_bytes(gzip.compress(csv_text(series).encode()))
    loaded = read_candle_file(path)
    assert loaded.series.symbol == "ETH/USDT"
    assert_same(loaded.series, series)


@pytest.mark.parametrize("name", ["BTC_USDT-1h.json", "BTC_USDT-1h.json.gz"])
def test_freqtrade_json(tmp_path: Path, series: CandleSeries, name: str) -> None:
    data = json.dumps(rows(series)).encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert_same(read_candle_file(path).series, series)


@pytest.mark.parametrize("unit", ["ns", "ms"])
def test_freqtrade_feather(tmp_path: Path, series: CandleSeries, unit: str) -> None:
    path = tmp_path / "BTC_USDT_USDT-1h-futures.feather"
    pa_feather.write_feather(arrow_table(series, unit), path)
    loaded = read_candle_file(path)
    assert (loaded.series.symbol, loaded.market) == ("BTC/USDT", "perp")
    assert_same(loaded.series, series)


def test_freqtrade_parquet(tmp_path: Path, series: CandleSeries) -> None:
    path = tmp_path / "BTC_USDT-1h.parquet"
    pa_parquet.write_table(arrow_table(series), path)
    assert_same(read_candle_file(path).series, series)


def test_gaps_in_a_file_are_reported_not_filled(tmp_path: Path, series: CandleSeries) -> None:
    keep = np.ones(len(series), dtype=bool)
    keep[[10, 11, 12, 50]] = False
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(csv_text(series.mask(keep)))
    loaded = read_candle_file(path)
    assert len(loaded.series) == 196
    assert [(g.missing, g.from_ms) for g in loaded.report.gaps] == [
        (3, int(series.ts_ms[9])),
        (1, int(series.ts_ms[49])),
    ]


def test_infinity_in_csv_and_json_is_refused_naming_file_and_row(
    tmp_path: Path, series: CandleSeries
) -> None:
    text = csv_text(series).splitlines()
    fields = text[7].split(",")
    fields[2] = "inf"  # high of data row 7
    text[7] = ",".join(fields)
    csv_path = tmp_path / "BTC_USDT-1h.csv"
    csv_path.write_text("\n".join(text) + "\n")
    json_path = tmp_path / "BTC_USDT-1h.json"
    json_path.write_text(
        json.dumps(rows(series)).replace(repr(float(series.volume[2])), "Infinity", 1)
    )
    for path, row in ((csv_path, 7), (json_path, 3)):
        with pytest.raises(CandleValidationError, match=rf"infinite .*first at row {row},"):
            read_candle_file(path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BTC_USDT-1h.csv.gz", ("BTC/USDT", "1h")),
        ("BTC_USDT-1h.feather", ("BTC/USDT", "1h")),
        ("BTC_USDT_USDT-1h-futures.feather", ("BTC/USDT", "1h")),  # the market says perp
        ("eth_usdt-15m.json", ("ETH/USDT", "15m")),
        ("candles.csv", None),
        ("BTC-USDT-1h.csv", None),
    ],
)
def test_name_inference(name: str, expected: tuple[str, str] | None) -> None:
    assert infer_symbol_timeframe(Path(name)) == expected


@pytest.mark.parametrize(
    ("name", "market"),
    [
        ("BTC_USDT-1h.csv.gz", "spot"),
        ("futures/BTC_USDT-1h.csv.gz", "perp"),  # ../shared/data/futures/
        ("futures/BTC_USDT_USDT-1h-futures.feather", "perp"),  # Freqtrade
        ("BTC_USDT_USDT-1h-futures.feather", "perp"),
        ("futures/BTC_USDT_USDT-1h-mark.feather", "mark"),
        ("BTC_USDT_USDT-1h.feather", "perp"),  # a settle currency: a contract
    ],
)
def test_the_market_kind_comes_from_the_name_and_folder(
    tmp_path: Path, series: CandleSeries, name: str, market: str
) -> None:
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    if name.endswith(".feather"):
        pa_feather.write_feather(arrow_table(series), path)
    else:
        path.write_bytes(gzip.compress(csv_text(series).encode()))
    loaded = read_candle_file(path)
    assert (loaded.series.symbol, loaded.market) == ("BTC/USDT", market)
    assert read_candle_file(path, market=CandleMarket.SPOT).market == "spot"  # told otherwise


@pytest.mark.parametrize("typed", ["BTC_USDT-1h.csv.gz", "./BTC_USDT-1h.csv.gz"])
def test_a_file_named_relative_to_its_futures_folder_is_perp(
    tmp_path: Path, series: CandleSeries, monkeypatch: pytest.MonkeyPatch, typed: str
) -> None:
    # `cd ../shared/data/futures && qt data import BTC_USDT-1h.csv.gz`: the folder is the
    # one the file is in, not the one the path was typed with.
    folder = tmp_path / "futures"
    folder.mkdir()
    (folder / "BTC_USDT-1h.csv.gz").write_bytes(gzip.compress(csv_text(series).encode()))
    monkeypatch.chdir(folder)
    assert read_candle_file(Path(typed)).market == "perp"


def test_a_link_into_a_futures_folder_is_perp(tmp_path: Path, series: CandleSeries) -> None:
    (tmp_path / "futures").mkdir()
    target = tmp_path / "futures" / "BTC_USDT-1h.csv.gz"
    target.write_bytes(gzip.compress(csv_text(series).encode()))
    link = tmp_path / "BTC_USDT-1h.csv.gz"
    link.symlink_to(target)
    assert read_candle_file(link).market == "perp"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("BTC_USDT_USDT-8h-funding_rate.feather", "holds funding rates, not candles"),
        ("BTC_USDT_USDT-1h-premiumIndex.feather", "holds a premium index"),
        ("BTC_USDT_USDT-1h-index.feather", "holds an index price"),
        ("BTC_USDT-1h-weird.feather", "unknown candle type 'weird'"),
    ],
)
def test_files_of_no_market_are_refused_for_their_kind(
    tmp_path: Path, series: CandleSeries, name: str, message: str
) -> None:
    path = tmp_path / name
    pa_feather.write_feather(arrow_table(series), path)
    with pytest.raises(DataError, match=message):
        read_candle_file(path)


def test_explicit_symbol_and_timeframe_win_and_are_needed(
    tmp_path: Path, series: CandleSeries
) -> None:
    path = tmp_path / "candles.csv"
    path.write_text(csv_text(series))
    with pytest.raises(DataError, match=r"candles\.csv: give the symbol and timeframe"):
        read_candle_file(path)
    with pytest.raises(DataError, match="give the timeframe"):
        read_candle_file(path, symbol="BTC/USDT")
    loaded = read_candle_file(path, symbol="SOL/USDT", timeframe="1h")
    assert (loaded.series.symbol, loaded.series.timeframe) == ("SOL/USDT", "1h")


def test_weekly_file_in_binance_layout_imports_and_monthly_is_refused_clearly(
    tmp_path: Path,
) -> None:
    weeks = generate_candles("BTC/USDT", "1w", 10, seed=2, start_ms=T0)  # T0 is a Monday
    path = tmp_path / "BTC_USDT-1w.csv"
    path.write_text(csv_text(weeks))
    assert read_candle_file(path).series.timeframe == "1w"
    monthly = tmp_path / "BTC_USDT-1M.csv"
    monthly.write_text(csv_text(weeks))
    with pytest.raises(DataError, match=r"BTC_USDT-1M\.csv: monthly candles \(1M\) are not"):
        read_candle_file(monthly)


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(f"timestamp,open,high,low,volume\n{T0},1,2,0.5,3\n")
    with pytest.raises(DataError, match=r"BTC_USDT-1h\.csv: missing column\(s\) close; found"):
        read_candle_file(path)


def test_non_numeric_value_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        f"{T0},1,2,0.5,1.5,3\n{T0 + 3_600_000},1,2,0.5,1.5,3\n{T0 + 7_200_000},1,2,oops,1.5,3\n"
    )
    with pytest.raises(
        DataError, match=r"non-numeric value 'oops' in column 'low' at data row 3 \(1-based"
    ):
        read_candle_file(path)


def test_empty_price_becomes_nan_and_is_rejected_with_its_row(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(
        f"timestamp,open,high,low,close,volume\n{T0},1,2,0.5,1.5,3\n{T0 + 3_600_000},1,2,0.5,,3\n"
    )
    with pytest.raises(CandleValidationError, match=r"nan .*first at row 2, timestamp"):
        read_candle_file(path)


def test_invalid_rows_are_rejected_or_repaired(tmp_path: Path, series: CandleSeries) -> None:
    bad_high = series.high.copy()
    bad_high[4] = series.low[4] / 2  # high below open/close
    broken = CandleSeries(
        **{
            **{
                c: getattr(series, c)
                for c in ("symbol", "timeframe", "ts_ms", "open", "low", "close", "volume")
            },
            "high": bad_high,
        }
    )
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(csv_text(broken))
    with pytest.raises(CandleValidationError) as info:
        read_candle_file(path)
    assert str(path) in str(info.value)
    assert "high_below_open_close" in str(info.value)
    assert f"first at row 5, timestamp {int(series.ts_ms[4])}" in str(info.value)

    loaded = read_candle_file(path, repair=True)
    assert len(loaded.series) == 199
    assert dict(loaded.report.dropped) == {"high_below_open_close": 1}
    assert loaded.report.gaps[0].missing == 1  # the dropped row is now a reported gap


def test_timestamps_in_seconds_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(f"timestamp,open,high,low,close,volume\n{T0 // 1000},1,2,0.5,1.5,3\n")
    with pytest.raises(DataError, match="look like seconds"):
        read_candle_file(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("BTC_USDT-1h.json", b"{not json", "cannot read as JSON"),
        ("BTC_USDT-1h.json", b'{"a": 1}', "expected a JSON list"),
        ("BTC_USDT-1h.json", b"[[1704067200000, 1, 2, 0.5]]", r"row 1 \(1-based\) should be"),
        (
            "BTC_USDT-1h.json",
            b'[[1704067200000, 1, 2, 0.5, 1.5, 3], [1704070800000, "1", 2, 0.5, 1.5, 3]]',
            r"non-numeric value '1' in column 'open' at row 2",
        ),
        ("BTC_USDT-1h.json.gz", b"not gzip", "cannot read as JSON"),
        ("BTC_USDT-1h.feather", b"not feather", "cannot read as feather"),
        ("BTC_USDT-1h.csv.gz", b"not gzip", "cannot read as CSV"),
        ("BTC_USDT-1h.txt", b"", "unknown candle file type"),
    ],
)
def test_malformed_files_raise_data_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_candle_file(path, symbol="BTC/USDT", timeframe="1h")
    assert str(path) in str(info.value)


def test_feather_without_date_column(tmp_path: Path, series: CandleSeries) -> None:
    path = tmp_path / "BTC_USDT-1h.feather"
    pa_feather.write_feather(arrow_table(series).drop_columns(["date"]), path)
    with pytest.raises(DataError, match=r"missing column\(s\) date"):
        read_candle_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such candle file"):
        read_candle_file(tmp_path / "BTC_USDT-1h.csv")


def test_missing_file_is_named_before_anything_else(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such candle file"):
        read_candle_file(tmp_path / "nope.csv")


# --- timestamp units --------------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "factor"), [("microseconds", 1000), ("nanoseconds", 1_000_000)])
def test_us_and_ns_timestamps_are_converted_to_ms_and_said_so(
    tmp_path: Path, series: CandleSeries, unit: str, factor: int
) -> None:
    # Binance's public-data spot klines are in microseconds since 2025.
    scaled = CandleSeries.from_columns(
        "BTC/USDT", "1h", series.ts_ms * factor, series.open, series.high, series.low,
        series.close, series.volume,
    )  # fmt: skip
    csv_path = tmp_path / "BTC_USDT-1h.csv"
    csv_path.write_text(csv_text(scaled))
    json_path = tmp_path / "BTC_USDT-1h.json"
    json_path.write_text(json.dumps(rows(scaled)))
    feather_path = tmp_path / "BTC_USDT-1h.feather"
    table = arrow_table(series).set_column(0, "date", pa.array(scaled.ts_ms, pa.int64()))
    pa_feather.write_feather(table, feather_path)
    for path in (csv_path, json_path, feather_path):
        loaded = read_candle_file(path)
        assert_same(loaded.series, series)
        assert f"timestamps: 200 rows were in {unit}, converted to ms" in (
            loaded.report.summary_lines()
        )


def test_a_file_that_switches_to_microseconds_midway_is_converted_row_by_row(
    tmp_path: Path, series: CandleSeries
) -> None:
    ts = series.ts_ms.copy()
    ts[150:] *= 1000
    mixed = CandleSeries.from_columns(
        "BTC/USDT", "1h", ts, series.open, series.high, series.low, series.close, series.volume
    )
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(csv_text(mixed))
    loaded = read_candle_file(path)
    assert_same(loaded.series, series)
    assert "timestamps: 50 rows were in microseconds, converted to ms" in (
        loaded.report.summary_lines()
    )


@pytest.mark.parametrize(("suffix", "factor"), [("csv", 1000), ("json", 1_000_000)])
def test_a_sub_millisecond_timestamp_is_refused_naming_file_and_row(
    tmp_path: Path, series: CandleSeries, suffix: str, factor: int
) -> None:
    ts = series.ts_ms * factor
    ts[41] += 7  # 7 µs or ns past the candle's open (a float64 would round the ns away)
    odd = CandleSeries.from_columns(
        "BTC/USDT", "1h", ts, series.open, series.high, series.low, series.close, series.volume
    )
    path = tmp_path / f"BTC_USDT-1h.{suffix}"
    path.write_text(csv_text(odd) if suffix == "csv" else json.dumps(rows(odd)))
    with pytest.raises(DataError, match=rf"^{path}: timestamp {ts[41]} at data row 42 .*second"):
        read_candle_file(path)
