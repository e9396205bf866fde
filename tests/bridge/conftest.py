"""Fixtures for the bridge tests: a bridge process next to the session stack, and a
database engine to read notification states with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.processes import ManagedProcess
from herald.db import make_engine
from tests.bridge.support import FAST_RETRY, bridge_process, wait_consumers
from tests.harness import Stack


@pytest.fixture(scope="session")
async def bridge(stack: Stack, run_dir: Path) -> AsyncIterator[ManagedProcess]:
    """``herald bridge`` consuming this run's vhost; tests that stop it start it again."""
    process = bridge_process(
        stack.settings, run_dir / "logs", database_pool_size=5, **FAST_RETRY
    ).start()
    await wait_consumers(stack.settings)
    yield process
    process.stop(timeout=20)


@pytest.fixture(scope="session")
async def engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    """Reads notification rows of this run's database."""
    made = make_engine(stack.settings, pool_size=2)
    yield made
    await made.dispose()
