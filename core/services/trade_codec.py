"""Serialise the engine's open trades (with their exit plans) for the key-value store.

The engine writes them after every change so a restart resumes managing its positions: the same
plans, the same working orders, the same client ids. A closed trade's exit legs and entry
explanation are stored in the same form (``encode_legs``, ``encode_explanation``: the
``trades`` table's JSON columns).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import field
from decimal import Decimal
from typing import Any

from core.brains.exits import BotSideStop, ExitPlan, StopLeg, StopMode, TakeProfitLeg
from core.domain.enums import MarketType, PositionSide
from core.domain.events import jsonable
from core.domain.explanations import EntryExplanation, SizingNote
from core.domain.trades import ExitLeg
from core.services.open_trade import OpenTrade
from core.values import value_class

FORMAT_VERSION = 1


@value_class(frozen=True, slots=True)
class EngineState:
    """What the engine keeps across restarts."""

    trades: dict[str, OpenTrade]
    decided: dict[str, int] = field(default_factory=dict)  # symbol -> last candle decided
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)  # SymbolHealth.dump()
    # By symbol, of its newest candle: the regime label and a choosing provider's pick, so a
    # restart publishes no change that did not happen.
    regimes: dict[str, str] = field(default_factory=dict)
    strategies: dict[str, str] = field(default_factory=dict)


def encode_trades(
    trades: dict[str, OpenTrade],
    decided: dict[str, int] | None = None,
    failed: dict[str, dict[str, Any]] | None = None,
    regimes: dict[str, str] | None = None,
    strategies: dict[str, str] | None = None,
) -> str:
    """Return the trades, per symbol the last candle decided, the symbols failed closed and
    each symbol's regime and pick, as JSON (Decimals as strings)."""
    return json.dumps(
        {
            "version": FORMAT_VERSION,
            "trades": [jsonable(t) for t in trades.values()],
            "decided": dict(decided or {}),
            "failed": dict(failed or {}),
            "regimes": dict(regimes or {}),
            "strategies": dict(strategies or {}),
        }
    )


def decode_trades(text: str) -> EngineState:
    """Return what ``encode_trades`` stored (older versions stored no decided candles, failed
    symbols, regimes nor picks: none)."""
    data = json.loads(text)
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"engine trades format {data.get('version')!r}, expected {FORMAT_VERSION}")
    trades = [_trade(t) for t in data["trades"]]
    decided = {str(s): int(ms) for s, ms in data.get("decided", {}).items()}
    failed = {str(s): dict(f) for s, f in data.get("failed", {}).items()}
    regimes = {str(s): str(r) for s, r in data.get("regimes", {}).items()}
    strategies = {str(s): str(p) for s, p in data.get("strategies", {}).items()}
    return EngineState({t.symbol: t for t in trades}, decided, failed, regimes, strategies)


def encode_legs(legs: Sequence[ExitLeg]) -> str:
    """Return exit legs as a JSON list (Decimals as strings), as the open trades store them."""
    return json.dumps(jsonable(list(legs)))


def decode_legs(text: str) -> tuple[ExitLeg, ...]:
    """Return the legs ``encode_legs`` stored."""
    return tuple(_exit_leg(leg) for leg in json.loads(text))


def encode_explanation(explanation: EntryExplanation | None) -> str | None:
    """Return an entry's explanation as JSON (None: a baseline entry, nothing to explain)."""
    return None if explanation is None else json.dumps(jsonable(explanation))


def decode_explanation(text: str | None) -> EntryExplanation | None:
    """Return the explanation ``encode_explanation`` stored."""
    return _explanation(json.loads(text)) if text else None


def _explanation(data: dict[str, Any] | None) -> EntryExplanation | None:
    return EntryExplanation.from_json(data) if data else None


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _decimals(d: dict[str, str]) -> dict[str, Decimal]:
    return {key: Decimal(value) for key, value in d.items()}


