"""SQLModel tables: the only place that knows the SQL schema. Mappers turn rows into domain values.

Money and quantities are stored as TEXT (``str(Decimal)``) so they come back exact; enums are
stored by value. Times are integer ms since the epoch (UTC).

Why candles live in one narrow SQLite table with a composite primary key
------------------------------------------------------------------------
``candles(exchange, market, symbol, timeframe, ts_ms, open, high, low, close, volume)`` with the
primary key ``(exchange, market, symbol, timeframe, ts_ms)`` declared ``WITHOUT ROWID``, so the
rows are stored clustered in key order (``market`` is spot, perp or mark: one symbol's spot,
futures and mark-price candles are different prices and never replace each other):

* a download is an idempotent bulk upsert: one ``executemany`` of
  ``INSERT ... ON CONFLICT(pk) DO UPDATE`` in batches; re-downloading an overlap replaces rows,
  never duplicates them;
* a range read is one B-tree range scan in time order, fetched as tuples and turned straight into
  numpy columns (no per-row domain objects); its ``ORDER BY ts_ms`` costs no sort;
* ``last_ts_ms`` is a single primary-key seek and the per-series summary one pass over the key;
* it is the same database file as orders and events (one backup, one transaction), and a
  different database later is a different URL, not a different storage design.

Measured on this machine (SQLite 3.40, WAL, synchronous=NORMAL, file DB): writing 76,000 1m
candles takes about 0.33 s (first insert, and again when replacing them all), reading them back
into numpy about 0.12 s; a Core ``insert()`` of dicts took twice as long both ways, hence the
driver-level SQL in ``storage.repositories``. Parquet files would read faster but cannot be
upserted or joined in a transaction with the rest of the state; one table per series would
multiply the schema.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Float, ForeignKey, Index, Text, text
from sqlmodel import Field, SQLModel


def _text(*, nullable: bool = False, unique: bool = False) -> Column[str]:
    return Column(Text, nullable=nullable, unique=unique)


def _ms(*, nullable: bool = False, index: bool = False) -> Column[int]:
    return Column(BigInteger, nullable=nullable, index=index)


class CandleRow(SQLModel, table=True):
    """One OHLCV candle; ``ts_ms`` is the open time."""

    __tablename__ = "candles"
    __table_args__ = {"sqlite_with_rowid": False}

    exchange: str = Field(sa_type=Text, primary_key=True)
    market: str = Field(sa_type=Text, primary_key=True)  # CandleMarket: spot, perp, mark
    symbol: str = Field(sa_type=Text, primary_key=True)
    timeframe: str = Field(sa_type=Text, primary_key=True)
    ts_ms: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    open: float = Field(sa_type=Float, nullable=False)
    high: float = Field(sa_type=Float, nullable=False)
    low: float = Field(sa_type=Float, nullable=False)
    close: float = Field(sa_type=Float, nullable=False)
    volume: float = Field(sa_type=Float, nullable=False)


class OrderRow(SQLModel, table=True):
    """An order and its request; ``exchange_order_id`` is NULL until the venue assigns one."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_symbol_created", "symbol", "created_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    client_order_id: str = Field(sa_column=_text(unique=True))
    exchange_order_id: str | None = Field(default=None, sa_column=_text(nullable=True, unique=True))
    symbol: str = Field(sa_column=_text())
    side: str = Field(sa_column=_text())
    type: str = Field(sa_column=_text())
    amount: str = Field(sa_column=_text())
    price: str | None = Field(default=None, sa_column=_text(nullable=True))
    stop_price: str | None = Field(default=None, sa_column=_text(nullable=True))
    reduce_only: bool = Field(nullable=False)
    market_type: str = Field(sa_column=_text())
    leverage: int = Field(nullable=False)
    tag: str = Field(sa_column=_text())
    status: str = Field(sa_column=Column(Text, nullable=False, index=True))
    filled: str = Field(sa_column=_text())
    average_price: str | None = Field(default=None, sa_column=_text(nullable=True))
    fee_paid: str = Field(sa_column=_text())
    created_ms: int = Field(sa_column=_ms())
    updated_ms: int = Field(sa_column=_ms())
    reason: str = Field(sa_column=_text())


