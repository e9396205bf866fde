"""Create the database if needed and bring its schema to the latest migration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


@asynccontextmanager
async def server_connection(
    database_url: str, timeout: float = 60.0
) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the server's ``postgres`` database, for work on databases themselves."""
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database="postgres",
        timeout=timeout,
    )
    try:
        yield conn
    finally:
        await conn.close()


async def ensure_database(database_url: str) -> bool:
    """Create the database named in the URL if it does not exist; True if it was created."""
    name = make_url(database_url).database
    async with server_connection(database_url) as conn:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True


async def drop_database(database_url: str) -> None:
    """Drop the database named in the URL, disconnecting whoever still uses it."""
    name = make_url(database_url).database
    async with server_connection(database_url) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def alembic_config(database_url: str) -> Config:
    """Alembic pointed at Herald's migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str) -> None:
    """Apply every migration not yet applied (run outside an event loop)."""
    command.upgrade(alembic_config(database_url), "head")
