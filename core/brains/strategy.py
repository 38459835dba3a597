"""The Strategy Brain: which signal providers to trade, which to disable, how to weigh the models.

Pure: one frozen ``StrategyReviewInput`` (closed trades, model members' resolved predictions,
the current choices, the review time and config) in, one frozen ``StrategyReview`` out; no
clock, no I/O. Only trades closed, and predictions made, in the window ``(as_of_ms -
window_ms, as_of_ms]`` count. Statistics: ``core.brains.strategy_stats`` (how each figure is
defined); weights: ``core.brains.strategy_weights``; the input: ``core.brains.strategy_input``.

The decisions, each a ``Recommendation`` with its reason:

- **disable** a provider whose profit factor is below ``disable_profit_factor`` over at least
  ``disable_min_trades`` trades; a disabled one is enabled again only at a profit factor of
  ``enable_profit_factor`` or more over as many (the gap between the two is the hysteresis),
  or on probation once a whole window known to the review holds none of its trades
  (disabled, it trades no more: the verdict ages out after one window; ``record_from_ms``
  says since when the trades given are complete, so a restart is not taken for an empty
  window); every provider may be disabled (the engine then stands aside: no entries);
- **primary**: the enabled provider with at least ``min_trades`` trades and the best per-trade
  Sharpe; the current one stays unless beaten by more than ``primary_margin``, or while it has
  too few trades to judge; **fallback**: the same rule among the others;
- **per regime**: the enabled provider with the best mean net return per trade in that regime
  (at least ``regime_min_trades`` there), only if it made money; the current one stays unless
  beaten by more than ``regime_margin_pct``; none means the meta-strategy chooses by its own
  record; the warm-up's ``unknown`` regime gets no preference;
- **ensemble weights**: the ensemble's bounded softmax of the members' log-loss, with the
  hysteresis band (``strategy_weights``); while any member has fewer than ``min_predictions``
  predictions the weights stay as they are (none yet: the ensemble weighs by its own record).

Too few trades or predictions change nothing and say so. Bad input (NaN pnl, P(up) outside
[0, 1], a trade closed after the review time) is one ``DataError`` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from core.brains.strategy_input import StrategyReviewConfig, StrategyReviewInput, StrategyState
from core.brains.strategy_stats import (
    MemberStats,
    ProviderStats,
    RegimeStats,
    member_stats,
    rank_lead,
    trade_edge,
)
from core.brains.strategy_weights import (
    is_valid,
    target_weights,
    with_hysteresis,
)
from core.domain.trades import ClosedTrade
from core.values import value_class

UNKNOWN_REGIME = "unknown"


class RecommendationKind(StrEnum):
    """What a recommendation is about (stable codes for events and reports)."""

    PRIMARY = "primary"
    FALLBACK = "fallback"
    DISABLE = "disable"
    ENABLE = "enable"
    REGIME = "regime"
    WEIGHTS = "ensemble_weights"


@value_class(frozen=True, slots=True, kw_only=True)
class Recommendation:
    """One decision: ``subject`` is the provider (disable/enable) or regime, ``value`` what is
    recommended ("" for none), ``changed`` whether it differs from the current state."""

    kind: RecommendationKind
    subject: str
    value: str
    changed: bool
    reason: str


@value_class(frozen=True, slots=True, kw_only=True)
class StrategyReview:
    """The review's statistics and decisions; ``state`` is the choices to put in force."""

    as_of_ms: int
    window_start_ms: int | None
    providers: tuple[ProviderStats, ...]
    regimes: tuple[RegimeStats, ...]
    members: tuple[MemberStats, ...]
    state: StrategyState
    recommendations: tuple[Recommendation, ...]

    @property
    def changed(self) -> bool:
        """Return whether any recommendation differs from the current state."""
        return any(r.changed for r in self.recommendations)


def review_strategies(inp: StrategyReviewInput) -> StrategyReview:
    """Review the providers and members and recommend the choices (see module docstring)."""
    cfg, cur = inp.config, inp.current
    start = inp.window_start_ms
    trades = [t for t in inp.trades if start is None or t.closed_ms > start]
    names = sorted(
        set(inp.providers)
        | {t.provider for t in trades}
        | {p for p in (cur.primary, cur.fallback) if p}
        | set(cur.disabled)
    )
    providers = {p: _provider(p, [t for t in trades if t.provider == p], cfg) for p in names}
    regimes = _regimes(trades, cfg)
    members = tuple(
        member_stats(
            m.member,
            [p for p in m.predictions if start is None or p.ts_ms > start],
            m.last_retrain_ms,
        )
        for m in sorted(inp.members, key=lambda m: m.member)
    )
    recs: list[Recommendation] = []
    disabled = _disable(providers, inp.covers_window, cur, cfg, recs)
    primary = _choose(RecommendationKind.PRIMARY, providers, cur.primary, disabled, (), cfg, recs)
    fallback = _choose(
        RecommendationKind.FALLBACK,
        providers,
        cur.fallback,
        disabled,
        (primary,) if primary else (),
        cfg,
        recs,
    )
    by_regime = _regime_choices(regimes, cur, disabled, cfg, recs)
    weights = _weights(members, cur, cfg, recs)
    return StrategyReview(
        as_of_ms=inp.as_of_ms,
        window_start_ms=start,
        providers=tuple(providers[p] for p in names),
        regimes=regimes,
        members=members,
        state=StrategyState(
            primary=primary,
            fallback=fallback,
            disabled=disabled,
            regime_providers=by_regime,
            weights=weights,
        ),
        recommendations=tuple(recs),
    )


