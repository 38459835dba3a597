"""Live sizing: the size multiplier the engine applies to an entry's fixed-fractional risk size.

Per entry the engine asks ``decide``: the configured method (``core.services.sizing_sources``)
sees the entry's state, built only from what is known at the decision (the entry's features
and the ``SizingAccount`` of the trades this service saw open and close), and its multiplier
is bounded by ``core.brains.sizing_policies.within_policy`` (``[0, cap]``, at most 1 while the
brains cut sizes). The engine multiplies the risk budget by it *before* the position,
exposure and cash caps and the risk gate: the method's size is an input to them, never a way
around them.

Fail closed: a method that refuses (stale, spec mismatch, artifact refused), raises, or
returns a value that is not finite sizes that entry fixed-fractional (multiplier 1, bounded
the same way) and a ``SizingFallback`` says why, once per reason while it lasts: a reason
is said again only after the method sized an entry itself or failed for another reason.

A shadow (``shadow_with``: an RL sizer version the learning manager is trying out,
``core.services.sizer_learning``) sizes every entry beside the method, on the same state and
bounded the same way, without trading: its multiplier goes into the entry's ``SizingNote``
(the audit trail) and, at the close, into ``shadow_record`` as (the applied multiplier, the
shadow's, the trade's outcome per unit of multiplier), from which it is judged. Where a cap
(position, exposure, cash) cut the order below the size asked, the multiplier it bound at
stands for both: the account books that one (``opened``'s ``cap``), the shadow's is cut to
it (the same cap would have held a larger size). The account
(recent outcomes, exposure) is the trading method's: the shadow sees the state its entries
would really meet, not the one its own sizes would have made. ``serve`` hands over the
method that sizes (a promotion, a rollback) without a restart.

The account (its open trades' multipliers and the equity each was sized on, the recent
record) is saved by the engine with its open trades (``dump``, ``StateKey.SIZING_ACCOUNT``)
and restored at its start (``load``): a restart resumes the same record and exposure. A
saved account that cannot be read starts empty, with an error in the log: what it holds
informs sizes, it moves no money.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Mapping
from decimal import Decimal

from core.brains.sizing_policies import within_policy
from core.clock import Clock
from core.domain.events import Event, SizingFallback, TradeClosed
from core.domain.explanations import SizingNote
from core.domain.policy import Policy
from core.errors import ConfigError, DataError
from core.ml.rl.book import SizingAccount
from core.services.bus import EventBus
from core.services.sizing_sources import (
    FallbackReason,
    FixedSizing,
    SizingSource,
    SizingState,
)

log = logging.getLogger(__name__)
DEFAULT_CAP = 1.5
SHADOW_RECORD = 1000  # the newest closed trades a shadow's record keeps


class SizingService:
    """Choose each entry's size multiplier and fall back closed (see module docstring)."""

    def __init__(
        self,
        *,
        bus: EventBus,
        clock: Clock,
        source: SizingSource | None = None,
        cap: float = DEFAULT_CAP,
        account: SizingAccount | None = None,
        why: str = "",
    ) -> None:
        self.source: SizingSource = source or FixedSizing()
        self.why = why  # why this method sizes (the RL policy's gate), for /models
        if not (math.isfinite(cap) and cap > 0):
            raise ConfigError(f"the sizing cap must be a finite multiplier > 0, was {cap}")
        self.cap = cap
        self.account = account or SizingAccount()
        self._bus = bus
        self._clock = clock
        self._said: FallbackReason | None = None  # the fallback announced and still lasting
        self._equity: dict[str, Decimal] = {}  # trade id -> the equity it was sized on
        self.shadow: SizingSource | None = None
        self.shadow_id = ""  # the registry version shadowing ("" with none)
        # trade id -> (multiplier applied, the shadow's) of the open trades it shadowed
        self._shadowed: dict[str, tuple[float, float]] = {}
        # (multiplier applied, the shadow's, outcome per unit multiplier) of each closed one
        self.shadow_record: list[tuple[float, float, float]] = []
        bus.subscribe(TradeClosed.topic, self._on_closed, name="sizing.on_closed")

    @property
    def method(self) -> str:
        """Return the configured method's name."""
        return self.source.method

    def serve(self, source: SizingSource, why: str) -> None:
        """Size entries with ``source`` from the next one on (a promotion, a rollback)."""
        self.source, self.why, self._said = source, why, None

    def shadow_with(self, source: SizingSource | None, version_id: str = "") -> None:
        """Shadow ``source`` (the registry's ``version_id``), or none; another version
        starts its record afresh."""
        if version_id != self.shadow_id:
            self._shadowed.clear()
            self.shadow_record.clear()
        self.shadow, self.shadow_id = source, version_id if source is not None else ""

    def status_line(self) -> str:
        """Return one line for /models: the method that sizes, why, a fallback, and the
        shadow's record (or why it sizes none)."""
        now = self._clock.now_ms()
        line = f"sizing: {self.method}" + (f" ({self.why})" if self.why else "")
        refused = self.source.refusal(now)
        if refused is not None:
            line = f"{line}; every entry sizes fixed now ({refused[0].value}: {refused[1]})"
        elif self._said is not None:
            line = f"{line}; the last entry fell back to fixed ({self._said.value})"
        if self.shadow is not None:
            line += f"; shadow {self.shadow_id}: {len(self.shadow_record)} closed trade(s) sized"
            if (no := self.shadow.refusal(now)) is not None:
                line += f", it sizes no entry now ({no[0].value}: {no[1]})"
        return line

    async def decide(
        self, *, symbol: str, decision_ms: int, entry: Mapping[str, float], policy: Policy
    ) -> SizingNote:
        """Return how to size this entry: the method, its bounded multiplier, or the fixed
        fallback and why (publishing ``SizingFallback`` when the reason is new)."""
        failure = self.source.refusal(self._clock.now_ms())
        raw = math.nan
        state: SizingState | None = None
        if failure is None or self.shadow is not None:
            try:
                state = SizingState(
                    decision_ms=decision_ms,
                    entry=entry,
                    account=self.account.features(decision_ms),
                    recent_outcomes=self.account.recent_outcomes,
                )
            except DataError as e:
                failure = failure or (FallbackReason.OBSERVATION, str(e))
        shadow = None if state is None else self._shadow_size(state, policy)
        if failure is None and state is not None:
            try:
                raw = float(self.source.multiplier(state))
            except DataError as e:
                failure = FallbackReason.OBSERVATION, str(e)
            except Exception as e:  # noqa: BLE001 - a failing method sizes fixed, never the entry
                failure = FallbackReason.ERROR, f"{type(e).__name__}: {e}"
            else:
                if not math.isfinite(raw):
                    failure = FallbackReason.NON_FINITE, f"it returned {raw}"
        if failure is None:
            if self._said is not None:
                log.info("sizing: %s sizes again (was falling back: %s)", self.method, self._said)
            self._said = None
            return SizingNote(
                method=self.method,
                multiplier=within_policy(raw, policy, cap=self.cap),
                shadow=shadow,
            )
        reason, detail = failure
        if reason is not self._said:
            self._said = reason
            log.warning("sizing: %s falls back to fixed (%s): %s", self.method, reason, detail)
            await self._bus.publish(
                SizingFallback(
                    ts_ms=self._clock.now_ms(),
                    method=self.method,
                    reason=reason.value,
                    detail=detail,
                    symbol=symbol,
                )
            )
        return SizingNote(
            method=FixedSizing.method,
            multiplier=within_policy(1.0, policy, cap=self.cap),
            fallback=reason.value,
            shadow=shadow,
        )

    def _shadow_size(self, state: SizingState, policy: Policy) -> float | None:
        """Return the shadow's bounded multiplier for ``state`` (None: no shadow, or it
        cannot size this entry: nothing to judge it on)."""
        shadow = self.shadow
        if shadow is None or shadow.refusal(self._clock.now_ms()) is not None:
            return None
        try:
            raw = float(shadow.multiplier(state))
        except Exception as e:  # noqa: BLE001 - a shadow's failure never touches the entry
            log.warning("sizing: the shadow %s failed on an entry: %s", self.shadow_id, e)
            return None
        return within_policy(raw, policy, cap=self.cap) if math.isfinite(raw) else None

    def dump(self) -> str:
        """Return the account and the equity each open trade was sized on, as JSON."""
        doc = {
            "account": self.account.to_json(),
            "sized_on": {k: str(v) for k, v in self._equity.items()},
            "shadow": {
                "id": self.shadow_id,
                "open": {k: list(v) for k, v in self._shadowed.items()},
                "record": [list(r) for r in self.shadow_record],
            },
        }
        return json.dumps(doc, sort_keys=True, allow_nan=False)

    def load(self, text: str | None, open_trades: Collection[str]) -> None:
        """Restore what ``dump`` saved, keeping only the trades still open (``open_trades``:
        the engine's, before it hears what the venue did meanwhile)."""
        if not text:
            return
        try:
            doc = json.loads(text)
            sized_on = {str(k): Decimal(v) for k, v in doc["sized_on"].items()}
            # the P&L at the close is divided by it: NaN, infinite or <= 0 books nonsense
            if not all(v.is_finite() and v > 0 for v in sized_on.values()):
                raise DataError(f"an equity sized on is not a finite amount > 0: {sized_on}")
            self.account.restore(doc["account"])
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, DataError) as e:
            log.error("sizing: the saved account is unreadable, it starts empty: %s", e)
            return
        for key in self.account.open_keys():
            if key not in open_trades or key not in sized_on:
                # closed or forgotten while the process was away, or no equity to book on
                self.account.dropped(key)
        self._equity = {
            k: v for k, v in sized_on.items() if k in open_trades and self.account.is_open(k)
        }
        self._load_shadow(doc.get("shadow"))

    def _load_shadow(self, doc: object) -> None:
        """Restore the shadow's record (before the registry names the shadow again: its
        version id keeps the record only if the same version shadows on)."""
        try:
            if not isinstance(doc, dict):
                return
            shadowed = {
                str(k): (float(m), float(sm))
                for k, (m, sm) in doc["open"].items()
                if k in self._equity
            }
            record = [(float(m), float(sm), float(u)) for m, sm, u in doc["record"]]
            if not all(math.isfinite(x) for r in [*shadowed.values(), *record] for x in r):
                raise DataError("a shadow figure is not finite")
        except (ValueError, KeyError, TypeError, AttributeError, DataError) as e:
            log.error("sizing: the saved shadow record is unreadable, it starts empty: %s", e)
            return
        if self.shadow is not None and str(doc["id"]) != self.shadow_id:
            return  # another version shadows now: its record starts afresh
        self.shadow_id, self._shadowed, self.shadow_record = str(doc["id"]), shadowed, record

    def opened(
        self,
        trade_id: str,
        decision_ms: int,
        note: SizingNote,
        equity: Decimal,
        *,
        cap: float = math.inf,
    ) -> None:
        """Record an entry that went out, sized by ``note`` on ``equity``; ``cap``: the
        largest multiplier the position, exposure and cash caps let through
        (``SizingDecision.cap_multiplier``). The account books the multiplier the trade
        really had, so its outcome per unit of size is not overstated by a cut, and the
        shadow's the same cap would have cut."""
        booked = min(note.multiplier, cap)
        if booked <= 0 or equity <= 0:
            return
        self.account.opened(trade_id, decision_ms, booked)
        self._equity[trade_id] = equity
        if note.shadow is not None and self.shadow is not None:
            self._shadowed[trade_id] = (booked, min(note.shadow, cap))

    def forgot(self, trade_id: str) -> None:
        """Drop a trade the engine forgot without a close (its entry never filled)."""
        self.account.dropped(trade_id)
        self._equity.pop(trade_id, None)
        self._shadowed.pop(trade_id, None)

    async def _on_closed(self, event: Event) -> None:
        if not isinstance(event, TradeClosed) or not self.account.is_open(event.trade_id):
            return  # not sized here (opened before a restart, or skipped)
        equity = self._equity.pop(event.trade_id)
        multiplier = self.account.multiplier_of(event.trade_id)
        # The account books multiplier x unit outcome = the P&L as a return on that equity.
        unit = float(event.pnl / equity) / multiplier
        self.account.closed(event.trade_id, unit)
        shadowed = self._shadowed.pop(event.trade_id, None)
        if shadowed is not None and math.isfinite(unit):
            # valid while the size did not reach a cap: the outcome scales with the size
            self.shadow_record.append((*shadowed, unit))
            del self.shadow_record[:-SHADOW_RECORD]
