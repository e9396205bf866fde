"""Notifications already running must keep running after a deploy: every history in
``tests/workflows/histories/`` was recorded from a real run of an earlier (or the
current) ``NotificationWorkflow``, and each must replay, inside Temporal's sandbox,
against the code that runs that version today (``replaying.CODE``: the first version's
runs finish on the core worker's ``NotificationWorkflowV1``). A change that breaks them
fails here; guard it with ``workflow.patched`` (or a new workflow type) rather than re-
recording the old files.

Re-recording, after a deliberate change of the workflow that running notifications can
no longer follow, or to add the paths of a new version:

1. Set ``VERSION`` in ``tests/workflows/replaying.py`` to the next one (``v2``, ...) so
   the older files are kept beside the new ones (delete old ones only once no
   notification of that version can still be running).
2. Run ``HERALD_RECORD_HISTORIES=1 ./scripts/test tests/workflows/test_replay.py -s``:
   it drives one notification down every path on a real dev server, replays them and
   writes ``<VERSION>-<path>.json`` (``WorkflowHistory.to_json()``).
3. Commit the new JSON files.

Needs no services: the histories replay in this process.
"""

from __future__ import annotations

import pytest

from tests.workflows.replaying import CODE, CORPUS, load_corpus, replay

pytestmark = pytest.mark.fast

PATHS = {
    "clean-send",
    "retried-send",
    "scheduled-send",
    "cancelled-while-scheduled",
    "fallback",
    "failed-after-retries",
    "failed-render",
    "suppressed",
    "resend-cycle-2",
    "continued-as-new",
    "continued-as-new-cycle-2",
}


@pytest.mark.parametrize("version", sorted(CODE))
def test_the_corpus_has_every_path_of_each_version(version: str) -> None:
    recorded = {path.stem for path in CORPUS.glob("*.json")}

    assert {f"{version}-{name}" for name in PATHS} <= recorded


@pytest.mark.parametrize("version", sorted(CODE))
async def test_every_recorded_history_replays_in_the_sandbox(version: str) -> None:
    histories = load_corpus(version=version)

    replayed, failures = await replay(histories, CODE[version])

    assert failures == []
    assert replayed == len(histories) >= len(PATHS)


def test_every_recorded_version_has_the_code_that_runs_it() -> None:
    # The notification workflow's histories (``flow-*`` are FlowRun's, replayed by
    # tests/flows/test_flow_replay.py).
    versions = {path.stem.split("-", 1)[0] for path in CORPUS.glob("v*.json")}

    assert versions <= set(CODE)
