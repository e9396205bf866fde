"""The baseline: a workflow with two no-op activities, and a worker process for it.

``python -m benchmarks.bare ADDRESS TASK_QUEUE`` runs the worker until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn
async def noop(step: str) -> str:
    """Does nothing, as cheaply as an activity can."""
    return step


@workflow.defn
class BareWorkflow:
    """Two no-op activities in a row: what a minimal Temporal pipeline costs."""

    @workflow.run
    async def run(self, name: str) -> str:
        """Run both steps."""
        for step in ("first", "second"):
            await workflow.execute_activity(
                noop, step, start_to_close_timeout=timedelta(seconds=30)
            )
        return name


async def serve(address: str, task_queue: str) -> None:
    """Run the baseline worker until SIGTERM."""
    client = await Client.connect(address)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[BareWorkflow], activities=[noop]):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
