"""Session fixtures: one Herald on real PostgreSQL, RabbitMQ, Temporal and sinks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devtools.devserver import TemporalDevServer
from devtools.processes import ManagedProcess
from devtools.sinks import Sinks
from herald.migrate import drop_database, ensure_database, upgrade
from herald.ports import free_port
from herald.settings import Settings
from tests import shards
from tests.bridge.support import FAST_RETRY, bridge_process, wait_consumers
from tests.harness import (
    Stack,
    Tenant,
    new_run_id,
    new_tenant,
    rabbitmq_vhost,
    test_settings,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only this session's part of the suite when ``scripts/test`` split it
    (``tests/shards.py``)."""
    part = shards.selected()
    if part is None:
        return
    root = config.rootpath
    kept, dropped = [], []
    for item in items:
        path = item.path.relative_to(root).as_posix()
        fast = item.get_closest_marker("fast") is not None
        (kept if shards.part_of(path, fast) == part else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs and the Temporal SQLite file of this run."""
    return tmp_path_factory.mktemp("herald")


@pytest.fixture(scope="session")
def api_port() -> int:
    """The port of this run's API, known before the Temporal server whose UI calls it."""
    return free_port()


@pytest.fixture(scope="session")
def temporal_server(run_dir: Path, api_port: int) -> Iterator[TemporalDevServer]:
    """A real Temporal dev server (file-backed, so it can be restarted), its Web UI
    decoding payloads through the API's codec endpoint."""
    server = TemporalDevServer(
        run_dir / "temporal.db",
        port=free_port(),
        ui_port=free_port(),
        log_file=run_dir / "temporal.log",
        ui_codec_endpoint=f"http://127.0.0.1:{api_port}/codec",
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sinks() -> Iterator[Sinks]:
    """The SMTP server and the Twilio/FCM HTTP server the workers send to."""
    running = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def settings(temporal_server: TemporalDevServer, sinks: Sinks, api_port: int) -> Iterator[Settings]:
    """This run's settings, database migrated, RabbitMQ vhost created."""
    run_id = new_run_id()
    settings = test_settings(
        run_id,
        temporal_server.address,
        sinks,
        api_port=api_port,
        temporal_ui_url=temporal_server.ui_url,
    )
    asyncio.run(ensure_database(settings.database_url))
    upgrade(settings.database_url)
    rabbitmq_vhost(f"herald-test-{run_id}", create=True)
    yield settings
    rabbitmq_vhost(f"herald-test-{run_id}", create=False)
    asyncio.run(drop_database(settings.database_url))


@pytest.fixture(scope="session")
def stack(settings: Settings, run_dir: Path) -> Iterator[Stack]:
    """The real API and worker processes."""
    running = Stack(settings, run_dir / "logs").start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _clean_sink_rules(request: pytest.FixtureRequest) -> None:
    # Only for tests that use the session's sinks: the fast tests start nothing.
    if "sinks" in request.fixturenames:
        sinks: Sinks = request.getfixturevalue("sinks")
        sinks.state.rules.clear()


async def _tenant(stack: Stack, name: str) -> Tenant:
    return await new_tenant(stack, name)


@pytest.fixture
async def tenant(stack: Stack) -> AsyncIterator[Tenant]:
    """A fresh tenant with its own API key."""
    made = await _tenant(stack, f"tenant-{new_run_id()}")
    yield made
    await made.client.aclose()


@pytest.fixture
async def other_tenant(stack: Stack) -> AsyncIterator[Tenant]:
    """A second tenant, for isolation checks."""
    made = await _tenant(stack, f"other-{new_run_id()}")
    yield made
    await made.client.aclose()


@pytest.fixture(scope="session")
async def bridge(stack: Stack, run_dir: Path) -> AsyncIterator[ManagedProcess]:
    """``herald bridge`` consuming this run's vhost; tests that stop it start it again."""
    process = bridge_process(
        stack.settings, run_dir / "logs", database_pool_size=5, **FAST_RETRY
    ).start()
    await wait_consumers(stack.settings)
    yield process
    process.stop(timeout=20)
