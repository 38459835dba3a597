"""``qt run`` with a dynamic universe: the first selection, the refresh job's target, and what
a symbol needs before it may trade (its warm-up candles, the venue's rules for it).

The feed polls what ``wanted`` says each round: the universe and every symbol with an open
trade, so a symbol that left is polled (and its trade managed) until the trade is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.market_rules import ProcessRules
from core.clock import Clock
from core.config import Settings
from core.domain.market import CandleSeries, grid_floor_ms, timeframe_to_ms
from core.errors import ConfigError, DataError, DependencyError
from core.exchange.ccxt import CcxtMarketData
from core.market.download import download_candles
from core.market.stored import load_checked
from core.ports import CandleRepo, KeyValueRepo, StateKey
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.trade_codec import decode_trades
from core.services.universe import Universe, publish_change
from core.services.universe_refresh import UniverseRefresher

log = logging.getLogger(__name__)


class LiveUniverse:
    """The dynamic universe of one ``qt run`` process (see module docstring)."""

    def __init__(
        self, settings: Settings, market_data: CcxtMarketData, clock: Clock, *, warmup: int
    ) -> None:
        self._settings = settings
        self._md = market_data
        self._clock = clock
        self._warmup = warmup
        self.universe = Universe()
        self.refresher = UniverseRefresher(
            source=market_data,
            rules=settings.universe.rules(settings.trading.quote_currency),
            universe=self.universe,
            clock=clock,
        )
        self.refresher.on_enter = self._warm_up
        self.every_s = settings.universe.refresh_hours * 3600
        self.first: tuple[str, ...] = ()
        self._engine: Engine | None = None
        self._bus: EventBus | None = None
        self._candles: CandleRepo | None = None
        self._source = ""
        self._rules: ProcessRules | None = None
        self._state: KeyValueRepo | None = None

    async def first_selection(self) -> tuple[str, ...]:
        """Select the universe to start with; the static list if the venue cannot answer.
        ConfigError when no symbol passes the filters (nothing to trade)."""
        fallback = tuple(self._settings.trading.symbols)
        try:
            self.first = await self.refresher.select()
        except (DependencyError, DataError) as e:
            log.warning("universe: the venue did not answer, starting on %s: %s", fallback, e)
            self.first = fallback
        if not self.first:
            raise ConfigError(
                "no symbol passes the universe filters (QT__UNIVERSE__QUOTE, MIN_PRICE, "
                "MIN_QUOTE_VOLUME, BLACKLIST, MIN_LISTING_DAYS): loosen them"
            )
        return self.first

    def bind(
        self,
        engine: Engine,
        bus: EventBus,
        candles: CandleRepo,
        source: str,
        rules: ProcessRules,
        state: KeyValueRepo,
    ) -> None:
        """Gate ``engine``'s entries by this universe; warm entering symbols into ``candles``
        (stored under ``source``) and give them market ``rules``; publish changes on ``bus``;
        ``state`` holds the engine's trades saved before a restart."""
        self._engine, self._bus, self._candles, self._source = engine, bus, candles, source
        self._rules, self._state = rules, state
        engine.universe = self.universe

    async def publish_first(self) -> None:
        """Record the first selection from now on (the audit trail's first change)."""
        if self._bus is not None:
            await publish_change(self._bus, self.universe, self._clock.now_ms(), self.first)

    async def warm_restored(self) -> None:
        """Warm up the symbols of trades saved before a restart that the first selection left
        out: they are polled and managed until they close, with candles and rules like the
        others."""
        saved = await self._state.get(StateKey.ENGINE_TRADES) if self._state else None
        if not saved:
            return
        try:
            symbols = list(decode_trades(saved).trades)
        except (ValueError, KeyError, TypeError):
            return  # the engine's start refuses them, naming why
        left_out = [s for s in symbols if s not in self.first]
        if left_out:
            log.info("universe: warming up %s for their open trades", ", ".join(left_out))
            await self._warm_up(left_out)

    async def refresh(self) -> str:
        """The ``universe_refresh`` job's target."""
        if self._bus is None:
            return "not started"
        return await self.refresher.refresh(self._bus)

    def wanted(self) -> list[str]:
        """Return the symbols to poll: the universe, then those with an open trade."""
        members = list(self.universe.current if self.universe.started else self.first)
        trades = self._engine.trades if self._engine is not None else {}
        return members + [s for s in trades if s not in members]

    async def _warm_up(self, symbols: Sequence[str]) -> None:
        """Download and seed the recent candles of entering symbols, then resolve their market
        rules as at start (the venue's; else stored or inferred from these candles)."""
        engine, candles, rules = self._engine, self._candles, self._rules
        if engine is None or candles is None or rules is None:
            return
        tf = self._settings.trading.timeframe
        now_ms = self._clock.now_ms()
        since_ms = grid_floor_ms(now_ms, tf) - self._warmup * timeframe_to_ms(tf)
        seeded: dict[str, CandleSeries] = {}
        for symbol in symbols:
            await download_candles(
                self._md,
                candles,
                exchange=self._source,
                symbol=symbol,
                timeframe=tf,
                since_ms=since_ms,
                until_ms=now_ms,
                now_ms=now_ms,
            )
            # Checked as the start-up warm-up is (an earlier version's rows can be bad).
            checked = await load_checked(
                candles, self._source, symbol, tf, now_ms=now_ms, start_ms=since_ms
            )
            if checked.notice:
                log.warning("%s", checked.notice)
            series = checked.series
            if len(series):
                engine.signals.seed(series)
                engine.observe_price(symbol, float(series.close[-1]))
                seeded[symbol] = series
        await rules.extend(symbols, seeded)
