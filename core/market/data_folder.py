"""The candle files of a folder (``qt backtest --data DIR``): named as single files are.

A folder is taken as Freqtrade and ``../shared/data`` lay it out: one file per symbol and
timeframe, ``BTC_USDT-1h.csv.gz`` or ``BTC_USDT_USDT-1h-futures.feather``, other timeframes and
funding-rate, index and mark-price files beside them. Only the candles of the wanted timeframe
that a market trades on are taken; anything else in the folder is left alone.
"""

from __future__ import annotations

from pathlib import Path

from core.domain.enums import CandleMarket
from core.errors import DataError
from core.market.file_names import candle_market, parse_file_name


def candle_files(folder: Path, timeframe: str) -> list[Path]:
    """Return the ``timeframe`` candle files in ``folder`` (not its subfolders), by name.

    Raise DataError naming the folder when it holds none (saying which timeframes it does
    hold, if any).
    """
    found, other_timeframes = [], set()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        name = parse_file_name(path)
        if name is None:
            continue  # a README, a notes file: not data
        try:
            if candle_market(path) is CandleMarket.MARK:
                continue  # mark prices: no trades, no volume
        except DataError:
            continue  # funding rates, index prices: not a market's candles
        if name.timeframe == timeframe:
            found.append(path)
        else:
            other_timeframes.add(name.timeframe)
    if not found:
        held = (
            f" (it holds {', '.join(sorted(other_timeframes))} candles)" if other_timeframes else ""
        )
        raise DataError(
            f"{folder} holds no {timeframe} candle files like BTC_USDT-{timeframe}.csv.gz"
            f"{held}: QT__TRADING__TIMEFRAME picks the timeframe of a folder's files"
        )
    return found
