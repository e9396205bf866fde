"""How ``scripts/test`` splits the whole suite. Parts 1 and 2 run at once, each a pytest
session with its own Herald (its own Temporal dev server, database, RabbitMQ vhost,
sinks and processes on free ports); then the tests that restart a service every session
shares (RabbitMQ) run ``alone``, beside the ``fast`` ones, which need no service at all.
Much of the suite waits (digest windows, outages, backoff), so two parts on two cores
take far less than one after the other.

``HERALD_TEST_SHARD`` (``1``, ``2``, ``alone`` or ``fast``) picks one part; unset, every
test runs. Parts 1 and 2 split by folder, balanced on measured durations; a new folder
goes to part 1."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

ENV = "HERALD_TEST_SHARD"
PARTS = ("1", "2", "alone", "fast")

# Restart RabbitMQ itself (the broker every session's vhost lives on).
ALONE = frozenset({"tests/chaos", "tests/bridge/test_rabbitmq_restart.py"})
# About half the suite's time.
SECOND = frozenset(
    {
        "tests/bridge",
        "tests/flows",
        "tests/api",
        "tests/workflows",
        "tests/workers",
        "tests/providers",
        "tests/deploy",
        "tests/activities",
        "tests/broadcast",
        "tests/bounces",
    }
)


def part_of(path: str, fast: bool) -> str:
    """The part a test runs in, from its file (a path relative to the repository) and
    whether it is marked ``fast``."""
    parents = {str(parent) for parent in PurePosixPath(path).parents} | {path}
    if parents & ALONE:
        return "alone"
    if fast:
        return "fast"
    return "2" if parents & SECOND else "1"


def selected() -> str | None:
    """The part this session runs, or None for all."""
    part = os.environ.get(ENV) or None
    if part is not None and part not in PARTS:
        raise ValueError(f"{ENV} must be one of {', '.join(PARTS)}, not {part!r}")
    return part
