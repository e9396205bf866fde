"""The Temporal client factory: one data converter and one set of task queue names."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from functools import lru_cache, partial

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from herald.backoff import Stopped, retry
from herald.codec import EncryptionCodec
from herald.contracts import Channel
from herald.settings import Settings

log = logging.getLogger(__name__)


def core_task_queue(settings: Settings) -> str:
    """Where workflows and the cheap activities (recipients, templates, status) run."""
    return f"{settings.task_queue_prefix}-core"


def channel_task_queue(channel: Channel | str, prefix: str = "herald") -> str:
    """Where the provider activity of one channel runs; scale a channel by its queue."""
    return f"{prefix}-{Channel(channel).value}"


def data_converter(settings: Settings) -> DataConverter:
    """The one converter of every client, worker and replayer: pydantic models, encrypted
    with the payload keys of ``settings`` (see herald/codec.py)."""
    return _converter_for(settings.payload_keys.get_secret_value())


@lru_cache(maxsize=4)
def _converter_for(payload_keys: str) -> DataConverter:
    return dataclasses.replace(
        pydantic_data_converter, payload_codec=EncryptionCodec.from_spec(payload_keys)
    )


async def connect(
    settings: Settings, runtime: Runtime | None = None, *, lazy: bool = False
) -> Client:
    """A client for API, bridge, workers and tests, all with the one data converter.

    ``lazy`` connects on first use, so a process can start while Temporal is down.
    """
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=runtime,
        lazy=lazy,
    )


async def connect_when_available(
    settings: Settings,
    stop: asyncio.Event,
    runtime: Runtime | None = None,
    *,
    initial_delay: float = 0.5,
    maximum_delay: float = 30.0,
) -> Client | None:
    """A client, retrying with backoff until the server answers (None if stopped first).

    Long-running processes start (or restart) while Temporal may be down; they wait for
    it instead of exiting.
    """

    def unavailable(err: BaseException, delay: float) -> None:
        log.warning(
            "Temporal unavailable; retrying",
            extra={"address": settings.temporal_address, "error": str(err), "retry_in": delay},
        )

    try:
        return await retry(
            partial(connect, settings, runtime),
            initial=initial_delay,
            maximum=maximum_delay,
            # The SDK raises RuntimeError for "failed client connect".
            when=lambda err: isinstance(err, RuntimeError),
            on_retry=unavailable,
            stop=stop,
        )
    except Stopped:
        return None
