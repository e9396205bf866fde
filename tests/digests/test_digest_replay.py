"""Digests already running must keep running after a deploy: each history in
``tests/digests/histories/`` was recorded from ``DigestWorkflow`` as it was when a
signal carried the whole request (``notification``, data included), and each must replay,
inside Temporal's sandbox, against today's code, which sends ids (a change that breaks
them needs ``workflow.patched``). ``digest-v1-collecting`` stopped mid-window: today's
code picks such a run up where it was.

Recorded on Temporal's time-skipping server with the previous ``workflows/digest.py``
and the fake steps of ``test_digest_workflow.py`` (a window of three requests; a
``max_items`` close continued as new; a run still collecting).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workflows.replaying import load_corpus, replay
from workflows.digest import DigestWorkflow

pytestmark = pytest.mark.fast

HISTORIES = Path(__file__).with_name("histories")


async def test_digest_histories_of_the_previous_version_replay() -> None:
    histories = load_corpus(HISTORIES, "digest-v1")

    replayed, failures = await replay(histories, DigestWorkflow)

    assert len(histories) == 4
    assert (replayed, failures) == (4, [])
