"""What one workflow run cost Temporal, counted from its real history.

``shape`` counts the events, the workflow tasks and the billable actions of a history.
Actions are counted as Temporal Cloud bills them: the start; each activity attempt (a
scheduled activity plus its retries); all the local activities of one workflow task
together as one (their markers, per task); each search-attribute upsert, timer, signal
received or sent, child workflow and continue-as-new. The tests use it to hold a clean
send to its shape, the benchmarks to report it.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

_ONE_ACTION_EACH = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


@dataclass(frozen=True)
class Shape:
    """A run's history length, workflow tasks and billable actions."""

    events: int
    workflow_tasks: int
    actions: int


def shape(history: WorkflowHistory) -> Shape:
    """Count what ``history`` cost (see the module docstring for the rules)."""
    tasks = actions = 0
    markers_in_task = False
    for event in history.events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            tasks += 1
            markers_in_task = False
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            if not markers_in_task:
                actions += 1
                markers_in_task = True
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # One per attempt: a retried activity is started once per attempt, but its
            # history keeps only the last start, with the attempt number.
            actions += max(event.activity_task_started_event_attributes.attempt, 1)
        elif kind in _ONE_ACTION_EACH:
            actions += 1
    return Shape(events=len(history.events), workflow_tasks=tasks, actions=actions)
