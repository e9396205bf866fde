"""The baselines: a workflow with two no-op activities, the same with two no-op local
activities in one workflow task (the floor of Herald's one-task shape), and a worker
process for both.

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

_STEP_TIMEOUT = timedelta(seconds=30)


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
            await workflow.execute_activity(noop, step, start_to_close_timeout=_STEP_TIMEOUT)
        return name


@workflow.defn
class BareLocalWorkflow:
    """Two no-op local activities in one workflow task: the least a durable two-step
    workflow can cost."""

    @workflow.run
    async def run(self, name: str) -> str:
        """Run both steps."""
        for step in ("first", "second"):
            await workflow.execute_local_activity(noop, step, start_to_close_timeout=_STEP_TIMEOUT)
        return name


async def serve(address: str, task_queue: str) -> None:
    """Run the baseline worker until SIGTERM."""
    client = await Client.connect(address)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow, BareLocalWorkflow],
        activities=[noop],
    ):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