class FillRow(SQLModel, table=True):
    """One execution of an order; ``fill_id`` is unique so re-recording is a no-op."""

    __tablename__ = "fills"

    id: int | None = Field(default=None, primary_key=True)
    fill_id: str = Field(sa_column=_text(unique=True))
    client_order_id: str = Field(
        sa_column=Column(
            Text,
            ForeignKey("orders.client_order_id", name="fk_fills_order"),
            nullable=False,
            index=True,
        )
    )
    exchange_order_id: str = Field(sa_column=_text())
    symbol: str = Field(sa_column=_text())
    side: str = Field(sa_column=_text())
    amount: str = Field(sa_column=_text())
    price: str = Field(sa_column=_text())
    fee: str = Field(sa_column=_text())
    liquidity: str = Field(sa_column=_text())
    ts_ms: int = Field(sa_column=_ms(index=True))
    market_type: str = Field(sa_column=_text())


class PositionRow(SQLModel, table=True):
    """An open position per (symbol, market type)."""

    __tablename__ = "positions"

    symbol: str = Field(sa_type=Text, primary_key=True)
    market_type: str = Field(sa_type=Text, primary_key=True)
    side: str = Field(sa_column=_text())
    amount: str = Field(sa_column=_text())
    entry_price: str = Field(sa_column=_text())
    leverage: int = Field(nullable=False)
    margin: str = Field(sa_column=_text())
    realized_pnl: str = Field(sa_column=_text())
    opened_ms: int = Field(sa_column=_ms())
    updated_ms: int = Field(sa_column=_ms())


class BalanceRow(SQLModel, table=True):
    """Free and used amount of one asset."""

    __tablename__ = "balances"

    asset: str = Field(sa_type=Text, primary_key=True)
    free: str = Field(sa_column=_text())
    used: str = Field(sa_column=_text())


class EquitySnapshotRow(SQLModel, table=True):
    """Account value at one moment."""

    __tablename__ = "equity_snapshots"

    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = Field(sa_column=_ms(index=True))
    equity: str = Field(sa_column=_text())
    cash: str = Field(sa_column=_text())
    unrealized_pnl: str = Field(sa_column=_text())


class EventRow(SQLModel, table=True):
    """One audit-trail event; ``payload`` is JSON text."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_topic_ts", "topic", "ts_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(sa_column=_text(unique=True))
    topic: str = Field(sa_column=_text())
    ts_ms: int = Field(sa_column=_ms(index=True))
    payload: str = Field(sa_column=_text())


class KeyValueRow(SQLModel, table=True):
    """Small persistent state."""

    __tablename__ = "kv_state"

    key: str = Field(sa_type=Text, primary_key=True)
    value: str = Field(sa_column=_text())


class MarketRulesRow(SQLModel, table=True):
    """A venue's precision and limits of one symbol, as last fetched."""

    __tablename__ = "market_rules"

    exchange: str = Field(sa_type=Text, primary_key=True)
    market: str = Field(sa_type=Text, primary_key=True)  # MarketType: spot, perp
    symbol: str = Field(sa_type=Text, primary_key=True)
    amount_step: str = Field(sa_column=_text())
    price_tick: str = Field(sa_column=_text())
    min_amount: str = Field(sa_column=_text())
    min_notional: str = Field(sa_column=_text())
    max_leverage: int | None = Field(default=None, nullable=True)
    fetched_ms: int = Field(sa_column=_ms())


class TradeRow(SQLModel, table=True):
    """One closed round trip; ``legs`` and ``explanation`` are the trade codec's JSON."""

    __tablename__ = "trades"

    id: int | None = Field(default=None, primary_key=True)
    trade_id: str = Field(sa_column=_text(unique=True))
    symbol: str = Field(sa_column=_text())
    side: str = Field(sa_column=_text())
    market_type: str = Field(sa_column=_text())
    leverage: int = Field(nullable=False)
    opened_ms: int = Field(sa_column=_ms())
    closed_ms: int = Field(sa_column=_ms(index=True))
    amount: str = Field(sa_column=_text())
    entry_price: str = Field(sa_column=_text())
    exit_price: str = Field(sa_column=_text())
    fees: str = Field(sa_column=_text())
    pnl: str = Field(sa_column=_text())
    pnl_pct: float = Field(sa_type=Float, nullable=False)
    exit_reason: str = Field(sa_column=_text())
    legs: str = Field(sa_column=_text())
    funding: str = Field(sa_column=_text())
    liquidation_price: str | None = Field(default=None, sa_column=_text(nullable=True))
    provider: str = Field(sa_column=_text())
    regime: str = Field(sa_column=_text())
    exit_profile: str = Field(sa_column=_text())
    explanation: str | None = Field(default=None, sa_column=_text(nullable=True))


