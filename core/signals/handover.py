"""A signal provider that serves one provider's signals until another is ready, then that one's.

The engine's ``SignalBook`` holds one provider for the life of the process; the demo starts
trading on the baseline while its ensemble trains in a worker process, then hands over. The
book caches frames: after ``hand_over`` call ``SignalBook.invalidate`` so the next look-up is
computed by the new provider (the next candle would recompute anyway; this makes it exact).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.brains.strategy_input import MemberOutcome
from core.domain.explanations import EntryExplanation
from core.domain.market import CandleSeries
from core.domain.policy import Policy
from core.signals.base import SignalFrame, SignalProvider


def compute_many(provider: SignalProvider, series: Sequence[CandleSeries]) -> list[SignalFrame]:
    """Return ``provider.compute`` of each series (one per symbol), in order: at once where
    the provider batches them (the ensemble: each member once for all the new rows), else
    one after another."""
    method = getattr(provider, "compute_many", None)
    if method is None:
        return [provider.compute(s) for s in series]
    return list(method(series))


def explain(
    provider: SignalProvider, symbol: str, ts_ms: int, regime: str | None = None
) -> EntryExplanation | None:
    """Return ``provider``'s explanation of an entry, None when it gives none (the baseline);
    ``regime``: the label the process knows for that candle (None: the provider finds it)."""
    method = getattr(provider, "explain", None)
    return None if method is None else method(symbol, ts_ms, regime)


def excluded_members(provider: SignalProvider, symbol: str) -> Mapping[str, str]:
    """Return the members ``provider`` left out of its newest compute of ``symbol``, and why
    (the ensemble's; none for a provider without members)."""
    method = getattr(provider, "excluded", None)
    return {} if method is None else method(symbol)


def use_policy(provider: SignalProvider, policy: Policy) -> bool:
    """Hand ``provider`` the Strategy Brain's choices in force (``policy``: disabled
    providers, the primary and fallback, per-regime picks, the ensemble's weights); return
    whether its signals may have changed (the book then computes them again). A provider
    with nothing to choose ignores them."""
    method = getattr(provider, "use_policy", None)
    return False if method is None else bool(method(policy))


def choosable(provider: SignalProvider) -> tuple[str, ...]:
    """Return the providers the Strategy Brain chooses among: a choosing provider's
    candidates (the meta-strategy's), else the provider itself."""
    method = getattr(provider, "choosable", None)
    return (provider.name,) if method is None else tuple(method())


def member_outcomes(
    provider: SignalProvider, since_ms: int, as_of_ms: int
) -> Mapping[str, Sequence[MemberOutcome]]:
    """Return each model member's out-of-sample predictions of candles that closed in
    ``(since_ms, as_of_ms]`` whose labels resolved by ``as_of_ms`` (none: no members)."""
    method = getattr(provider, "member_outcomes", None)
    return {} if method is None else method(since_ms, as_of_ms)


def last_retrains(provider: SignalProvider) -> Mapping[str, int]:
    """Return when each model member serving now was trained until (none: no members)."""
    method = getattr(provider, "last_retrains", None)
    return {} if method is None else method()


def serve_members(provider: SignalProvider, members: Sequence[Any], active_from_ms: int) -> bool:
    """Hand ``provider``'s ensemble newly promoted (or restored) ``members``
    (``EnsembleMember``s), serving rows closing after ``active_from_ms``; return whether one
    took them (False: no ensemble serves here)."""
    method = getattr(provider, "serve_members", None)
    return False if method is None else bool(method(members, active_from_ms))


def serving_versions(provider: SignalProvider) -> Mapping[str, str]:
    """Return the version id serving now of each model member (none: no members)."""
    method = getattr(provider, "serving_versions", None)
    return {} if method is None else method()


def member_predictions(
    provider: SignalProvider, since_ms: int = -1
) -> list[tuple[str, str, str, int, float]]:
    """Return (version id, member, symbol, candle open ms, P(up)) of the model members'
    out-of-sample predictions in the newest computes after ``since_ms`` (none: no members).
    Read it while no compute runs (``SignalBook.quiet``)."""
    method = getattr(provider, "member_predictions", None)
    return [] if method is None else list(method(since_ms))


class HandOverProvider:
    """Serve ``first`` until ``hand_over`` names its successor (see module docstring)."""

    def __init__(self, first: SignalProvider, *, warmup_candles: int | None = None) -> None:
        self.current = first
        self.name = first.name  # the serving provider's
        self._policy: Policy | None = None  # the newest handed over: the successor's too
        # The book checks its history bound against this once: give the larger of both.
        self.warmup_candles = first.warmup_candles if warmup_candles is None else warmup_candles

    def hand_over(self, successor: SignalProvider) -> None:
        """Serve ``successor``'s signals from the next compute on."""
        self.current = successor
        self.name = successor.name
        if self._policy is not None:
            use_policy(successor, self._policy)

    def compute(self, series: CandleSeries) -> SignalFrame:
        """Return the serving provider's signals."""
        return self.current.compute(series)

    def compute_many(self, series: Sequence[CandleSeries]) -> list[SignalFrame]:
        """Return the serving provider's signals of each series (batched where it can)."""
        return compute_many(self.current, series)

    def explain(
        self, symbol: str, ts_ms: int, regime: str | None = None
    ) -> EntryExplanation | None:
        """Return the serving provider's explanation, if it gives any."""
        return explain(self.current, symbol, ts_ms, regime)

    def excluded(self, symbol: str) -> Mapping[str, str]:
        """Return the members the serving provider left out, and why."""
        return excluded_members(self.current, symbol)

    def serve_members(self, members: Sequence[Any], active_from_ms: int) -> bool:
        """Hand the serving provider promoted members (``serve_members``)."""
        return serve_members(self.current, members, active_from_ms)

    def serving_versions(self) -> Mapping[str, str]:
        """Return the serving provider's members' versions."""
        return serving_versions(self.current)

    def member_predictions(self, since_ms: int = -1) -> list[tuple[str, str, str, int, float]]:
        """Return the serving provider's members' predictions (``member_predictions``)."""
        return member_predictions(self.current, since_ms)

    def use_policy(self, policy: Policy) -> bool:
        """Hand the serving provider (and every successor) the choices in force."""
        self._policy = policy
        return use_policy(self.current, policy)

    def choosable(self) -> tuple[str, ...]:
        """Return the serving provider's choices."""
        return choosable(self.current)

    def member_outcomes(
        self, since_ms: int, as_of_ms: int
    ) -> Mapping[str, Sequence[MemberOutcome]]:
        """Return the serving provider's members' outcomes."""
        return member_outcomes(self.current, since_ms, as_of_ms)

    def last_retrains(self) -> Mapping[str, int]:
        """Return the serving provider's members' training ends."""
        return last_retrains(self.current)
