"""Fixtures for the bridge tests: a database engine to read notification states with
(the bridge process itself is the session's, in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.db import make_engine
from tests.harness import Stack


@pytest.fixture(scope="session")
async def engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    """Reads notification rows of this run's database."""
    made = make_engine(stack.settings, pool_size=2)
    yield made
    await made.dispose()