# --- schema for later features (no repositories yet) -------------------------------------------


class PolicyVersionRow(SQLModel, table=True):
    """One version of the trading policy, written only by the policy store."""

    __tablename__ = "policy_versions"

    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    ts_ms: int = Field(sa_column=_ms(index=True))
    mode: str = Field(sa_column=_text())
    payload: str = Field(sa_column=_text())
    author: str = Field(sa_column=_text())
    reason: str = Field(sa_column=_text())


class RiskAssessmentRow(SQLModel, table=True):
    """One risk assessment (score, level, details as JSON)."""

    __tablename__ = "risk_assessments"

    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = Field(sa_column=_ms(index=True))
    score: float = Field(sa_type=Float, nullable=False)
    level: str = Field(sa_column=_text())
    payload: str = Field(sa_column=_text())


class BrainDecisionRow(SQLModel, table=True):
    """One decision of a brain (the CEO's mode, a strategy review): a line and its JSON."""

    __tablename__ = "brain_decisions"

    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = Field(sa_column=_ms(index=True))
    brain: str = Field(sa_column=Column(Text, nullable=False, index=True))
    summary: str = Field(sa_column=_text())
    payload: str = Field(sa_column=_text())


MODEL_STATUSES = ("CANDIDATE", "SHADOW", "CHAMPION", "RETIRED")


class ModelVersionRow(SQLModel, table=True):
    """One trained model version in the registry; the artifact lives on disk, checked by sha256.

    ``symbols``, ``params`` and ``libraries`` are JSON; their server defaults are what rows
    saved before revision 0005 got. The partial unique index keeps one CHAMPION per member.
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        Index("ix_model_versions_member_status", "member", "status"),
        Index(
            "ux_model_versions_one_champion",
            "member",
            unique=True,
            sqlite_where=text("status = 'CHAMPION'"),
        ),
        CheckConstraint(
            "status IN ('CANDIDATE', 'SHADOW', 'CHAMPION', 'RETIRED')",
            name="ck_model_versions_status",
        ),
    )

    id: str = Field(sa_type=Text, primary_key=True)
    member: str = Field(sa_column=_text())
    status: str = Field(sa_column=_text())
    train_start_ms: int = Field(sa_column=_ms())
    train_end_ms: int = Field(sa_column=_ms())
    feature_set_hash: str = Field(sa_column=_text())
    metrics: str = Field(sa_column=_text())
    artifact_path: str = Field(sa_column=_text())
    artifact_sha256: str = Field(sa_column=_text())
    created_ms: int = Field(sa_column=_ms())
    symbols: str = Field(sa_column=Column(Text, nullable=False, server_default="[]"))
    params: str = Field(sa_column=Column(Text, nullable=False, server_default="{}"))
    libraries: str = Field(sa_column=Column(Text, nullable=False, server_default="{}"))
    reason: str = Field(sa_column=Column(Text, nullable=False, server_default=""))
    promoted_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))
    status_ms: int | None = Field(default=None, sa_column=_ms(nullable=True))


class PredictionRow(SQLModel, table=True):
    """What one model version predicted for one symbol at one decision candle (``ts_ms``).

    One row per (version, symbol, candle), so rewriting the same prediction is a no-op.
    No foreign key to ``model_versions``: retention deletes a version's predictions
    and its row as two steps, and an audit may keep the predictions of a deleted version.
    """

    __tablename__ = "model_predictions"
    __table_args__ = (
        Index("ix_model_predictions_version_ts", "version_id", "ts_ms"),
        CheckConstraint("p_up >= 0 AND p_up <= 1", name="ck_model_predictions_p_up"),
        CheckConstraint("role IN ('champion', 'shadow')", name="ck_model_predictions_role"),
    )

    version_id: str = Field(sa_type=Text, primary_key=True)
    symbol: str = Field(sa_type=Text, primary_key=True)
    ts_ms: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    member: str = Field(sa_column=_text())
    p_up: float = Field(sa_type=Float, nullable=False)
    role: str = Field(sa_column=_text())
    created_ms: int = Field(sa_column=_ms())
