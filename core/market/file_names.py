"""What a data file's name says: symbol, timeframe and market kind, in Freqtrade's layout.

Freqtrade names spot candles ``BTC_USDT-1h.feather`` and futures ones by their contract,
``BTC_USDT_USDT-1h-futures.feather`` (the settle currency, then the candle type: ``futures``
for the contract's trades, ``mark`` for its mark price, ``funding_rate``, ``index``,
``premiumIndex``), in a ``futures/`` folder; ``../shared/data/futures/`` keeps plain names in
such a folder (the folder the file is in, however its path was typed). The symbol is
``BASE/QUOTE`` for all of them, the name the bot trades a perp under: the market kind, not the
symbol, keeps spot, futures and mark candles apart.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from core.domain.enums import CandleMarket
from core.errors import DataError

# "M" (months) is matched so that a monthly file is refused for its timeframe, not its name.
_NAME_RE = re.compile(
    r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)(?:_(?P<settle>[A-Za-z0-9]+))?"
    r"-(?P<tf>\d+[mhdwM])(?:-(?P<kind>[A-Za-z_]+))?"
    r"\.(?:csv|csv\.gz|json|json\.gz|feather|parquet)$"
)
# The symbol part alone, for any data file of a symbol (funding rates: BTC_USDT-funding.csv).
_SYMBOL_RE = re.compile(r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)(?:_[A-Za-z0-9]+)?-")
_CANDLE_KINDS = {"spot": CandleMarket.SPOT, "futures": CandleMarket.PERP, "mark": CandleMarket.MARK}
_NOT_TRADED = {
    "funding_rate": "funding rates, not candles: pass the file to `qt backtest --funding`",
    "index": "an index price, not a market's candles",
    "premiumindex": "a premium index, not a market's candles",
}
_FUTURES_FOLDER = "futures"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileName:
    """The parts of a Freqtrade-style name; ``kind`` is the candle type after the timeframe."""

    symbol: str  # BASE/QUOTE
    timeframe: str
    settle: str | None  # the contract's settle currency (BTC_USDT_USDT: USDT)
    kind: str | None  # futures, mark, funding_rate, ... (None: no suffix)


def parse_file_name(path: Path) -> FileName | None:
    """Return the parts of a ``BASE_QUOTE[_SETTLE]-TF[-kind].ext`` name, or None."""
    match = _NAME_RE.match(path.name)
    if not match:
        return None
    return FileName(
        symbol=_symbol(match),
        timeframe=match["tf"],
        settle=match["settle"].upper() if match["settle"] else None,
        kind=match["kind"],
    )


def symbol_of(path: Path) -> str | None:
    """Return the ``BASE/QUOTE`` a data file's name starts with (candles, funding rates), or
    None: one mapping, so Freqtrade's funding-rate files pair with its futures candles."""
    match = _SYMBOL_RE.match(path.name)
    return None if match is None else _symbol(match)


def _symbol(match: re.Match[str]) -> str:
    return f"{match['base'].upper()}/{match['quote'].upper()}"


def candle_market(path: Path) -> CandleMarket:
    """Return the market kind of a candle file's name and folder (spot unless it says not).

    Raise DataError for Freqtrade files that hold no market's candles (funding rates, index
    prices) and for a candle type this program does not know.
    """
    name = parse_file_name(path)
    if name is not None and name.kind is not None:
        kind = name.kind.lower()
        if kind in _NOT_TRADED:
            raise DataError(f"{path}: holds {_NOT_TRADED[kind]}")
        if kind not in _CANDLE_KINDS:
            raise DataError(
                f"{path}: unknown candle type {name.kind!r} in the name; expected "
                "-futures or -mark (or no suffix for spot)"
            )
        return _CANDLE_KINDS[kind]
    if name is not None and name.settle is not None:
        return CandleMarket.PERP  # only a contract has a settle currency
    if _in_futures_folder(path):
        return CandleMarket.PERP
    return CandleMarket.SPOT


def _in_futures_folder(path: Path) -> bool:
    """Return True when the file is in a ``futures/`` folder, however its path was typed.

    ``BTC_USDT-1h.csv.gz`` typed inside ``futures/`` has no parent name at all; the absolute
    path (``..`` folded, links kept) gives the folder as the user sees it, the resolved one the
    folder a link points into. Either being ``futures`` makes the file a perp's.
    """
    lexical = Path(os.path.abspath(path)).parent.name
    try:
        resolved = path.resolve().parent.name
    except (OSError, RuntimeError):  # a link loop: the name as typed is all there is
        resolved = lexical
    return _FUTURES_FOLDER in (lexical.lower(), resolved.lower())
