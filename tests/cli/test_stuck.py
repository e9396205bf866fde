"""``herald stuck``'s threshold, query and links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cli.stuck import parse_duration, stuck_query, ui_link
from herald.settings import Settings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h30m", 5400), ("2d", 172800), ("1.5h", 5400), ("0s", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "m", "10x", "ten minutes", "-5m", "5m garbage"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_query_is_running_sending_or_retrying_since_before_the_cutoff() -> None:
    cutoff = datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert stuck_query(cutoff) == (
        'ExecutionStatus = "Running" AND HeraldStatus IN ("sending", "retrying") '
        'AND HeraldStatusSince < "2030-01-01T12:00:00+00:00"'
    )


def test_ui_link_names_the_namespace_workflow_and_run() -> None:
    settings = Settings(temporal_ui_url="https://temporal.example.com/", temporal_namespace="ops")
    assert ui_link(settings, "notification-1", "run-2") == (
        "https://temporal.example.com/namespaces/ops/workflows/notification-1/run-2/history"
    )
