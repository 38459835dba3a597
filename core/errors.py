"""The one error tree of Quantum Trader.

Every error we raise on purpose is a ``QTError``. What the caller does depends only on the branch::

    QTError
    ├── OperationalError      needs a human, stop trading (bad config, auth failure)
    │   └── ConfigError
    ├── DependencyError       skip this cycle (no price, missing data, stale model)
    │   ├── TemporaryError    retry with backoff (network, 5xx) -- the only retried kind
    │   │   └── RateLimited
    │   └── StorageUnavailable  the database cannot be written: trading halts (fail closed)
    ├── DataError             bad input data (candle files, chat arguments): reject, lose nothing
    │   ├── CandleValidationError
    │   ├── ArtifactError     a model artifact missing, tampered or truncated: not loaded
    │   └── FeatureMismatch   features unlike a model's training features: no prediction
    ├── OrderRejected         the venue said no: recorded as an event, never retried
    └── InvariantViolation    bug or corrupt state: crash, restart, reconcile

Inside one symbol's trading cycle, an ``InvariantViolation`` or any other unexpected error
fails that symbol closed instead (``Engine.on_candle``): the other symbols trade on.

Risk denials are values, not exceptions. Messages say what was found ("was", "received").
"""

from __future__ import annotations


class QTError(Exception):
    """Base of every error Quantum Trader raises on purpose."""


class OperationalError(QTError):
    """A problem only a human can fix; trading must stop."""


class ConfigError(OperationalError):
    """Settings are missing, malformed or contradictory."""


class DependencyError(QTError):
    """Something this cycle needs is unavailable; skip the cycle."""


class TemporaryError(DependencyError):
    """A transient failure (network, 5xx); retried with backoff and jitter."""


class RateLimited(TemporaryError):
    """The venue asked us to slow down."""


class StorageUnavailable(DependencyError):
    """The database cannot be read or written now (locked by another process past the busy
    timeout, disk full). Nothing is lost in memory; trading halts until an operator resumes."""


class DataError(QTError):
    """Input data is invalid; it is rejected with a message that names what and where."""


class CandleValidationError(DataError):
    """Candles break a validation rule (ordering, grid, prices, volume)."""


class ArtifactError(DataError):
    """A model artifact is missing, tampered with, truncated or unreadable; nothing of it is
    loaded. The message names the file."""


class FeatureMismatch(DataError):
    """A model was given features other than those it was trained on (another feature-set
    hash, missing or extra columns); it predicts nothing rather than something wrong."""


class OrderRejected(QTError):
    """The venue refused an order (funds, limits, reduce-only); recorded, never retried."""


class InvariantViolation(QTError):
    """Internal state is impossible: a bug or corrupt data."""
