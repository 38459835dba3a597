"""Value classes: typed frozen (mypy), plain slotted dataclasses at run time, hash unchanged."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from core.domain.enums import OrderType, Side
from core.domain.events import OrderCanceled
from core.domain.orders import OrderRequest
from core.values import value_class

ROOT = Path(__file__).resolve().parents[3]
# The modules whose value classes are made by the thousand in a backtest (orders, fills,
# events, trades, exit plans, the paper exchange's book, the services' requests).
HOT = ("core/domain", "core/brains", "core/exchange/sim.py", "core/exchange/paper.py",
       "core/exchange/paper_book.py", "core/exchange/paper_ledger.py", "core/services",
       "core/signals")  # fmt: skip


@value_class(frozen=True, slots=True, kw_only=True)
class Lean:
    a: int
    b: str = "x"


@dataclass(frozen=True, slots=True, kw_only=True)
class Frozen:
    a: int
    b: str = "x"


def test_a_value_class_compares_and_hashes_as_its_frozen_twin() -> None:
    lean, twin = Lean(a=1), Frozen(a=1)
    assert hash(lean) == hash(twin)  # the fields' tuple, as a frozen dataclass hashes
    assert lean == Lean(a=1) and lean != Lean(a=2)
    assert {lean: 1}[Lean(a=1)] == 1
    assert dataclasses.replace(lean, b="y") == Lean(a=1, b="y")
    assert copy.deepcopy(lean) == lean
    assert not hasattr(lean, "__dict__")  # still slotted
    # What it saves: no frozen __setattr__ at run time (mypy is the guard against assigning).
    assert not type(lean).__dataclass_params__.frozen


def test_identity_hash_and_an_own_hash_are_kept() -> None:
    @value_class(frozen=True, slots=True, eq=False)
    class ById:
        a: int

    @value_class(frozen=True, slots=True)
    class Own:
        a: int

        def __hash__(self) -> int:
            return 7

    first, second = ById(1), ById(1)
    assert first != second and hash(first) == object.__hash__(first)
    assert hash(Own(1)) == 7


def test_a_class_not_typed_frozen_is_refused() -> None:
    with pytest.raises(TypeError, match="frozen=True"):
        value_class(slots=True)


def test_domain_values_still_key_sets() -> None:
    request = OrderRequest(
        client_order_id="c1", symbol="BTC/USDT", side=Side.BUY, type=OrderType.MARKET,
        amount=Decimal(1),
    )  # fmt: skip
    assert len({request, dataclasses.replace(request)}) == 1
    event = OrderCanceled(ts_ms=1, client_order_id="c1", symbol="BTC/USDT", reason="test")
    assert event in {event}


def test_hot_modules_declare_value_classes_not_frozen_dataclasses() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for hot in HOT
        for path in ((ROOT / hot).rglob("*.py") if (ROOT / hot).is_dir() else [ROOT / hot])
        if "@dataclass(frozen=True" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
