"""A backtest's trade fingerprint: one hash of every trade and the final balance.

Two runs trade the same when their fingerprints match: the same trades in the same order,
each with its symbol, side, open and close times, amount, entry and exit prices, fees, pnl,
exit reason and every exit leg, and the same final balance. Decimals are written as they are
(exact), the balance as its float's shortest round-trip repr, so any change shows. A speed-up
that keeps the fingerprint kept every trade (tests/integration/test_trade_fingerprint.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from core.domain.trades import ClosedTrade


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeFingerprint:
    """The hash of a run's trades and final balance, with the two figures a reader checks."""

    trades: int
    final_balance: str
    sha256: str


def trade_lines(trades: Sequence[ClosedTrade]) -> list[str]:
    """Return one canonical line per trade (what the fingerprint hashes, for diffs)."""
    lines = []
    for t in trades:
        legs = ";".join(
            f"{leg.reason}@{leg.ts_ms}:{leg.amount}x{leg.price} fee {leg.fee} pnl {leg.pnl}"
            for leg in t.legs
        )
        lines.append(
            f"{t.symbol} {t.side} {t.opened_ms}-{t.closed_ms} {t.amount} "
            f"{t.entry_price}->{t.exit_price} fees {t.fees} pnl {t.pnl} funding {t.funding} "
            f"{t.exit_reason} [{legs}]"
        )
    return lines


def trade_fingerprint(trades: Sequence[ClosedTrade], final_balance: float) -> TradeFingerprint:
    """Return the fingerprint of ``trades`` (in their order) ending at ``final_balance``."""
    digest = hashlib.sha256()
    for line in trade_lines(trades):
        digest.update(line.encode() + b"\n")
    balance = repr(float(final_balance))
    digest.update(f"final balance {balance}".encode())
    return TradeFingerprint(trades=len(trades), final_balance=balance, sha256=digest.hexdigest())
