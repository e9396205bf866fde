"""The README runs as written: every shell block of README.md (and deploy/README.md),
in order, in one shell, against one Herald, each answer checked against the ``# →``
comment under it (``tests/readme/runner.py``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete

from devtools.devserver import TemporalDevServer
from devtools.devstack import DEV_TENANT, map_dev_producer
from devtools.processes import ManagedProcess
from devtools.sinks import Sinks
from herald.db import Producer, make_engine
from tests.harness import Stack, new_run_id
from tests.readme.runner import Outcome, parse_blocks, run_file, shell_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEPLOY_README = ROOT / "deploy" / "README.md"
# Still on their way: the run is over once none of the README's notifications is.
MOVING = ("accepted", "sending", "retrying")


def environment(stack: Stack, sinks: Sinks, temporal: TemporalDevServer) -> dict[str, str]:
    """What a reader's terminal has next to ``./scripts/dev``, pointed at this run's
    Herald: the variables the README's first block reads, the settings the ``herald``
    command reads, and the Temporal CLI's address; ``.venv/bin`` is not on PATH."""
    return shell_env(
        {
            **os.environ,
            **stack.settings.as_env(),
            "HERALD_API": stack.api_url,
            "HERALD_SINKS": sinks.http_url,
            "TEMPORAL_ADDRESS": temporal.address,
        },
        ROOT / ".venv" / "bin",
    )


def workspace(tmp_path: Path) -> Path:
    """The reader's directory, the repository's root: its venv and the deploy script
    the examples run, with room for what they write (``subscribers.csv``,
    ``deploy/secrets/``) outside the repository."""
    cwd = tmp_path / "checkout"
    (cwd / "deploy").mkdir(parents=True)
    (cwd / ".venv").symlink_to(ROOT / ".venv")
    shutil.copy2(ROOT / "deploy" / "make-secrets.sh", cwd / "deploy")
    return cwd


@pytest.fixture
async def dev_producer(stack: Stack) -> AsyncIterator[None]:
    """As under ``herald dev``: the broker's user (guest) publishes for the README's
    tenant. Unmapped afterwards: other tests rely on guest being no producer."""
    user = await map_dev_producer(stack.settings)
    yield
    if user:
        engine = make_engine(stack.settings, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(delete(Producer).where(Producer.amqp_user == user))
        finally:
            await engine.dispose()


def report(outcome: Outcome) -> str:
    skipped = "".join(f"\n  skipped {line}" for line in outcome.skipped)
    return "\n".join(outcome.failures) + skipped


@pytest.mark.fast
def test_every_block_either_runs_or_says_why_not() -> None:
    for path in (README, DEPLOY_README):
        blocks = parse_blocks(path.read_text())
        assert blocks, path
        for block in blocks:
            assert block.commands or block.skip, f"{path}:{block.line}: an empty block"


async def test_readme_runs_as_written(
    stack: Stack,
    sinks: Sinks,
    temporal_server: TemporalDevServer,
    bridge: ManagedProcess,
    dev_producer: None,
    tmp_path: Path,
) -> None:
    env = environment(stack, sinks, temporal_server)
    cwd = workspace(tmp_path)
    started = time.monotonic()
    outcome = await asyncio.to_thread(
        run_file, README, env=env, cwd=cwd, workdir=tmp_path / "readme"
    )
    deploy = await asyncio.to_thread(
        run_file, DEPLOY_README, env=env, cwd=cwd, workdir=tmp_path / "deploy"
    )
    print(f"ran {outcome.ran} README commands in {time.monotonic() - started:.1f} s")
    print(report(outcome), report(deploy), sep="\n")
    assert not outcome.failures, report(outcome)
    assert not deploy.failures, report(deploy)
    assert deploy.ran >= 1  # its local part: the compose secrets
    assert outcome.ran > 40  # the examples ran, not only the skip markers

    # What the examples started also ended well: nothing failed (a template variable
    # the data lacks fails a send that was accepted, e.g. one published to RabbitMQ).
    key = outcome.variables["KEY"]
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        # The first send, the batch's and the ten published to RabbitMQ (the bridge
        # takes those for the README's tenant).
        welcome = 12
        deadline = time.monotonic() + 90
        while True:
            moving = [n for status in MOVING for n in await listed(client, status)]
            sent = [n for n in await listed(client, None) if n["template"] == "welcome"]
            if (not moving and len(sent) >= welcome) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert not moving, f"still on their way: {moving[:5]}"
        assert len(sent) >= welcome, f"{len(sent)} welcome notifications, not {welcome}"
        failed = await listed(client, "failed")
        assert not failed, [(n["id"], n["template"], n["last_error"]) for n in failed[:5]]


async def listed(client: httpx.AsyncClient, status: str | None) -> list[dict[str, object]]:
    """Every notification of the key's tenant with ``status`` (all pages)."""
    found: list[dict[str, object]] = []
    params: dict[str, str] = {"limit": "100"}
    if status:
        params["status"] = status
    while True:
        page = await client.get("/v1/notifications", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        found += body["items"]
        if not body["next_cursor"]:
            return found
        params["cursor"] = body["next_cursor"]


async def test_an_example_using_a_template_it_never_created_fails_at_its_line(
    stack: Stack, sinks: Sinks, temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    text = README.read_text()
    sent = '"template": "welcome",\n       "data": {"name": "Ada", "code": "4711"}}'
    assert sent in text, "the README's first send changed: update this test"
    changed = text.replace(sent, sent.replace('"welcome"', '"welcome-v2"'), 1)
    line = changed[: changed.index('"welcome-v2"')].count("\n") + 1
    # Only the first example, in a tenant of its own (its user and template are new).
    first = next(b for b in parse_blocks(changed) if not b.skip)
    lines = changed.splitlines()
    close = next(i for i in range(first.commands[-1].line, len(lines)) if lines[i] == "```")
    cut = "\n".join(lines[: close + 1]) + "\n"
    outcome = await asyncio.to_thread(
        run_file,
        README,
        text=cut,
        env=environment(stack, sinks, temporal_server),
        cwd=workspace(tmp_path),
        workdir=tmp_path / "readme",
        substitutions={f"--tenant {DEV_TENANT}": f"--tenant readme-{new_run_id()}"},
    )
    failed_at = [failure.split(":")[1] for failure in outcome.failures]
    send_line = max(c.line for c in first.commands if c.line <= line)
    assert str(send_line) in failed_at, report(outcome)
    failure = outcome.failures[failed_at.index(str(send_line))]
    assert "answered 422" in failure and "welcome-v2" in failure, failure
