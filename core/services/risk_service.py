"""Gather the Risk Brain's input, assess, record and publish (the ``risk_assessment`` job).

The input is the account now (open P&L included) and each open position with its symbol's
recent returns, read from the engine's signal book up to the clock (a backtest holds whole
series: nothing after now is read). The drawdown is from the highest equity of the last
``peak_days`` UTC days (a rolling peak: a paused book's drawdown fades as the window moves on,
so a pause is a cooldown, not a life sentence). The daily peaks and the last tier are kept in the
key-value store: a restart resumes the same drawdown. Data is stale for a held symbol whose
newest candle closed more than three candles ago.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import numpy as np

from core.brains.risk import (
    PositionRisk,
    RiskAssessment,
    RiskConfig,
    RiskFigures,
    RiskInput,
    assess,
)
from core.clock import Clock
from core.domain.decisions import AssessmentRecord, record_body
from core.domain.enums import PositionSide
from core.domain.events import RiskAssessed
from core.domain.market import timeframe_to_ms
from core.domain.policy import Policy
from core.ports import DecisionRepo, KeyValueRepo, StateKey
from core.services.bus import EventBus
from core.services.engine import Engine

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
RETURNS_HELD = 2_000  # candles of returns per position (83 days of 1h)


class RiskService:
    """Assess the portfolio now (see module docstring); ``latest`` is the last assessment."""

    def __init__(
        self,
        *,
        engine: Engine,
        policy: Callable[[], Policy],
        repo: DecisionRepo,
        state: KeyValueRepo,
        bus: EventBus,
        clock: Clock,
        config: RiskConfig,
        peak_days: int = 30,
        figures_every_ms: int = 0,
        record: bool = True,
    ) -> None:
        self._engine = engine
        self._policy = policy
        self._repo = repo
        self._state = state
        self._bus = bus
        self._clock = clock
        self.config = config
        self._peak_days = peak_days
        # The VaR/ES of unchanged positions is computed again after this long (0: every time).
        self._figures_every_ms = figures_every_ms
        self._record = record  # a backtest's storage is thrown away: it publishes only
        # The positions, when and at what gross exposure / equity the figures were computed.
        self._figures: tuple[dict[tuple[str, str], Decimal], int, float, RiskFigures] | None = None
        self._peaks: dict[int, float] = {}  # UTC day -> highest equity seen that day
        self._tier = 0
        # The peaks and tier last written: an hour that changed neither writes nothing.
        self._saved: tuple[dict[int, float], int] | None = None
        self._reached: int | None = None  # the last assessment's tier, until committed
        self._loaded = False
        self._peak_lost = False  # the stored peaks were unreadable: assume the worst tier
        self.latest: RiskAssessment | None = None
        self.latest_ms: int | None = None
        # The health monitor's bad checks (None: no monitor): a component of the score.
        self.health: Callable[[], tuple[str, ...]] | None = None

    async def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        raw = await self._state.get(StateKey.RISK_STATE)
        if not raw:
            return
        try:
            data = json.loads(raw)
            self._peaks = {int(d): float(v) for d, v in data["peaks"].items()}
            self._tier = int(data["tier"])
        except (ValueError, KeyError, TypeError) as e:
            # Forgetting the peak would understate the drawdown (and lift a halt): the peak is
            # taken as deep as the ladder's last tier, fading as the peak window moves on.
            log.error("stored risk state is unreadable (%s): starting from the ladder's end", e)
            self._peaks, self._tier = {}, len(self.config.ladder)
            self._peak_lost = bool(self.config.ladder)

    async def commit(self) -> None:
        """Record the last assessment's tier as reached: its actions were carried out."""
        if self._reached is not None and self._reached != self._tier:
            self._tier = self._reached
            await self._save_state()
        self._reached = None

    async def _save_state(self) -> None:
        if self._saved == (self._peaks, self._tier):
            return
        peaks = {str(d): v for d, v in self._peaks.items()}
        await self._state.set(StateKey.RISK_STATE, json.dumps({"peaks": peaks, "tier": self._tier}))
        self._saved = (dict(self._peaks), self._tier)  # a copy: the peaks change in place

    async def assess(self) -> RiskAssessment:
        """Assess now, record it, publish ``RiskAssessed``; return it."""
        await self._load()
        now = self._clock.now_ms()
        engine = self._engine
        policy = self._policy()
        account = await engine.account()
        equity = float(account.equity)
        day = now // DAY_MS
        if math.isfinite(equity):
            self._peaks[day] = max(self._peaks.get(day, equity), equity)
            if self._peak_lost and equity > 0:
                self._peak_lost = False
                worst = equity / (1.0 - self.config.ladder[-1].drawdown)
                self._peaks[day] = max(self._peaks[day], worst)
        self._peaks = {d: v for d, v in self._peaks.items() if d > day - self._peak_days}
        peak = max(self._peaks.values(), default=equity)
        tf_ms = timeframe_to_ms(engine.config.timeframe)
        positions, stale = [], []
        for p in account.positions:
            price = float(engine.prices.get(p.symbol, p.entry_price))
            sign = 1.0 if p.side is PositionSide.LONG else -1.0
            closes = engine.signals.closes_until(p.symbol, now, RETURNS_HELD + 1)
            returns = np.diff(closes) / closes[:-1] if len(closes) > 1 else np.empty(0)
            positions.append(
                PositionRisk(
                    symbol=p.symbol, notional=sign * float(p.amount) * price, returns=returns
                )
            )
            last_close = engine.signals.last_close_ms(p.symbol)
            if last_close is None or now - last_close > 3 * tf_ms:
                stale.append(p.symbol)
        held = {(p.symbol, p.side.value): p.amount for p in account.positions}
        gross = sum(abs(r.notional) for r in positions) / equity if equity > 0 else math.inf
        reuse = None
        if self._figures is not None:
            then, made_ms, gross_then, figures = self._figures
            # The same positions, none larger (a take-profit only shrinks one: the figures of
            # the larger position overstate its risk, never understate it).
            same = held.keys() == then.keys() and all(a <= then[k] for k, a in held.items())
            # The figures are fractions of equity: an equity fallen (or prices risen) so far
            # that the book weighs 10 % more than then makes them understate: computed again.
            heavier = not gross <= gross_then * 1.1
            if same and not heavier and now - made_ms < self._figures_every_ms:
                reuse = figures
        issues = tuple(
            f"{symbol}: {member}"
            for symbol, out in sorted(engine.excluded.items())
            for member in sorted(out)
        )
        assessment = assess(
            RiskInput(
                equity=equity,
                peak_equity=peak,
                positions=tuple(positions),
                periods_per_day=max(1, DAY_MS // tf_ms),
                max_exposure_pct=float(policy.max_total_exposure_pct),
                max_leverage=float(policy.max_leverage),
                stale_data=tuple(stale),
                model_issues=issues,
                health_issues=() if self.health is None else self.health(),
                previous_tier=self._tier,
                figures=reuse,
                config=self.config,
            )
        )
        if reuse is None:
            self._figures = (held, now, gross, assessment.figures)
        # The tier counts as reached once its actions were carried out (``commit``): a crash or
        # a failure before then asks for the tier's exposure cut again. An equity that cannot
        # be read (NaN) is no tier reached: keeping its "worst" tier would skip the close-once
        # of the tier the drawdown really enters next.
        self._reached = assessment.tier if math.isfinite(equity) and equity > 0 else None
        await self._save_state()
        if self._record:
            body = record_body(replace(assessment, figures=RiskFigures()))  # they are in it
            await self._repo.add_assessment(
                AssessmentRecord(
                    ts_ms=now, score=assessment.score, level=assessment.level.value, body=body
                )
            )
        await self._bus.publish(
            RiskAssessed(
                ts_ms=now,
                score=round(assessment.score, 2),
                level=assessment.level.value,
                var_99_daily=assessment.worst_daily_var,
                es_99_daily=assessment.worst_daily_es,
                drawdown=assessment.drawdown,
                exposure_pct=assessment.exposure_pct,
                tier=assessment.tier,
                measures=tuple(
                    f"{m.kind.value} {m.value:g}: {m.reason}" for m in assessment.measures
                ),
                notes=assessment.notes,
            )
        )
        self.latest, self.latest_ms = assessment, now
        return assessment
