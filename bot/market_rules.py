"""Which market rules a process trades each symbol by, and the notices saying so.

``RulesBook`` (core) holds them; this module picks them for a process from what it has: the
operator's overrides and the settings' fallback, the rules a venue fetch stored, the candles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path

from core.clock import Clock
from core.config import Settings
from core.domain.enums import TradingMode
from core.domain.market import CandleSeries
from core.domain.market_rules import MarketRules, RulesInForce, StoredRules
from core.errors import ConfigError, DataError, DependencyError, QTError
from core.market.rules_book import RulesBook, fetched_note, resolve_rules
from core.ports import MarketRulesRepo

log = logging.getLogger(__name__)


def rules_book(settings: Settings) -> RulesBook:
    """Return a book holding the operator's per-symbol overrides over the settings' fallback
    (a process adds the venue's, stored or inferred rules at start)."""
    market = settings.market
    book = RulesBook(market.default_rules())
    book.use(resolve_rules(market.symbols, default=book.default, overrides=market.overrides()))
    return book


def resolved(
    settings: Settings,
    symbols: Iterable[str],
    *,
    stored: Mapping[str, StoredRules] | None = None,
    series: Mapping[str, CandleSeries] | None = None,
) -> dict[str, RulesInForce]:
    """Return the rules in force of ``symbols`` without a venue fetch (see ``resolve_rules``)."""
    market = settings.market
    return resolve_rules(
        symbols,
        default=market.default_rules(),
        overrides=market.overrides(),
        stored=stored,
        series=series,
    )


def plain(value: Decimal) -> str:
    """Return ``value`` as people write it (1000, not 1E+3)."""
    return format(value.normalize(), "f") if value else "0"


def describe(symbol: str, held: RulesInForce) -> str:
    """Return one line naming ``symbol``'s rules and where they came from."""
    r = held.rules
    where = f"{held.source}" + (f" ({held.note})" if held.note else "")
    return (
        f"{symbol}: tick {plain(r.price_tick)}, step {plain(r.amount_step)}, minimums "
        f"{plain(r.min_amount)} / {plain(r.min_notional)} quote: {where}"
    )


def notices(
    settings: Settings,
    rules: Mapping[str, RulesInForce],
    traded: Collection[str] | None = None,
) -> list[str]:
    """Return a line for each symbol of ``rules`` traded by rules no venue stated (inferred
    from its candles, the settings' fallback), and for each override naming a symbol not
    ``traded`` (default: the symbols of ``rules``; a universe extended: all it trades)."""
    hint = "; set QT__MARKET__SYMBOLS to override"
    lines = [
        f"market rules {describe(symbol, held)}{hint}"
        for symbol, held in rules.items()
        if held.guessed
    ]
    known = list(rules) if traded is None else list(traded)
    unused = [s for s in settings.market.symbols if s not in known]
    if unused:
        lines.append(
            f"QT__MARKET__SYMBOLS names {', '.join(unused)}, not traded here (symbols are "
            f"matched exactly: {', '.join(known)})"
        )
    return lines


async def stored_rules(settings: Settings) -> dict[str, StoredRules]:
    """Return the venue rules stored in the configured database for its exchange and market
    (none when the database does not exist: it is not created to look; an unreadable one is
    logged and gives none, so a backtest of candle files still runs)."""
    try:
        if not await database_exists(settings.database_url):
            return {}
        from storage import open_storage
        from storage.migrate import current_revision, head_revision

        # A database of an older schema holds no rules (its table came later); reading must
        # not migrate it as a side effect.
        if await asyncio.to_thread(current_revision, settings.database_url) != head_revision():
            return {}

        storage = open_storage(settings.database_url)
        await storage.start()
        try:
            return await storage.market_rules.load(
                settings.exchange.name, settings.exchange.market_type
            )
        finally:
            await storage.stop()
    except (QTError, OSError) as exc:
        log.warning("stored market rules not read (%s); rules come from the candles", exc)
        return {}


SQLITE_PREFIX = "sqlite+aiosqlite:///"


async def database_exists(url: str) -> bool:
    """Return whether ``url`` names a database file that exists (memory: never). Read from
    the URL's text: importing SQLAlchemy to parse it cost a backtest of files 0.3 s."""
    if url == "memory://":  # storage.MEMORY_URL: a private in-memory store
        return False
    if not url.startswith(SQLITE_PREFIX):
        from storage.db import is_memory_url, parse_sqlite_url  # an odd URL: its own parser

        parsed = parse_sqlite_url(url)
        if is_memory_url(parsed) or not parsed.database:
            return False
        name = parsed.database
    else:
        name = url[len(SQLITE_PREFIX) :].split("?", 1)[0]
        if name in ("", ":memory:") or name.startswith("file:"):
            return False
    return await asyncio.to_thread(_file_exists, name)


def _file_exists(name: str) -> bool:
    return Path(name).expanduser().exists()


# Given our symbols, return the venue's precision and minimums of each (a ccxt client's
# load_market_rules).
MarketRulesSource = Callable[[list[str]], Awaitable[Mapping[str, MarketRules]]]


class ProcessRules:
    """The rules ``qt run`` and the demo trade by: at start the venue's, fetched and stored
    for later runs and backtests; without a venue (the demo) or when it cannot be reached
    (paper only: live refuses to start), the stored ones, else inferred from the warm-up
    candles, else the settings' fallback. ``refresh`` (a job) fetches them again."""

    def __init__(
        self,
        *,
        settings: Settings,
        book: RulesBook,
        repo: MarketRulesRepo,
        clock: Clock,
        fetch: MarketRulesSource | None,
    ) -> None:
        self.book = book
        self._settings = settings
        self._repo = repo
        self._clock = clock
        self._fetch = fetch
        self._symbols = list(settings.trading.symbols)  # grows as a dynamic universe does

    @property
    def fetches(self) -> bool:
        """Return whether these rules come from a venue (and are refreshed)."""
        return self._fetch is not None

    async def start(self, series: Mapping[str, CandleSeries]) -> None:
        """Resolve every traded symbol's rules (see the class docstring)."""
        await self._resolve(self._symbols, series, at_start=True)

    async def extend(self, symbols: Sequence[str], series: Mapping[str, CandleSeries]) -> None:
        """Resolve the rules of symbols that start trading (a dynamic universe's) as at start,
        and refresh them from now on. Live, a venue that cannot answer raises (no entry
        without the venue's rules)."""
        new = [s for s in symbols if s not in self._symbols]
        if new:
            await self._resolve(new, series, at_start=False)
            self._symbols += new

    async def _resolve(
        self, symbols: list[str], series: Mapping[str, CandleSeries], *, at_start: bool
    ) -> None:
        settings = self._settings
        stored = await self._repo.load(settings.exchange.name, settings.exchange.market_type)
        self.book.use(resolved(settings, symbols, stored=stored, series=series))
        if self._fetch is not None:
            try:
                await self._keep(await self._fetch(symbols), at_start=at_start)
                return
            except (DependencyError, DataError) as exc:
                if settings.trading.mode is TradingMode.LIVE:
                    raise  # real orders need the venue's own rules
                log.warning("%s market rules not fetched (%s)", settings.exchange.name, exc)
        in_force = {s: self.book.in_force(s) for s in symbols}
        traded = [*self._symbols, *(s for s in symbols if s not in self._symbols)]
        for line in notices(settings, in_force, traded):
            log.warning("%s", line)

    async def refresh(self) -> str:
        """Fetch the venue's rules again; return which symbols' rules changed."""
        if self._fetch is None:
            return "no venue to fetch market rules from"
        symbols = list(self._symbols)
        before = {s: self.book.rules(s) for s in symbols}
        fetched = await self._fetch(symbols)
        await self._keep(fetched, at_start=False)
        changed = [s for s, r in fetched.items() if before.get(s) != r]
        return f"market rules of {len(fetched)} symbol(s) fetched" + (
            f"; changed: {', '.join(changed)}" if changed else ""
        )

    async def _keep(self, fetched: Mapping[str, MarketRules], *, at_start: bool) -> None:
        settings = self._settings
        trading, venue = settings.trading, settings.exchange.name
        for symbol, rule in fetched.items():
            if rule.max_leverage is not None and trading.max_leverage > rule.max_leverage:
                message = (
                    f"QT__TRADING__MAX_LEVERAGE={trading.max_leverage} is more than "
                    f"{venue} allows on {symbol} ({rule.max_leverage})"
                )
                if at_start:
                    raise ConfigError(message)
                log.error("%s: the venue will refuse new entries", message)
        now_ms = self._clock.now_ms()
        await self._repo.save(
            [
                StoredRules(
                    exchange=venue,
                    market=settings.exchange.market_type.value,
                    rules=rule,
                    fetched_ms=now_ms,
                )
                for rule in fetched.values()
            ]
        )
        self.book.use_venue(fetched, note=fetched_note(venue, now_ms))
        for symbol in fetched:
            log.info("market rules %s", describe(symbol, self.book.in_force(symbol)))


async def download_rules(
    fetch: MarketRulesSource,
    repo: MarketRulesRepo,
    *,
    settings: Settings,
    exchange: str,
    symbols: list[str],
    now_ms: int,
) -> str:
    """Fetch the venue's rules of ``symbols`` and store them (``qt data download``); return
    one line saying what was stored, or why nothing was (the candles are kept either way)."""
    try:
        fetched = await fetch(symbols)
    except (DependencyError, DataError, ConfigError) as exc:
        return f"market rules not stored: {exc}"
    market = settings.exchange.market_type.value
    await repo.save(
        [
            StoredRules(exchange=exchange, market=market, rules=rule, fetched_ms=now_ms)
            for rule in fetched.values()
        ]
    )
    return f"market rules of {', '.join(fetched)} stored ({exchange} {market})"
