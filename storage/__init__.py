"""Persistence: SQLModel tables, repositories, the in-memory twin, Alembic migrations."""
