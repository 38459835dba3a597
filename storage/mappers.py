"""Convert between table rows and domain values: Decimals as exact strings, enums by value.

Rows are plain dicts of column values on the way in (ready for Core ``INSERT``) and SQLAlchemy
``Row`` mappings on the way out, so no ORM identity map sits between the database and the core.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from core.domain.decisions import AssessmentRecord, BrainDecision, PolicyVersion
from core.domain.enums import Liquidity, MarketType, OrderStatus, OrderType, PositionSide, Side
from core.domain.events import Event, event_payload
from core.domain.market_rules import MarketRules, StoredRules
from core.domain.model_versions import ModelStatus, ModelVersion, Prediction
from core.domain.orders import Fill, Order, OrderRequest
from core.domain.policy import policy_from_dict, policy_to_dict
from core.domain.portfolio import Balance, EquitySnapshot, Position
from core.domain.trades import ClosedTrade
from core.errors import InvariantViolation
from core.ports import StoredEvent
from core.services.trade_codec import (
    decode_explanation,
    decode_legs,
    encode_explanation,
    encode_legs,
)


def dec_to_text(value: Decimal) -> str:
    """Return the exact text of a Decimal (``str`` keeps every digit and the exponent)."""
    return str(value)


def opt_dec_to_text(value: Decimal | None) -> str | None:
    """Return the exact text of a Decimal, or None."""
    return None if value is None else str(value)


def text_to_dec(value: str, where: str) -> Decimal:
    """Parse stored Decimal text; corrupt text is an invariant violation naming the column."""
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise InvariantViolation(f"stored decimal {where} was {value!r}, not a number") from exc


def opt_text_to_dec(value: str | None, where: str) -> Decimal | None:
    """Parse stored Decimal text, or return None."""
    return None if value is None else text_to_dec(value, where)


# --- orders and fills --------------------------------------------------------------------------


def order_to_row(order: Order) -> dict[str, Any]:
    """Return the ``orders`` columns of an order (an empty exchange id becomes NULL)."""
    req = order.request
    return {
        "client_order_id": req.client_order_id,
        "exchange_order_id": order.exchange_order_id or None,
        "symbol": req.symbol,
        "side": req.side.value,
        "type": req.type.value,
        "amount": dec_to_text(req.amount),
        "price": opt_dec_to_text(req.price),
        "stop_price": opt_dec_to_text(req.stop_price),
        "reduce_only": req.reduce_only,
        "market_type": req.market_type.value,
        "leverage": req.leverage,
        "tag": req.tag,
        "status": order.status.value,
        "filled": dec_to_text(order.filled),
        "average_price": opt_dec_to_text(order.average_price),
        "fee_paid": dec_to_text(order.fee_paid),
        "created_ms": order.created_ms,
        "updated_ms": order.updated_ms,
        "reason": order.reason,
    }


def row_to_order(row: Mapping[Any, Any]) -> Order:
    """Return the Order stored in an ``orders`` row."""
    cid = row["client_order_id"]
    where = f"of order {cid!r}"
    request = OrderRequest(
        client_order_id=cid,
        symbol=row["symbol"],
        side=Side(row["side"]),
        type=OrderType(row["type"]),
        amount=text_to_dec(row["amount"], f"amount {where}"),
        price=opt_text_to_dec(row["price"], f"price {where}"),
        stop_price=opt_text_to_dec(row["stop_price"], f"stop_price {where}"),
        reduce_only=bool(row["reduce_only"]),
        market_type=MarketType(row["market_type"]),
        leverage=int(row["leverage"]),
        tag=row["tag"],
    )
    return Order(
        request=request,
        exchange_order_id=row["exchange_order_id"] or "",
        status=OrderStatus(row["status"]),
        filled=text_to_dec(row["filled"], f"filled {where}"),
        average_price=opt_text_to_dec(row["average_price"], f"average_price {where}"),
        fee_paid=text_to_dec(row["fee_paid"], f"fee_paid {where}"),
        created_ms=int(row["created_ms"]),
        updated_ms=int(row["updated_ms"]),
        reason=row["reason"],
    )


def fill_to_row(fill: Fill) -> dict[str, Any]:
    """Return the ``fills`` columns of a fill."""
    return {
        "fill_id": fill.fill_id,
        "client_order_id": fill.client_order_id,
        "exchange_order_id": fill.exchange_order_id,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "amount": dec_to_text(fill.amount),
        "price": dec_to_text(fill.price),
        "fee": dec_to_text(fill.fee),
        "liquidity": fill.liquidity.value,
        "ts_ms": fill.ts_ms,
        "market_type": fill.market_type.value,
    }


def row_to_fill(row: Mapping[Any, Any]) -> Fill:
    """Return the Fill stored in a ``fills`` row."""
    where = f"of fill {row['fill_id']!r}"
    return Fill(
        fill_id=row["fill_id"],
        client_order_id=row["client_order_id"],
        exchange_order_id=row["exchange_order_id"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        amount=text_to_dec(row["amount"], f"amount {where}"),
        price=text_to_dec(row["price"], f"price {where}"),
        fee=text_to_dec(row["fee"], f"fee {where}"),
        liquidity=Liquidity(row["liquidity"]),
        ts_ms=int(row["ts_ms"]),
        market_type=MarketType(row["market_type"]),
    )


# --- portfolio ---------------------------------------------------------------------------------


def position_to_row(position: Position) -> dict[str, Any]:
    """Return the ``positions`` columns of a position."""
    return {
        "symbol": position.symbol,
        "market_type": position.market_type.value,
        "side": position.side.value,
        "amount": dec_to_text(position.amount),
        "entry_price": dec_to_text(position.entry_price),
        "leverage": position.leverage,
        "margin": dec_to_text(position.margin),
        "realized_pnl": dec_to_text(position.realized_pnl),
        "opened_ms": position.opened_ms,
        "updated_ms": position.updated_ms,
    }


def row_to_position(row: Mapping[Any, Any]) -> Position:
    """Return the Position stored in a ``positions`` row."""
    where = f"of position {row['symbol']!r}/{row['market_type']!r}"
    return Position(
        symbol=row["symbol"],
        market_type=MarketType(row["market_type"]),
        side=PositionSide(row["side"]),
        amount=text_to_dec(row["amount"], f"amount {where}"),
        entry_price=text_to_dec(row["entry_price"], f"entry_price {where}"),
        leverage=int(row["leverage"]),
        margin=text_to_dec(row["margin"], f"margin {where}"),
        realized_pnl=text_to_dec(row["realized_pnl"], f"realized_pnl {where}"),
        opened_ms=int(row["opened_ms"]),
        updated_ms=int(row["updated_ms"]),
    )


def trade_to_row(trade: ClosedTrade) -> dict[str, Any]:
    """Return the ``trades`` columns of a closed trade (legs and explanation as the engine's
    trade codec writes them)."""
    return {
        "trade_id": trade.trade_id,
        "symbol": trade.symbol,
        "side": PositionSide(trade.side).value,
        "market_type": MarketType(trade.market_type).value,
        "leverage": trade.leverage,
        "opened_ms": trade.opened_ms,
        "closed_ms": trade.closed_ms,
        "amount": dec_to_text(trade.amount),
        "entry_price": dec_to_text(trade.entry_price),
        "exit_price": dec_to_text(trade.exit_price),
        "fees": dec_to_text(trade.fees),
        "pnl": dec_to_text(trade.pnl),
        "pnl_pct": float(trade.pnl_pct),
        "exit_reason": trade.exit_reason,
        "legs": encode_legs(trade.legs),
        "funding": dec_to_text(trade.funding),
        "liquidation_price": opt_dec_to_text(trade.liquidation_price),
        "provider": trade.provider,
        "regime": trade.regime,
        "exit_profile": trade.exit_profile,
        "explanation": encode_explanation(trade.explanation),
    }


def row_to_trade(row: Mapping[Any, Any]) -> ClosedTrade:
    """Return the ClosedTrade stored in a ``trades`` row."""
    where = f"of trade {row['trade_id']!r}"
    try:
        side, market_type = PositionSide(row["side"]), MarketType(row["market_type"])
        legs = decode_legs(row["legs"])
        explanation = decode_explanation(row["explanation"])
    except (ValueError, TypeError, KeyError, ArithmeticError) as exc:  # a hand-edited row
        raise InvariantViolation(f"stored trade {row['trade_id']!r}: {exc}") from exc
    return ClosedTrade(
        trade_id=row["trade_id"],
        symbol=row["symbol"],
        side=side,
        market_type=market_type,
        leverage=int(row["leverage"]),
        opened_ms=int(row["opened_ms"]),
        closed_ms=int(row["closed_ms"]),
        amount=text_to_dec(row["amount"], f"amount {where}"),
        entry_price=text_to_dec(row["entry_price"], f"entry_price {where}"),
        exit_price=text_to_dec(row["exit_price"], f"exit_price {where}"),
        fees=text_to_dec(row["fees"], f"fees {where}"),
        pnl=text_to_dec(row["pnl"], f"pnl {where}"),
        pnl_pct=float(row["pnl_pct"]),
        exit_reason=row["exit_reason"],
        legs=legs,
        funding=text_to_dec(row["funding"], f"funding {where}"),
        liquidation_price=opt_text_to_dec(row["liquidation_price"], f"liquidation_price {where}"),
        provider=row["provider"],
        regime=row["regime"],
        exit_profile=row["exit_profile"],
        explanation=explanation,
    )


def balance_to_row(balance: Balance) -> dict[str, Any]:
    """Return the ``balances`` columns of a balance."""
    return {
        "asset": balance.asset,
        "free": dec_to_text(balance.free),
        "used": dec_to_text(balance.used),
    }


def row_to_balance(row: Mapping[Any, Any]) -> Balance:
    """Return the Balance stored in a ``balances`` row."""
    where = f"of asset {row['asset']!r}"
    return Balance(
        asset=row["asset"],
        free=text_to_dec(row["free"], f"free {where}"),
        used=text_to_dec(row["used"], f"used {where}"),
    )


def equity_to_row(snapshot: EquitySnapshot) -> dict[str, Any]:
    """Return the ``equity_snapshots`` columns of a snapshot."""
    return {
        "ts_ms": snapshot.ts_ms,
        "equity": dec_to_text(snapshot.equity),
        "cash": dec_to_text(snapshot.cash),
        "unrealized_pnl": dec_to_text(snapshot.unrealized_pnl),
    }


def row_to_equity(row: Mapping[Any, Any]) -> EquitySnapshot:
    """Return the EquitySnapshot stored in an ``equity_snapshots`` row."""
    where = f"of equity snapshot at {row['ts_ms']}"
    return EquitySnapshot(
        ts_ms=int(row["ts_ms"]),
        equity=text_to_dec(row["equity"], f"equity {where}"),
        cash=text_to_dec(row["cash"], f"cash {where}"),
        unrealized_pnl=text_to_dec(row["unrealized_pnl"], f"unrealized_pnl {where}"),
    )


# --- events ------------------------------------------------------------------------------------


def event_to_row(event: Event | StoredEvent) -> dict[str, Any]:
    """Return the ``events`` columns of an event; the payload is compact JSON text."""
    payload = event.payload if isinstance(event, StoredEvent) else event_payload(event)
    return {
        "event_id": event.event_id,
        "topic": event.topic,
        "ts_ms": event.ts_ms,
        "payload": json.dumps(payload, separators=(",", ":"), sort_keys=True),
    }


def row_to_stored_event(row: Mapping[Any, Any]) -> StoredEvent:
    """Return the StoredEvent of an ``events`` row."""
    try:
        payload = json.loads(row["payload"])
    except json.JSONDecodeError as exc:
        raise InvariantViolation(
            f"payload of event {row['event_id']!r} is not JSON: {exc}"
        ) from exc
    return StoredEvent(
        event_id=row["event_id"], topic=row["topic"], ts_ms=int(row["ts_ms"]), payload=payload
    )


def stored_rules_to_row(stored: StoredRules) -> dict[str, Any]:
    r = stored.rules
    return {
        "exchange": stored.exchange,
        "market": stored.market,
        "symbol": r.symbol,
        "amount_step": str(r.amount_step),
        "price_tick": str(r.price_tick),
        "min_amount": str(r.min_amount),
        "min_notional": str(r.min_notional),
        "max_leverage": r.max_leverage,
        "fetched_ms": stored.fetched_ms,
    }


LAST_MS = 253_402_300_800_000  # 10000-01-01: a datetime can show every time before it


def row_to_stored_rules(row: Mapping[Any, Any]) -> StoredRules:
    where = f"market_rules {row['exchange']} {row['market']} {row['symbol']}"
    try:
        rules = MarketRules(
            symbol=row["symbol"],
            amount_step=text_to_dec(row["amount_step"], f"{where} amount_step"),
            price_tick=text_to_dec(row["price_tick"], f"{where} price_tick"),
            min_amount=text_to_dec(row["min_amount"], f"{where} min_amount"),
            min_notional=text_to_dec(row["min_notional"], f"{where} min_notional"),
            max_leverage=row["max_leverage"],
        )
        fetched_ms = row["fetched_ms"]
        if not isinstance(fetched_ms, int) or not 0 <= fetched_ms < LAST_MS:
            raise ValueError(f"fetched_ms must be a time in ms, was {fetched_ms!r}")
    # A hand-edited row: a step of 0, NaN, text where a number belongs, a time out of range.
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise InvariantViolation(f"stored {where}: {exc}") from exc
    return StoredRules(
        exchange=row["exchange"], market=row["market"], rules=rules, fetched_ms=fetched_ms
    )


def _json_text(value: Any, where: str) -> str:
    """Return ``value`` as canonical JSON; what JSON cannot hold exactly (NaN, infinities,
    objects of other types) is a ``ValueError`` naming the field."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} is not JSON-safe: {exc}") from exc


