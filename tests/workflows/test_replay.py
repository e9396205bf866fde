"""Workflow determinism: the core worker runs ``NotificationWorkflow`` outside Temporal's
sandbox for speed, so the sandbox's checks run here instead. This test drives one
notification down every path (sent, retried, scheduled, cancelled, fallback, failed,
resent, continued as new, suppressed) through the real stack and replays each history,
inside the sandbox, against today's workflow code: a non-deterministic call (clock,
randomness, I/O) fails the replay. It needs nothing from other tests.

The histories of older workflow code are replayed by ``test_history_corpus.py``.
``HERALD_RECORD_HISTORIES=1`` makes this test also write the histories it produced into
that corpus (``tests/workflows/histories/``): see that module for when to.
"""

from __future__ import annotations

import os

from devtools.sinks import Sinks
from herald.settings import Settings
from herald.temporal import connect
from tests.harness import Tenant
from tests.workflows.replaying import replay, run_every_path, save


async def test_every_path_replays_deterministically_in_the_sandbox(
    tenant: Tenant, sinks: Sinks, settings: Settings
) -> None:
    client = await connect(settings)
    histories = await run_every_path(tenant, sinks, client)

    replayed, failures = await replay(histories.values())

    assert failures == []
    assert replayed == len(histories) == 11
    if os.environ.get("HERALD_RECORD_HISTORIES") == "1":
        for path in save(histories):
            print(f"recorded {path}")