def _provider(name: str, trades: Sequence[ClosedTrade], cfg: StrategyReviewConfig) -> ProviderStats:
    edge = trade_edge(trades)
    return ProviderStats(provider=name, edge=edge, judged=edge.trades >= cfg.min_trades)


def _regimes(trades: Sequence[ClosedTrade], cfg: StrategyReviewConfig) -> tuple[RegimeStats, ...]:
    groups: dict[tuple[str, str], list[ClosedTrade]] = {}
    for t in trades:
        groups.setdefault((t.provider, t.regime or UNKNOWN_REGIME), []).append(t)
    rows = []
    for (provider, regime), ts in sorted(groups.items()):
        edge = trade_edge(ts)
        enough = edge.trades >= cfg.regime_min_trades
        score = edge.mean_return_pct
        rows.append(
            RegimeStats(
                provider=provider,
                regime=regime,
                edge=edge,
                score=score,
                compatible=(score is not None and score > 0) if enough else None,
            )
        )
    return tuple(rows)


def _pf(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _disable(
    providers: dict[str, ProviderStats],
    covered: bool,
    cur: StrategyState,
    cfg: StrategyReviewConfig,
    recs: list[Recommendation],
) -> tuple[str, ...]:
    """Return the providers disabled; ``covered``: the trades given cover the whole window
    (a process that started inside it knows none of the trades before its start)."""
    out = []
    for name, stats in providers.items():
        n, pf = stats.edge.trades, stats.edge.profit_factor
        was = name in cur.disabled
        record = f"profit factor {_pf(pf)} over {n} trades"
        if n >= cfg.disable_min_trades and pf is not None and pf < cfg.disable_profit_factor:
            out.append(name)
            reason = f"{record}, below {cfg.disable_profit_factor:.2f}"
            recs.append(_rec(RecommendationKind.DISABLE, name, name, not was, reason))
        elif was and n >= cfg.disable_min_trades and pf is not None:
            if pf >= cfg.enable_profit_factor:
                reason = f"{record}, at least {cfg.enable_profit_factor:.2f}: enabled again"
                recs.append(_rec(RecommendationKind.ENABLE, name, name, True, reason))
            else:
                out.append(name)
                reason = f"stays disabled: {record}, needs {cfg.enable_profit_factor:.2f}"
                recs.append(_rec(RecommendationKind.DISABLE, name, name, False, reason))
        elif was and n == 0 and covered:
            # It trades no more while disabled: once a whole window known to this review holds
            # none of its trades the verdict has aged out, and it trades again on probation.
            reason = "no trade of it left in the window: enabled again on probation"
            recs.append(_rec(RecommendationKind.ENABLE, name, name, True, reason))
        elif was:
            out.append(name)
            reason = (
                f"stays disabled: {n} trades in the window, needs {cfg.disable_min_trades} "
                f"at a profit factor of {cfg.enable_profit_factor:.2f} to be enabled again"
            )
            recs.append(_rec(RecommendationKind.DISABLE, name, name, False, reason))
    return tuple(sorted(out))


def _rec(
    kind: RecommendationKind, subject: str, value: str | None, changed: bool, reason: str
) -> Recommendation:
    return Recommendation(
        kind=kind, subject=subject, value=value or "", changed=changed, reason=reason
    )


def _choose(
    kind: RecommendationKind,
    providers: dict[str, ProviderStats],
    current: str | None,
    disabled: Sequence[str],
    taken: Sequence[str],
    cfg: StrategyReviewConfig,
    recs: list[Recommendation],
) -> str | None:
    """Pick the primary (or, with ``taken`` = the primary, the fallback)."""
    usable = [p for p in providers if p not in disabled and p not in taken]
    judged = [p for p in usable if providers[p].judged]
    sharpe = {p: providers[p].edge.sharpe for p in usable}
    # max keeps the first of equals: ties go to the name first in order (providers are sorted)
    best = max(judged, key=lambda p: rank_lead(sharpe[p], 0.0), default=None)
    keep = current if current in usable else None
    if current is not None and keep is None:
        why = "it is disabled" if current in disabled else "it is the primary now"
        lost = f"{current} is replaced ({why})"
    else:
        lost = ""

    def done(choice: str | None, reason: str) -> str | None:
        reason = f"{lost}; {reason}" if lost else reason
        recs.append(_rec(kind, kind.value, choice, choice != current, reason))
        return choice

    def sharpe_of(p: str) -> str:
        s, n = sharpe[p], providers[p].edge.trades
        return f"per-trade Sharpe {'n/a' if s is None else f'{s:.2f}'} over {n} trades"

    if best is None:
        most = max(usable, key=lambda p: providers[p].edge.trades, default=None)
        thin = f"no enabled provider has {cfg.min_trades} trades in the window" + (
            f" (most: {most} with {providers[most].edge.trades})" if most else ""
        )
        return done(keep, f"{thin}: {'unchanged' if keep else 'none'}")
    if keep is None:
        return done(best, f"{best} has the best {sharpe_of(best)}")
    if not providers[keep].judged:
        return done(
            keep,
            f"{keep} has {providers[keep].edge.trades} trades in the window, needs "
            f"{cfg.min_trades} to be judged: unchanged",
        )
    lead = rank_lead(sharpe[best], sharpe[keep])
    if best != keep and lead > cfg.primary_margin:
        return done(
            best, f"{best} ({sharpe_of(best)}) leads {keep} ({sharpe_of(keep)}) by {lead:.2f}"
        )
    if best != keep:
        return done(
            keep,
            f"{keep} stays: {best} leads by {lead:.2f}, not more than the margin "
            f"{cfg.primary_margin:.2f} ({sharpe_of(keep)})",
        )
    return done(keep, f"{keep} has the best {sharpe_of(keep)}")


def _regime_choices(
    regimes: Sequence[RegimeStats],
    cur: StrategyState,
    disabled: Sequence[str],
    cfg: StrategyReviewConfig,
    recs: list[Recommendation],
) -> tuple[tuple[str, str], ...]:
    current = dict(cur.regime_providers)
    seen = {r.regime for r in regimes} | set(current)
    out: list[tuple[str, str]] = []
    for regime in sorted(seen - {UNKNOWN_REGIME}):
        rows = {
            r.provider: r
            for r in regimes
            if r.regime == regime and r.provider not in disabled and r.compatible is not None
        }
        now = current.get(regime)
        keep = now if now is not None and now not in disabled else None
        best = max(sorted(rows), key=lambda p: rows[p].score or 0.0, default=None)
        if best is None:
            choice, reason = (
                keep,
                (
                    f"no enabled provider has {cfg.regime_min_trades} trades in {regime}: "
                    + ("unchanged" if keep else "the meta-strategy chooses")
                ),
            )
        elif not rows[best].compatible:
            choice = None
            reason = (
                f"no enabled provider made money in {regime} (best {best}: "
                f"{rows[best].score:.2f} % a trade over {rows[best].edge.trades}): "
                "the meta-strategy chooses"
            )
        elif (
            keep in rows
            and rows[keep].compatible
            and keep != best
            and ((rows[best].score or 0.0) - (rows[keep].score or 0.0) <= cfg.regime_margin_pct)
        ):
            choice = keep
            reason = f"{keep} stays: {best} leads by at most {cfg.regime_margin_pct:.2f} % a trade"
        else:
            choice = best
            reason = (
                f"{best} makes {rows[best].score:.2f} % a trade over "
                f"{rows[best].edge.trades} trades in {regime}, the best"
            )
        if now in disabled and now != choice:
            reason = f"{now} is disabled; {reason}"
        recs.append(_rec(RecommendationKind.REGIME, regime, choice, choice != now, reason))
        if choice is not None:
            out.append((regime, choice))
    return tuple(out)


def _weights(
    members: Sequence[MemberStats],
    cur: StrategyState,
    cfg: StrategyReviewConfig,
    recs: list[Recommendation],
) -> tuple[tuple[str, float], ...]:
    names = [m.member for m in members]
    if not names:
        return ()
    current = dict(cur.weights)
    valid = is_valid(current, names, cfg.min_weight, cfg.max_weight)
    thin = [m for m in members if m.predictions < cfg.min_predictions]
    if thin:
        few = ", ".join(f"{m.member} has {m.predictions}" for m in thin)
        new = current if valid else {}
        reason = f"too few predictions to weigh ({few}; needs {cfg.min_predictions}): " + (
            "unchanged" if valid else "the ensemble's own weights until they are judged"
        )
    else:
        target = target_weights(
            {m.member: m.log_loss or 0.0 for m in members},
            temperature=cfg.temperature,
            min_weight=cfg.min_weight,
            max_weight=cfg.max_weight,
        )
        if valid:
            new, moved = with_hysteresis(
                target,
                current,
                band=cfg.hysteresis,
                min_weight=cfg.min_weight,
                max_weight=cfg.max_weight,
            )
            reason = (
                f"{', '.join(moved)} moved beyond the band {cfg.hysteresis:.2f}"
                if moved
                else f"every target within the band {cfg.hysteresis:.2f}: unchanged"
            )
        else:
            new = target
            reason = "no valid current weights for these members: the targets"
        losses = ", ".join(f"{m.member} {m.log_loss:.4f}" for m in members)
        reason = f"{reason} (log-loss {losses})"
    weights = tuple((m, new[m]) for m in names if m in new)  # none: the ensemble's own
    text = ",".join(f"{m}={w:.3f}" for m, w in weights)
    changed = dict(weights) != dict(cur.weights)
    recs.append(_rec(RecommendationKind.WEIGHTS, "ensemble", text, changed, reason))
    return weights
