"""Per-symbol candle history and the signals computed on it.

Providers are causal (row i depends only on candles 0..i), so a frame computed once over a
whole series gives the same signal for a candle as a frame recomputed on the history up to that
candle, provided both start at the same candle. The backtest seeds the whole series and looks
signals up; the live path appends each candle and recomputes on its history. Both read
``signal_at`` the same way, which is what makes backtest and live produce the same orders.

The book also holds each symbol's market regime (``core.brains.regime``, causal like the
signals), computed on the same history: ``regime_at`` is how the engine knows the regime of
every symbol's newest closed candle in backtest, demo and run alike.

A running process computes them off its event loop (``offload``, ``prepare``): a full compute
of the ensemble (at start, after a roll-over of the history, after a retrain) takes a
fraction of a second per symbol, which the loop must not wait on (chat, fills, jobs). The
backtest computes in line: the same frames, without a thread per candle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.brains.regime import Regime, RegimeConfig, RegimeMemo, detect_regimes
from core.domain.explanations import EntryExplanation
from core.domain.market import Candle, CandleSeries, concat_series, timeframe_to_ms
from core.domain.policy import Policy
from core.signals.base import Signal, SignalFrame, SignalProvider
from core.signals.handover import compute_many, explain, use_policy

MAX_HISTORY = 5_000  # candles a running process keeps per symbol
_PREPARE_ATTEMPTS = 3  # computes of one prepare while the provider keeps being replaced


@dataclass(slots=True)
class _SymbolBook:
    history: CandleSeries
    frame: SignalFrame | None = None
    pending: list[Candle] = field(default_factory=list)
    regimes: npt.NDArray[np.int8] | None = None  # of ``history``; None: not computed yet
    memo: RegimeMemo = field(default_factory=RegimeMemo)  # what the next history reuses


class SignalBook:
    """Hold each symbol's history (bounded) and answer ``signal_at`` from cached frames."""

    def __init__(
        self,
        provider: SignalProvider,
        *,
        max_history: int = MAX_HISTORY,
        regime: RegimeConfig | None = None,
        offload: bool = False,
    ) -> None:
        if max_history < provider.warmup_candles:
            raise ValueError(
                f"max_history {max_history} is shorter than the provider's warm-up "
                f"({provider.warmup_candles} candles)"
            )
        self.regime_config = regime or RegimeConfig()
        if max_history < self.regime_config.warmup_candles:  # live regimes: unknown for ever
            raise ValueError(
                f"max_history {max_history} is shorter than the regime warm-up "
                f"({self.regime_config.warmup_candles} candles)"
            )
        self.provider = provider
        self._max_history = max_history
        # Past the bound the history drops a fifth at once (never below the warm-up): a
        # provider reuses its work on a history that only grew (the ensemble: its members'
        # predictions of the old rows), which one candle dropped per candle would defeat.
        self._keep_on_roll = max(provider.warmup_candles, max_history - max_history // 5)
        self._books: dict[str, _SymbolBook] = {}
        self.offload = offload
        self._generation = 0  # bumped by invalidate: a frame computed before it is stale
        self._computing = asyncio.Lock()  # one compute at a time: providers keep state
        self._policy: Callable[[], Policy] | None = None
        self._policy_seen: Policy | None = None

    def follow_policy(self, policy: Callable[[], Policy]) -> None:
        """Hand the provider each new policy snapshot (``policy()``) before it computes: the
        Strategy Brain's choices in force (``core.signals.handover.use_policy``)."""
        self._policy = policy

    @contextlib.asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """Hold the compute lock: no compute of ``prepare`` runs in a worker thread while the
        provider's own state is read (the Strategy Brain gathering the ensemble's record)."""
        async with self._computing:
            yield

    def _sync_policy(self) -> None:
        """Give the provider the policy in force if it changed; forget the frames when its
        signals may have (computed again on the same histories)."""
        if self._policy is None:
            return
        policy = self._policy()
        if policy is self._policy_seen:
            return
        self._policy_seen = policy
        if use_policy(self.provider, policy):
            self.invalidate()

    async def prepare(self, symbol: str) -> None:
        """With ``offload``: compute the symbol's signals and regimes on its newest history in
        a worker thread, so the look-ups that follow find them (without: nothing, they
        compute in line). A frame whose provider changed meanwhile (``invalidate``), or of a
        history seeded again meanwhile, is dropped and computed again, in the thread too."""
        await self.prepare_many([symbol])

    async def prepare_many(self, symbols: Sequence[str]) -> None:
        """``prepare`` several symbols at once (a candle closed on each): one worker-thread
        call computes all their frames (``compute_many``: the ensemble sends the new rows of
        every symbol through each member in one call) and regimes, the same rules as
        ``prepare`` for each (a frame computed before an ``invalidate``, or on a history
        seeded again meanwhile, is dropped and that symbol computed again)."""
        wanted = [s for s in dict.fromkeys(symbols) if s in self._books]
        if not self.offload or not wanted:
            return
        await self._computing.acquire()
        computing: asyncio.Task[list[tuple[SignalFrame, npt.NDArray[np.int8]]]] | None = None
        try:
            self._sync_policy()  # here, on the loop: no compute runs meanwhile
            for _ in range(_PREPARE_ATTEMPTS):  # a hand-over every compute: look-ups compute
                todo = []
                for symbol in wanted:
                    book = self._books.get(symbol)
                    if book is None:
                        continue
                    self._flush(book)
                    if book.frame is None or book.regimes is None:
                        todo.append((symbol, book, book.history))
                if not todo:
                    return
                generation = self._generation
                work = [(book, history) for _, book, history in todo]
                computing = asyncio.create_task(asyncio.to_thread(self._compute_many, work))
                results = await asyncio.shield(computing)  # cancelled: it runs on
                computing = None
                for (symbol, book, history), (frame, regimes) in zip(todo, results, strict=True):
                    if self._books.get(symbol) is not book or book.history is not history:
                        continue  # seeded again meanwhile (a universe change)
                    book.regimes = regimes
                    if generation == self._generation:
                        book.frame = frame
        finally:
            if computing is not None and not computing.done():
                # Cancelled (a stop) while the thread runs on: the next compute waits for it,
                # so two never run at once on the provider's state.
                computing.add_done_callback(self._release_after)
            else:
                self._computing.release()

    def _release_after(self, orphan: asyncio.Task[object]) -> None:
        if not orphan.cancelled():
            orphan.exception()  # nobody awaits it any more: retrieved, not warned about
        self._computing.release()

    def _compute_many(
        self, work: Sequence[tuple[_SymbolBook, CandleSeries]]
    ) -> list[tuple[SignalFrame, npt.NDArray[np.int8]]]:
        """Return each book's frame and regimes of ``history`` (those it holds: reused)."""
        held = [book.frame for book, _ in work]  # read once: the loop may invalidate meanwhile
        computed = iter(
            compute_many(
                self.provider, [h for f, (_, h) in zip(held, work, strict=True) if f is None]
            )
        )
        out = []
        for frame, (book, history) in zip(held, work, strict=True):
            regimes = book.regimes
            if regimes is None:
                regimes = detect_regimes(history, self.regime_config, book.memo)
            out.append((next(computed) if frame is None else frame, regimes))
        return out

    def seed(self, series: CandleSeries) -> None:
        """Replace a symbol's history with ``series`` (warm-up, or a whole backtest series).

        A seeded series is kept whole; only appended candles make the history roll over at
        ``max_history`` (to its newest four fifths), so a long-running process stays bounded.
        """
        self._books[series.symbol] = _SymbolBook(history=series)

    def histories(self) -> dict[str, CandleSeries]:
        """Return each symbol's history as computed last (candles appended since, not yet
        computed, are left out: the learning manager reads what the provider predicted)."""
        return {symbol: book.history for symbol, book in self._books.items()}

    def invalidate(self) -> None:
        """Forget every computed frame (the provider changed, e.g. a retrained model): the
        next look-up computes them again on the same histories."""
        self._generation += 1
        for book in self._books.values():
            book.frame = None

    def frame(self, symbol: str) -> SignalFrame | None:
        """Return the signals of the symbol's whole history (computing them if needed)."""
        book = self._books.get(symbol)
        if book is None:
            return None
        if not self.offload:
            self._sync_policy()
        if book.frame is None or book.pending:
            self._flush(book)
            book.frame = self.provider.compute(book.history)
        return book.frame

    def regimes(self, symbol: str) -> npt.NDArray[np.int8] | None:
        """Return the regime of every candle of the symbol's history (``Regime`` codes)."""
        book = self._books.get(symbol)
        if book is None:
            return None
        self._flush(book)
        if book.regimes is None:  # signals recomputed (a retrain) leave the regimes alone
            book.regimes = detect_regimes(book.history, self.regime_config, book.memo)
        return book.regimes

    def regime_at(self, symbol: str, ts_ms: int) -> Regime:
        """Return the regime of the candle that opened at ``ts_ms`` (UNKNOWN if not held)."""
        regimes = self.regimes(symbol)
        if regimes is None:
            return Regime.UNKNOWN
        ts = self._books[symbol].history.ts_ms
        i = int(ts.searchsorted(ts_ms))
        return Regime(int(regimes[i])) if i < len(ts) and int(ts[i]) == ts_ms else Regime.UNKNOWN

    def append(self, symbol: str, timeframe: str, candle: Candle) -> None:
        """Add a closed candle; candles the history already holds are ignored."""
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _SymbolBook(history=CandleSeries.empty(symbol, timeframe))
        last = book.history.ts_ms[-1] if len(book.history) else None
        newest_pending = book.pending[-1].ts_ms if book.pending else last
        if newest_pending is not None and candle.ts_ms <= newest_pending:
            return
        book.pending.append(candle)

    def signal_at(self, symbol: str, ts_ms: int) -> Signal | None:
        """Return the signal of the candle that opened at ``ts_ms`` (None if unknown)."""
        book = self._books.get(symbol)
        if book is None:
            return None
        if not self.offload:  # offloaded: prepare gives it, under the compute lock
            self._sync_policy()
        if book.frame is not None and not book.pending:
            i = book.frame.index_of(ts_ms)
            if i is not None:
                return Signal.at(book.frame, i)
        self._flush(book)
        book.frame = self.provider.compute(book.history)
        i = book.frame.index_of(ts_ms)
        return None if i is None else Signal.at(book.frame, i)

    def closes(
        self, symbol: str, until_open_ms: int, count: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None:
        """Return the open times and closes of the symbol's newest ``count`` candles that
        opened at or before ``until_open_ms`` (a backtest holds its whole series: only those
        closed by now are seen), or None when the book holds no history of it."""
        book = self._books.get(symbol)
        if book is None:
            return None
        self._flush(book)
        history = book.history
        end = int(history.ts_ms.searchsorted(until_open_ms, side="right"))
        start = max(0, end - count)
        return history.ts_ms[start:end], history.close[start:end]

    def explain(self, symbol: str, ts_ms: int, regime: str) -> EntryExplanation | None:
        """Return the provider's explanation of its signal at that candle (None: it gives
        none), in ``regime`` (the book's own, ``regime_at``). Asked only for candles the
        engine enters on, right after ``signal_at``."""
        return explain(self.provider, symbol, ts_ms, regime)

    def closes_until(self, symbol: str, until_ms: int, n: int) -> npt.NDArray[np.float64]:
        """Return the closes of at most the ``n`` newest candles of ``symbol`` closed by
        ``until_ms`` (a backtest seeds whole series: nothing after now may be read). Reads
        without flushing: a compute in a worker thread may be reading the history."""
        book = self._books.get(symbol)
        if book is None or n <= 0:
            return np.empty(0, np.float64)
        h = book.history
        tf_ms = timeframe_to_ms(h.timeframe)
        held = int(h.ts_ms.searchsorted(until_ms - tf_ms, side="right"))
        pending = [c.close for c in book.pending if c.ts_ms + tf_ms <= until_ms]
        closes = np.concatenate([h.close[max(0, held - n) : held], np.asarray(pending, np.float64)])
        return closes[-n:]

    def last_close_ms(self, symbol: str) -> int | None:
        """Return when the newest candle held of ``symbol`` closed (None: none held)."""
        book = self._books.get(symbol)
        if book is None:
            return None
        tf_ms = timeframe_to_ms(book.history.timeframe)
        if book.pending:
            return book.pending[-1].ts_ms + tf_ms
        return int(book.history.ts_ms[-1]) + tf_ms if len(book.history) else None

    def _flush(self, book: _SymbolBook) -> None:
        if not book.pending:
            return
        p = book.pending
        fresh = CandleSeries.from_columns(
            book.history.symbol,
            book.history.timeframe,
            np.fromiter((c.ts_ms for c in p), np.int64, len(p)),
            np.fromiter((c.open for c in p), np.float64, len(p)),
            np.fromiter((c.high for c in p), np.float64, len(p)),
            np.fromiter((c.low for c in p), np.float64, len(p)),
            np.fromiter((c.close for c in p), np.float64, len(p)),
            np.fromiter((c.volume for c in p), np.float64, len(p)),
        )
        merged = concat_series([book.history, fresh])
        if len(merged) > self._max_history:
            merged = merged.slice(len(merged) - self._keep_on_roll)
        book.history = merged
        book.pending = []
        book.frame = book.regimes = None  # both are of the history before
