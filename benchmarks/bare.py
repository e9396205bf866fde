"""The baselines: a workflow with two no-op activities, the same with two no-op local
activities in one workflow task (the floor of Herald's one-task shape), and a worker
process for both.

    python -m benchmarks.bare TASK_QUEUE CONCURRENCY

runs the worker until SIGTERM, on the Temporal server, namespace and payload keys of the
``HERALD_*`` environment (a Herald's ``Settings.as_env()``).

The worker runs on the runtime of Herald's notification worker (``herald worker --queue
email``: ``cli/main.py`` and ``channel_worker`` in ``workers/main.py``), so that a ratio
to it compares workflows, not runtimes:

- workflows outside Temporal's sandbox (``UnsandboxedWorkflowRunner``);
- on uvloop, with ``herald.runtime.tune_gc`` called once everything is imported;
- the one data converter (``herald.temporal.data_converter``: pydantic, and the
  AES-256-GCM payload codec), here and on the client that starts the baselines, so they
  pay for encryption as Herald does;
- for the same ``CONCURRENCY`` (Herald's ``--concurrency``, by default
  ``HERALD_WORKER_CONCURRENCY``), the same slots and pollers
  (``workers.main.channel_slots``: ``HERALD_WORKER_*_POLLS`` and
  ``HERALD_WORKER_NONSTICKY_POLL_RATIO``), as Herald's.

Left out as Herald's own work rather than its runtime: its correlation interceptor, its
send-rate limit (none unless configured) and its graceful-shutdown handling.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta

import uvloop
from temporalio import activity, workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from herald.runtime import tune_gc
from herald.settings import Settings, get_settings
from herald.temporal import connect
from workers.main import channel_slots

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


async def serve(settings: Settings, task_queue: str, concurrency: int) -> None:
    """Run the baseline worker until SIGTERM."""
    client = await connect(settings)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow, BareLocalWorkflow],
        activities=[noop],
        workflow_runner=UnsandboxedWorkflowRunner(),
        **channel_slots(concurrency, settings),
    ):
        await stop.wait()


if __name__ == "__main__":
    arguments = get_settings(), sys.argv[1], int(sys.argv[2])
    tune_gc()
    uvloop.run(serve(*arguments))
