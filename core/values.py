"""Value classes: frozen dataclasses for the type checker, plain slotted ones at run time.

``@value_class(frozen=True, slots=True, kw_only=True)`` is ``dataclasses.dataclass`` to mypy
(the alias below is what it reads), so a value class is checked as frozen: assigning a field is
a type error (strict mypy runs on the whole core), ``replace()`` and the constructor are checked
field by field. At run time the class is the same dataclass without ``frozen``: a frozen
dataclass sets every field through ``object.__setattr__`` in ``__init__``, which made the
generated constructors the largest single cost of a backtest's simulation (orders, fills,
events, trades, exit plans are made by the thousand per run; a 9-field frozen slotted instance
cost about three times a plain one to make). The hash stays what the frozen class had: made of
the fields when the class compares by value and defines no ``__hash__`` of its own, so a value
class still keys a dict or a set. Immutability is the type checker's promise, not a run-time
check: nothing assigns a field of a value class (mypy refuses it), and the tests guard that the
hash and equality did not change (tests/unit/core/test_values.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

__all__ = ["value_class"]

if TYPE_CHECKING:
    from dataclasses import dataclass as value_class
else:

    def value_class(cls: type | None = None, /, *, frozen: bool = False, **options: Any) -> Any:
        """Return ``dataclasses.dataclass(cls, **options)`` without ``frozen``; ``frozen=True``
        is required (the class is typed frozen) and its hash kept."""
        if not frozen:
            raise TypeError("value_class is for classes typed frozen: pass frozen=True")

        def wrap(klass: type) -> type:
            hashed = _hashes_fields(klass, options)
            return dataclasses.dataclass(klass, **{**options, "unsafe_hash": hashed})

        return wrap if cls is None else wrap(cls)


def _hashes_fields(klass: type, options: dict[str, Any]) -> bool:
    """Return whether the frozen dataclass would have made a hash of the fields: it compares
    by value (``eq``, the default) and the class body defines no ``__hash__`` of its own (a
    body defining ``__eq__`` alone gets ``__hash__ = None`` from Python, which is no own hash).
    """
    if options.get("unsafe_hash", False):
        return True
    if not options.get("eq", True):
        return False
    body = klass.__dict__
    own = "__hash__" in body and not (body["__hash__"] is None and "__eq__" in body)
    return not own