def model_version_to_row(version: ModelVersion) -> dict[str, Any]:
    where = f"model version {version.id}"
    return {
        "id": version.id,
        "member": version.member,
        "status": ModelStatus(version.status).value,
        "train_start_ms": version.train_start_ms,
        "train_end_ms": version.train_end_ms,
        "feature_set_hash": version.feature_set_hash,
        "metrics": _json_text(dict(version.metrics), f"{where}: metrics"),
        "artifact_path": version.artifact_path,
        "artifact_sha256": version.artifact_sha256,
        "created_ms": version.created_ms,
        "symbols": _json_text(list(version.symbols), f"{where}: symbols"),
        "params": _json_text(dict(version.params), f"{where}: params"),
        "libraries": _json_text(dict(version.libraries), f"{where}: libraries"),
        "reason": version.reason,
        "promoted_ms": version.promoted_ms,
        "status_ms": version.status_ms,
    }


def _json_column(row: Mapping[Any, Any], column: str, kind: type) -> Any:
    value = json.loads(row[column])
    if not isinstance(value, kind):
        raise TypeError(f"{column} is not a JSON {'object' if kind is dict else 'array'}")
    return value


def row_to_model_version(row: Mapping[Any, Any]) -> ModelVersion:
    where = f"model_versions {row['id']}"
    try:
        metrics = _json_column(row, "metrics", dict)
        symbols = _json_column(row, "symbols", list)
        params = _json_column(row, "params", dict)
        libraries = _json_column(row, "libraries", dict)
        if not all(isinstance(s, str) for s in symbols):
            raise TypeError(f"symbols holds more than text: {symbols!r}")
        if not all(isinstance(v, str) for v in libraries.values()):
            raise TypeError(f"libraries holds more than text: {libraries!r}")
        status = ModelStatus(row["status"])
    except (ValueError, TypeError) as exc:  # a hand-edited row
        raise InvariantViolation(f"stored {where}: {exc}") from exc
    return ModelVersion(
        id=row["id"],
        member=row["member"],
        status=status,
        train_start_ms=int(row["train_start_ms"]),
        train_end_ms=int(row["train_end_ms"]),
        feature_set_hash=row["feature_set_hash"],
        metrics=metrics,
        artifact_path=row["artifact_path"],
        artifact_sha256=row["artifact_sha256"],
        created_ms=int(row["created_ms"]),
        symbols=tuple(symbols),
        params=params,
        libraries=libraries,
        reason=row["reason"],
        promoted_ms=_opt_int(row["promoted_ms"]),
        status_ms=_opt_int(row["status_ms"]),
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def prediction_to_tuple(p: Prediction) -> tuple[str, str, int, str, float, str, int]:
    """Return the ``model_predictions`` values in ``PREDICTION_COLUMNS`` order, as plain
    Python numbers (numpy scalars cannot be bound by the driver)."""
    return (
        p.version_id,
        p.symbol,
        int(p.ts_ms),
        p.member,
        float(p.p_up),
        p.role,
        int(p.created_ms),
    )


PREDICTION_COLUMNS = ("version_id", "symbol", "ts_ms", "member", "p_up", "role", "created_ms")


def tuple_to_prediction(values: Sequence[Any]) -> Prediction:
    """Return the prediction of a row selected in ``PREDICTION_COLUMNS`` order."""
    version_id, symbol, ts_ms, member, p_up, role, created_ms = values
    return Prediction(
        version_id=version_id,
        member=member,
        symbol=symbol,
        ts_ms=int(ts_ms),
        p_up=float(p_up),
        role=role,
        created_ms=int(created_ms),
    )


def policy_version_to_row(version: PolicyVersion) -> dict[str, Any]:
    payload = {"policy": policy_to_dict(version.policy), "expires_ms": version.expires_ms}
    return {
        "version": version.version,
        "ts_ms": version.ts_ms,
        "mode": version.policy.mode.value,
        "payload": json.dumps(payload, sort_keys=True, allow_nan=False),
        "author": version.source,
        "reason": version.reason,
    }


def row_to_policy_version(row: Mapping[Any, Any]) -> PolicyVersion:
    try:
        payload = json.loads(row["payload"])
        policy = policy_from_dict({**payload["policy"], "version": row["version"]})
        expires = payload.get("expires_ms")
        if expires is not None and not isinstance(expires, int):
            raise TypeError(f"expires_ms is {expires!r}")
    except (ValueError, TypeError, KeyError) as exc:  # a hand-edited row
        raise InvariantViolation(f"stored policy version {row['version']}: {exc}") from exc
    return PolicyVersion(
        policy=policy,
        ts_ms=row["ts_ms"],
        source=row["author"],
        reason=row["reason"],
        expires_ms=expires,
    )


def assessment_to_row(record: AssessmentRecord) -> dict[str, Any]:
    return {
        "ts_ms": record.ts_ms,
        "score": record.score,
        "level": record.level,
        "payload": record.body,
    }


def row_to_assessment(row: Mapping[Any, Any]) -> AssessmentRecord:
    return AssessmentRecord(
        ts_ms=row["ts_ms"], score=row["score"], level=row["level"], body=row["payload"]
    )


def decision_to_row(decision: BrainDecision) -> dict[str, Any]:
    return {
        "ts_ms": decision.ts_ms,
        "brain": decision.brain,
        "summary": decision.summary,
        "payload": decision.body,
    }


def row_to_decision(row: Mapping[Any, Any]) -> BrainDecision:
    return BrainDecision(
        ts_ms=row["ts_ms"], brain=row["brain"], summary=row["summary"], body=row["payload"]
    )
