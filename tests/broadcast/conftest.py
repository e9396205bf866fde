"""The broadcast workflow's tests share the workflow tests' time-skipping server."""

from tests.workflows.test_workflow_timeskipping import env  # noqa: F401
