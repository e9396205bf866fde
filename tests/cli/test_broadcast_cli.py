"""``herald topic import``, ``herald broadcast send`` and ``herald broadcast status`` against
the real stack, as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

from devtools.processes import herald_argv
from devtools.sinks import Sinks
from herald.settings import Settings
from tests.harness import Tenant


def _herald(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        herald_argv(*args),
        env={**os.environ, **settings.as_env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_import_a_csv_then_broadcast_to_it_and_follow_it_to_the_end(
    tenant: Tenant, sinks: Sinks, settings: Settings, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    users = [await tenant.user(id=f"cli-{run}-{i}") for i in range(20)]
    topic = f"cli-{run}"
    csv_file = tmp_path / "subscribers.csv"
    lines = ["user_id,topic", *(f"{user['id']},{topic}" for user in users), "not valid!,x"]
    csv_file.write_text("\n".join(lines) + "\n")
    template = await tenant.template("email", "<p>Hello</p>", "CLI")

    imported = await asyncio.to_thread(
        _herald, settings, "topic", "import", str(csv_file), "--tenant", tenant.name
    )

    assert imported.returncode == 0, imported.stderr
    assert f"{topic}: 20 subscribers" in imported.stdout
    assert "skipped 1 rows" in imported.stderr

    sent = await asyncio.to_thread(
        _herald,
        settings,
        "broadcast",
        "send",
        "--topic",
        topic,
        "--template",
        template,
        "--channel",
        "email",
        "--tenant",
        tenant.name,
        "--rate",
        "100",
    )
    assert sent.returncode == 0, sent.stderr
    # The id alone on stdout (for ``id=$(herald broadcast send ...)``), the rest on stderr.
    broadcast_id = sent.stdout.strip()
    assert str(uuid.UUID(broadcast_id)) == broadcast_id, sent.stdout
    assert f"broadcast {broadcast_id}: 20 recipients" in sent.stderr

    status = await asyncio.to_thread(_herald, settings, "broadcast", "status", broadcast_id)

    assert status.returncode == 0, status.stderr
    assert "completed: 20/20 started · 20 sent" in status.stdout
    addresses = {user["email"] for user in users}
    assert len([m for m in sinks.state.received("email") if m.to in addresses]) == 20
