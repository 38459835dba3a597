"""What start-up does with a position at the venue that no trade of the engine's explains.

Such a position was opened by hand, by something else on the account, or by an order this
process sent and lost before recording it (``Engine.unknown_positions``). One on the other
side of the engine's trade in its symbol counts, and so does one on its side that holds more
than the trade explains: its entry's filled amount (its entry order's whole amount while that
still works) plus a tolerance of 1 % of it or two of the symbol's amount steps, whichever is
larger (``Engine.excess``): someone added to it by hand, or an entry fill the bot lost. Step
rounding stays inside it, a fill still on its way at start is inside the entry order's
amount (and the start's venue sync books what the venue says filled before this), and what
makes the venue hold less than the trade (exits, spot fees taken in the base, a venue lagging
behind our fills) is the trade's: its exits are reduce-only. The engine never trades such a
position blindly. It is reported (the engine's own trade in its symbol said beside it: "the
venue holds 55 while the bot's long trade in BTC/USDT is 50"), and
``QT__TRADING__UNKNOWN_POSITIONS`` says what else happens:

- ``reduce`` (the default, fail closed): a critical alert, and trading goes REDUCING (no new
  entries, exits go on) until an operator has looked and resumes (``/resume``). A HALTED
  process stays HALTED: a reconciliation never lifts a halt, and a daily loss halt it finds
  is then left to an operator too (not lifted by the next UTC day).
- ``warn``: a warning alert only, for an account that holds positions of its own beside the
  bot's.
- ``adopt``: the engine takes each over as its own trade (``Engine.adopt``,
  ``core.services.adoption``): its side, amount and entry price, a stop placed at the venue
  (the Exit Brain's distance from the entry, or from the current price when that is past it
  already) and from then on the normal exit plan; a warning alert says so. One it cannot
  adopt is handled as ``reduce`` handles it, the alert saying why: the stop refused or lost,
  no plan fits, the engine trades its symbol already (the other side; or this side, the
  venue holding more than the trade: adopting it over the trade would lose the trade's own
  record), or the process does not trade its symbol ("the process does not trade SOL/USDT":
  it gets no candles of it, so no trailing, signal or holding-time exit; the symbols are
  ``EngineConfig.symbols``, which the process builds from ``QT__TRADING__SYMBOLS`` or, with a
  dynamic universe, its first selection, the symbols fed at start; a name the exchange port
  spells otherwise than the list is not one of them). An adopted trade is stored like any
  other: after a restart it is the engine's, not unknown.

Checked at every start, so a position still there after a restart is reported again. A
venue whose positions cannot be read at start (``venue_positions``) is asked again, a
bounded number of times with a growing pause, each failure said; after the last the start
fails with the reason: the process never trades on a book it could not read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from core.clock import Clock
from core.domain.enums import TradingState
from core.domain.events import AlertRaised
from core.domain.portfolio import Position
from core.errors import DependencyError
from core.services.bus import EventBus
from core.services.trading_state import TradingStateService

log = logging.getLogger(__name__)

ACTOR = "reconciliation"
UnknownPositions = Literal["reduce", "warn", "adopt"]
Adopt = Callable[[Position], Awaitable[str]]  # "" when adopted, else why not
Note = Callable[[Position], str]  # what the engine's own trade in its symbol is ("" none)
READ_PAUSES_S = (1.0, 2.0, 4.0, 8.0, 16.0)  # between the start's reads of the venue's book


async def venue_positions(
    read: Callable[[], Awaitable[list[Position]]],
    *,
    pauses_s: Sequence[float] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> list[Position]:
    """Return what ``read`` returns, asking again after each pause while the venue cannot
    answer (``DependencyError``: down, timing out, rate limiting); raise a
    ``DependencyError`` saying so after the last try (``pauses_s``: ``READ_PAUSES_S``)."""
    pauses_s = READ_PAUSES_S if pauses_s is None else pauses_s
    for attempt, pause in enumerate(pauses_s, start=1):
        try:
            return await read()
        except DependencyError as e:
            log.warning(
                "reconciliation: the venue's positions could not be read (try %d): %s; "
                "asking again in %g s, not trading meanwhile",
                attempt,
                e,
                pause,
            )
            await sleep(pause)
    try:
        return await read()
    except DependencyError as e:
        raise DependencyError(
            f"the venue's positions could not be read at start ({len(pauses_s) + 1} tries, "
            f"the last: {e}): not trading on a book it could not read"
        ) from e


def describe(positions: Sequence[Position], note: Note | None = None) -> str:
    """Return the positions in one line: symbol, side, amount, entry price, and what ``note``
    says of each (the engine's own trade in its symbol) in brackets."""
    said = []
    for p in positions:
        noted = note(p) if note is not None else ""
        said.append(f"{p.symbol} {p.side.value} {p.amount} at {p.entry_price}")
        if noted:
            said[-1] += f" ({noted})"
    return "; ".join(said)


async def reconcile_positions(
    unknown: Sequence[Position],
    *,
    rule: UnknownPositions,
    trading_state: TradingStateService,
    bus: EventBus,
    clock: Clock,
    adopt: Adopt | None = None,
    note: Note | None = None,
) -> str:
    """Apply ``rule`` to the venue's ``unknown`` positions; return what was done ("" when
    there were none). ``adopt`` takes one over (rule ``adopt``; None: none can be); ``note``
    says what the engine's own trade in a position's symbol is (``Engine.trade_note``; with
    ``adopt`` the reason it was not adopted says so instead)."""
    if not unknown:
        return ""
    adopted = why_not = ""
    if rule == "adopt":
        unknown, adopted, why_not = await _adopt(unknown, adopt, bus, clock)
        if not unknown:
            return adopted
    what = describe(unknown, None if rule == "adopt" else note)
    detail = f"{len(unknown)} position(s) at the venue no trade of the bot's explains: {what}"
    if why_not:
        detail += f" (not adopted: {why_not})"
    if rule == "warn":
        log.warning("reconciliation: %s (QT__TRADING__UNKNOWN_POSITIONS=warn)", detail)
        said = f"{detail}; left alone, trading goes on (QT__TRADING__UNKNOWN_POSITIONS=warn)"
        await bus.publish(
            AlertRaised(
                ts_ms=clock.now_ms(), severity="warning", title="unknown positions", detail=said
            )
        )
        return said
    state = await trading_state.current()
    if state is TradingState.ACTIVE:
        state = TradingState.REDUCING
    # Asked for even on top of a halt or reduce (it stays as it is, its reason too): the
    # risk limits' daily halt is then no longer their own, so the next UTC day does not lift
    # it to what was before it; an operator does, having looked.
    await trading_state.set(state, reason=detail, actor=ACTOR)
    said = (
        f"{detail}; trading is {state.value} (no new entries) until an operator has looked "
        "and resumes (/resume); they are not traded by the bot"
    )
    log.error("reconciliation: %s", said)
    await bus.publish(
        AlertRaised(
            ts_ms=clock.now_ms(), severity="critical", title="unknown positions", detail=said
        )
    )
    return f"{adopted}; {said}" if adopted else said


async def _adopt(
    unknown: Sequence[Position], adopt: Adopt | None, bus: EventBus, clock: Clock
) -> tuple[list[Position], str, str]:
    """Adopt each of ``unknown``; return those not adopted, what was said of those adopted
    ("" when none) and why each of the others was not ("" when none)."""
    left: list[Position] = []
    why_not: list[str] = []
    taken: list[Position] = []
    for position in unknown:
        why = "nothing adopts positions here" if adopt is None else await adopt(position)
        if why:
            left.append(position)
            why_not.append(f"{position.symbol} {position.side.value}: {why}")
            log.error("reconciliation: %s not adopted: %s", describe([position]), why)
        else:
            taken.append(position)
    said = ""
    if taken:
        said = (
            f"{len(taken)} position(s) at the venue the bot did not open adopted as its own "
            f"trades, each with a stop at the venue: {describe(taken)} "
            "(QT__TRADING__UNKNOWN_POSITIONS=adopt)"
        )
        log.warning("reconciliation: %s", said)
        await bus.publish(
            AlertRaised(
                ts_ms=clock.now_ms(), severity="warning", title="positions adopted", detail=said
            )
        )
    return left, said, "; ".join(why_not)