def _trade(d: dict[str, Any]) -> OpenTrade:
    return OpenTrade(
        trade_id=d["trade_id"],
        symbol=d["symbol"],
        side=PositionSide(d["side"]),
        decided_ms=int(d["decided_ms"]),
        entry_cid=d["entry_cid"],
        confidence=float(d["confidence"]),
        atr=float(d["atr"]),
        market_type=MarketType(d["market_type"]),
        leverage=int(d["leverage"]),
        opened_ms=d["opened_ms"],
        amount=Decimal(d["amount"]),
        entry_cost=Decimal(d["entry_cost"]),
        entry_fee=Decimal(d["entry_fee"]),
        plan=_plan(d["plan"]) if d["plan"] is not None else None,
        working=dict(d["working"]),
        roles=dict(d["roles"]),
        exit_reasons=dict(d["exit_reasons"]),
        legs=[_exit_leg(leg) for leg in d["legs"]],
        bot_stop=(
            BotSideStop(
                price=Decimal(d["bot_stop"]["price"]), amount=Decimal(d["bot_stop"]["amount"])
            )
            if d["bot_stop"] is not None
            else None
        ),
        seq=int(d["seq"]),
        filled_by_cid=_decimals(d.get("filled_by_cid", {})),
        cost_by_cid=_decimals(d.get("cost_by_cid", {})),
        fee_by_cid=_decimals(d.get("fee_by_cid", {})),
        first_stop=_dec(d.get("first_stop")),
        funding=Decimal(d.get("funding", "0")),
        liquidation_price=_dec(d.get("liquidation_price")),
        stop_prices=_decimals(d.get("stop_prices", {})),
        last_fill_ms=d.get("last_fill_ms"),
        bot_stop_since_ms=d.get("bot_stop_since_ms"),
        bot_stop_whole_candle=bool(d.get("bot_stop_whole_candle", True)),
        bot_stop_before=_dec(d.get("bot_stop_before")),
        canceling=dict(d.get("canceling", {})),
        finished=bool(d.get("finished", False)),
        provider=str(d.get("provider", "")),
        regime=str(d.get("regime", "")),
        exit_profile=str(d.get("exit_profile", "default")),
        explanation=_explanation(d.get("explanation")),
        sizing=SizingNote.from_json(d["sizing"]) if d.get("sizing") else None,
        stop_labels={Decimal(p): str(r) for p, r in d.get("stop_labels", {}).items()},
        adopted=bool(d.get("adopted", False)),
        adopting=bool(d.get("adopting", False)),
    )


def _plan(d: dict[str, Any]) -> ExitPlan:
    stop = d["stop"]
    return ExitPlan(
        side=PositionSide(d["side"]),
        entry_price=Decimal(d["entry_price"]),
        amount=Decimal(d["amount"]),
        legs=tuple(
            TakeProfitLeg(
                name=leg["name"],
                price=Decimal(leg["price"]),
                amount=Decimal(leg["amount"]),
                filled=Decimal(leg["filled"]),
                canceled=bool(leg["canceled"]),
                stop_after_fill=_dec(leg["stop_after_fill"]),
            )
            for leg in d["legs"]
        ),
        stop=(
            StopLeg(
                price=Decimal(stop["price"]),
                amount=Decimal(stop["amount"]),
                mode=StopMode(stop["mode"]),
                reason=str(stop.get("reason", "")),
            )
            if stop is not None
            else None
        ),
        stop_filled=Decimal(d["stop_filled"]),
        scale=Decimal(d["scale"]),
        notes=tuple(d.get("notes", ())),
        # Saved before the candle-close moves: no initial stop (the trail does not shrink),
        # no best price yet, nothing tightened.
        initial_stop=_dec(d.get("initial_stop")),
        best_price=_dec(d.get("best_price")),
        stop_factor=Decimal(d.get("stop_factor", "1")),
    )


def _exit_leg(d: dict[str, Any]) -> ExitLeg:
    return ExitLeg(
        reason=d["reason"],
        ts_ms=int(d["ts_ms"]),
        price=Decimal(d["price"]),
        amount=Decimal(d["amount"]),
        fee=Decimal(d["fee"]),
        pnl=Decimal(d["pnl"]),
    )
