"""The README's first command: ``herald dev`` brings up a working Herald, or says what is
missing."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path

import httpx

from devtools.processes import herald_argv, wait_http
from herald.migrate import drop_database
from herald.ports import free_port
from tests.harness import new_run_id


def test_dev_names_each_unreachable_service_and_exits_non_zero(tmp_path: Path) -> None:
    dead = free_port()
    env = {
        **os.environ,
        "HERALD_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{dead}/herald",
        "HERALD_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{dead}/",
    }
    result = subprocess.run(
        herald_argv("dev", "--data-dir", str(tmp_path)),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "PostgreSQL" in result.stdout and "pg_ctlcluster" in result.stdout
    assert "RabbitMQ" in result.stdout and "rabbitmq-server -detached" in result.stdout


def test_dev_runs_everything_and_sends_an_email(tmp_path: Path) -> None:
    run = new_run_id()
    api, smtp, http, temporal, ui = (free_port() for _ in range(5))
    env = {
        **os.environ,
        "HERALD_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/herald_dev_{run}",
        "HERALD_API_PORT": str(api),
        "HERALD_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}",
        "HERALD_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui}",
        "HERALD_TASK_QUEUE_PREFIX": f"dev-{run}",
        "HERALD_SMTP_PORT": str(smtp),
        "HERALD_SMS_API_URL": f"http://127.0.0.1:{http}",
        "HERALD_PUSH_API_URL": f"http://127.0.0.1:{http}",
    }
    out = (tmp_path / "dev.out").open("w")
    dev = subprocess.Popen(
        herald_argv("dev", "--data-dir", str(tmp_path / "data")),
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "Herald is running" not in (tmp_path / "dev.out").read_text():
            assert dev.poll() is None, (tmp_path / "dev.out").read_text()
            assert time.monotonic() < deadline, "herald dev never said it was running"
            time.sleep(0.5)
        printed = (tmp_path / "dev.out").read_text()
        assert f"http://127.0.0.1:{api}" in printed
        assert f"http://127.0.0.1:{ui}" in printed
        # The banner is printed only once the API answers.
        assert httpx.get(f"http://127.0.0.1:{api}/healthz", timeout=5).status_code == 200
        wait_http(f"http://127.0.0.1:{ui}")  # the Temporal Web UI answers
        # Every metrics port the banner names answers: one per process but the API.
        first, last = map(int, re.findall(r":(\d+)-(\d+)/metrics", printed)[0])
        assert last - first + 1 == 9  # bridge, 6 workers, bounces, webhooks
        for port in range(first, last + 1):
            wait_http(f"http://127.0.0.1:{port}/metrics")

        key = subprocess.run(
            herald_argv("apikey", "create", "--tenant", "demo"),
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        api_client = httpx.Client(
            base_url=f"http://127.0.0.1:{api}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert (
            api_client.post("/v1/users", json={"id": "ada", "email": "ada@example.com"}).status_code
            == 201
        )
        assert (
            api_client.post(
                "/v1/templates",
                json={
                    "key": "welcome",
                    "channel": "email",
                    "subject": "Hi {{ name }}",
                    "body": "<p>Hi {{ name }}</p>",
                },
            ).status_code
            == 201
        )
        sent = api_client.post(
            "/v1/notifications",
            json={
                "channel": "email",
                "user_id": "ada",
                "template": "welcome",
                "data": {"name": "Ada"},
            },
        )
        assert sent.status_code == 202, sent.text
        deadline = time.monotonic() + 60
        while api_client.get(f"/v1/notifications/{sent.json()['id']}").json()["status"] != "sent":
            assert time.monotonic() < deadline, "the email was never sent"
            time.sleep(0.3)
        inbox = httpx.get(
            f"http://127.0.0.1:{http}/_sink/messages", params={"channel": "email"}
        ).json()
        assert [m["subject"] for m in inbox] == ["Hi Ada"]

        # The README's RabbitMQ example: guest publishes for demo under `herald dev`.
        publish = "publish --channel email --user-id ada --template welcome".split()
        queued = subprocess.run(
            herald_argv(*publish, "--data", '{"name": "Ada"}'),
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        deadline = time.monotonic() + 60
        while api_client.get(f"/v1/notifications/{queued}").json().get("status") != "sent":
            assert time.monotonic() < deadline, "the published email was never sent"
            time.sleep(0.3)
    finally:
        dev.terminate()
        assert dev.wait(timeout=90) == 0
        asyncio.run(drop_database(env["HERALD_DATABASE_URL"]))
