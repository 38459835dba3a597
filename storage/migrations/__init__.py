"""Alembic migrations of the storage schema; run them with ``storage.migrate.upgrade``."""
