"""Flow runs already running must keep running after a deploy: every
``tests/workflows/histories/flow-<version>-<path>.json`` was recorded from a real
``FlowRun`` (a send, a delay and a send; a wait met; a wait timed out; a branch; a
throttled run; a run cancelled during its delay) and each must replay, inside Temporal's
sandbox, against today's ``workflows/flow.py``. A change that breaks one fails here:
guard it with ``workflow.patched`` rather than re-recording the old files.

Recording (after a deliberate change that running flow runs can no longer follow, with
``VERSION`` set to the next one so the older files stay beside the new ones)::

    HERALD_RECORD_HISTORIES=1 .venv/bin/pytest tests/flows/test_flow_replay.py -k test_record -s

drives one run down each path on Temporal's time-skipping test server (hours of delay
and wait pass at once) with the flow activities answered by fakes, and writes the
histories with Herald's own data converter, as a worker's would be.

The replay needs no services: it runs in this process.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from herald.correlation import CorrelationInterceptor
from herald.flows.models import FlowRunInput
from herald.settings import get_settings
from herald.temporal import data_converter
from tests.flows.test_flowrun_timeskipping import ONBOARDING, FakeHerald, job, send, until
from tests.timeskipping import time_skipping
from tests.workflows.replaying import CORPUS, load_corpus, replay
from workflows.flow import FlowRunWorkflow

pytestmark = [pytest.mark.fast, pytest.mark.timeout(120)]

# The FlowRun code the recorded histories belong to: bump it when recording the
# histories of a changed workflow, and keep the older files.
VERSION = "v1"
QUEUE = "flow-histories"

PATHS = {
    "send-delay-send",
    "wait-met",
    "wait-timeout",
    "branch",
    "throttled",
    "cancelled-during-delay",
}

DELAYED = [send("first"), {"id": "pause", "type": "delay", "seconds": 3600}, send("second")]


def flow_histories(version: str = "*") -> list[WorkflowHistory]:
    """Every recorded FlowRun history (of one version, if given), named after its file."""
    return load_corpus(CORPUS, f"flow-{version}")


def test_the_corpus_has_every_path() -> None:
    recorded = {history.workflow_id for history in flow_histories(VERSION)}

    assert {f"flow-{VERSION}-{name}" for name in PATHS} <= recorded


async def test_every_recorded_flow_run_replays_in_the_sandbox() -> None:
    histories = flow_histories()

    replayed, failures = await replay(histories, FlowRunWorkflow)

    assert failures == []
    assert replayed == len(histories) >= len(PATHS)


# --- recording -------------------------------------------------------------------------


async def _record_paths(env: WorkflowEnvironment) -> dict[str, WorkflowHistory]:
    """One run down each path, on the time-skipping server; its history by path name."""
    client = env.client
    histories: dict[str, WorkflowHistory] = {}

    async def record(
        name: str,
        run: FlowRunInput,
        setup: Callable[[FakeHerald], None] = lambda fake: None,
        drive: Callable[[Any, FakeHerald], Awaitable[None]] | None = None,
    ) -> None:
        fake = FakeHerald(env)
        setup(fake)
        async with Worker(
            client,
            task_queue=QUEUE,
            workflows=[FlowRunWorkflow],
            activities=fake.activities(),
            interceptors=[CorrelationInterceptor()],
        ):
            handle = await client.start_workflow(
                FlowRunWorkflow.run, run, id=run.run.workflow_id, task_queue=QUEUE
            )
            if drive is not None:
                await drive(handle, fake)
            else:
                await handle.result()
            histories[name] = await handle.fetch_history()

    async def cancel_in_delay(handle: Any, fake: FakeHerald) -> None:
        await until(
            lambda: any(
                step.id == "pause" and step.status.value == "running"
                for progress in fake.progress
                for step in progress.steps
            )
        )
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()

    def delivered(fake: FakeHerald) -> None:
        fake.delivered = lambda step_id: step_id == "push"

    def refused(fake: FakeHerald) -> None:
        fake.admitted = False

    def reachable(fake: FakeHerald) -> None:
        fake.recipient = {"id": "ada", "phone": "+15550100", "email": "ada@example.com"}

    branch = [
        {
            "id": "reach",
            "type": "branch",
            "if": {
                "all": [
                    {"path": "recipient.phone", "op": "exists"},
                    {"path": "data.plan", "op": "in", "value": ["pro", "team"]},
                ]
            },
            "then": [send("sms", "sms")],
            "else": [send("email")],
        },
        send("after"),
    ]
    throttled = [{"id": "limit", "type": "throttle", "limit": 3, "window_seconds": 60}, send("m")]

    await record("send-delay-send", job(DELAYED))
    await record("wait-met", job(ONBOARDING, {"plan": "pro"}), delivered)
    await record("wait-timeout", job(ONBOARDING, {"plan": "free"}))
    await record("branch", job(branch, {"plan": "pro"}), reachable)
    await record("throttled", job(throttled), refused)
    await record("cancelled-during-delay", job(DELAYED), drive=cancel_in_delay)
    return histories


@pytest.mark.skipif(
    os.environ.get("HERALD_RECORD_HISTORIES") != "1",
    reason="records the corpus only with HERALD_RECORD_HISTORIES=1",
)
async def test_record_flow_histories() -> None:
    async with time_skipping(data_converter(get_settings())) as environment:
        histories = await _record_paths(environment)
        replayed, failures = await replay(histories.values(), FlowRunWorkflow)
        assert failures == []
        assert replayed == len(PATHS)
        assert set(histories) == PATHS
        for name, history in sorted(histories.items()):
            path = CORPUS / f"flow-{VERSION}-{name}.json"
            path.write_text(history.to_json() + "\n")
            print(f"recorded {path}")
