"""Alembic migrations generated from ``herald.db``."""
