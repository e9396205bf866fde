"""The Temporal client factory: one data converter and one set of task queue names."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from herald.contracts import Channel
from herald.settings import Settings


def core_task_queue(settings: Settings) -> str:
    """Where workflows and the cheap activities (recipients, templates, status) run."""
    return f"{settings.task_queue_prefix}-core"


def channel_task_queue(channel: Channel | str, prefix: str = "herald") -> str:
    """Where the provider activity of one channel runs; scale a channel by its queue."""
    return f"{prefix}-{Channel(channel).value}"


async def connect(
    settings: Settings, runtime: Runtime | None = None, *, lazy: bool = False
) -> Client:
    """A client for API, bridge, workers and tests, all with the pydantic converter.

    ``lazy`` connects on first use, so a process can start while Temporal is down.
    """
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        lazy=lazy,
    )
