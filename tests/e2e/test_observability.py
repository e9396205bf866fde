"""What an operator's tools see of real traffic: Prometheus metrics on the API and on
every worker's metrics port, and one request id followed from the API's log line into
the workflow and onto the provider activity's log line, with no PII in any log."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devtools.sinks import Rule, Sinks
from herald.contracts import workflow_id_for
from herald.settings import Settings
from herald.temporal import connect
from tests.deploy.dashboard import dashboard_metrics, family
from tests.harness import Stack, Tenant, wait_for_status
from workers.main import QUEUES

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and labels."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def worker_metrics(stack: Stack, queue: str) -> str:
    """The metrics URL of one worker process."""
    return f"http://127.0.0.1:{stack.metrics_ports[f'worker-{queue}']}/metrics"


async def test_metrics_count_requests_sends_attempts_and_temporal_sdk_work(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    user = await tenant.user()
    flaky = await tenant.user()
    refused = await tenant.user()
    await tenant.device(user["id"])
    sinks.state.add_rule(Rule(match=flaky["phone"], fail_with=[503]))
    sinks.state.add_rule(Rule(match=refused["phone"], always=400))
    keys = {ch: await tenant.template(ch, "Hi", "Hello") for ch in ("email", "sms", "push")}
    api_url = f"{stack.api_url}/metrics"
    before = {"api": scrape(api_url)} | {
        q: scrape(worker_metrics(stack, q)) for q in ("core", "email", "sms", "push")
    }

    sent = [await tenant.send(ch, user["id"], key) for ch, key in keys.items()]
    sent.append(await tenant.send("sms", flaky["id"], keys["sms"]))
    failed = await tenant.send("sms", refused["id"], keys["sms"])
    for notification_id in sent:
        assert (await wait_for_status(tenant.client, notification_id))["status"] == "sent"
    assert (await wait_for_status(tenant.client, failed))["status"] == "failed"

    after = {"api": scrape(api_url)} | {
        q: scrape(worker_metrics(stack, q)) for q in ("core", "email", "sms", "push")
    }

    def grew(process: str, name: str, **labels: str) -> float:
        return value(after[process], name, **labels) - value(before[process], name, **labels)

    # API: requests and latency by route and status.
    route = {"method": "POST", "route": "/v1/notifications", "status": "202"}
    assert grew("api", "herald_api_requests_total", **route) == 5
    assert grew("api", "herald_api_request_seconds_count", **route) == 5
    assert value(after["api"], "herald_api_request_seconds_bucket", le="+Inf", **route) >= 5

    # Channel workers: outcomes, attempts and provider latency (at least ours: a retry
    # left by an earlier test may still land on these shared workers).
    sms = {"channel": "sms", "provider": "twilio"}
    assert grew("sms", "herald_notifications_total", outcome="sent", **sms) >= 2
    assert grew("sms", "herald_notifications_total", outcome="failed", **sms) >= 1
    assert grew("sms", "herald_send_attempts_total", result="ok", **sms) >= 2
    assert grew("sms", "herald_send_attempts_total", result="transient_error", **sms) >= 1
    assert grew("sms", "herald_send_attempts_total", result="permanent_error", **sms) >= 1
    assert grew("sms", "herald_provider_latency_seconds_count", **sms) >= 4
    for channel in ("email", "push"):
        assert grew(channel, "herald_notifications_total", channel=channel, outcome="sent") >= 1
        assert grew(channel, "herald_provider_latency_seconds_count", channel=channel) >= 1

    # The Temporal SDK's own metrics ride on the same port.
    # Each notification's workflow ran on its channel's workers.
    completed = {q: grew(q, "temporal_workflow_completed_total") for q in ("email", "sms", "push")}
    assert completed["sms"] >= 3 and completed["email"] >= 1 and completed["push"] >= 1
    # The first attempts were local activities; only the retried SMS was a regular one.
    assert grew("sms", "temporal_local_activity_execution_latency_seconds_count") >= 3
    assert grew("sms", "temporal_activity_execution_latency_seconds_count") >= 1
    assert value(after["sms"], "temporal_worker_task_slots_available") > 0

    async with httpx.AsyncClient() as http:
        for queue in ("core", "email", "sms", "push"):
            port = stack.metrics_ports[f"worker-{queue}"]
            for probe in ("healthz", "readyz"):
                assert (await http.get(f"http://127.0.0.1:{port}/{probe}")).status_code == 200


async def test_every_metric_the_grafana_dashboard_queries_is_exposed(
    tenant: Tenant, stack: Stack
) -> None:
    user = await tenant.user()
    key = await tenant.template("email", "Hi", "Hello")
    notification_id = await tenant.send("email", user["id"], key)
    await wait_for_status(tenant.client, notification_id)
    urls = [f"{stack.api_url}/metrics"] + [worker_metrics(stack, q) for q in QUEUES]
    exposed: set[str] = set()
    for url in urls:
        text = (await asyncio.to_thread(httpx.get, url, timeout=10)).text
        for metrics in text_string_to_metric_families(text):
            exposed |= {family(metrics.name)} | {family(s.name) for s in metrics.samples}
    missing = {name for name in dashboard_metrics() if family(name) not in exposed}
    assert not missing, f"the dashboard queries metrics nothing exposes: {missing}"


async def log_lines(path: Path, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """JSON log lines of one process that ``match``, waiting a little for them."""
    deadline = time.monotonic() + 60
    while True:
        found = []
        for line in (await asyncio.to_thread(path.read_text)).splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if match(record):
                found.append(record)
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


async def test_request_id_follows_a_notification_from_api_to_workflow_to_provider(
    tenant: Tenant, settings: Settings, run_dir: Path
) -> None:
    user = await tenant.user()
    key = await tenant.template("email", "<p>Hi</p>", "Hello")
    request_id = f"req-{uuid.uuid4().hex}"
    response = await tenant.client.post(
        "/v1/notifications",
        json={"channel": "email", "user_id": user["id"], "template": key},
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"] == request_id
    notification_id = response.json()["id"]
    assert (await wait_for_status(tenant.client, notification_id))["status"] == "sent"
    logs = run_dir / "logs"

    api_lines = await log_lines(logs / "api.log", lambda r: r.get("request_id") == request_id)
    accepted = [r for r in api_lines if r["message"] == "notification accepted"]
    assert accepted and accepted[0]["notification_id"] == notification_id
    assert accepted[0]["tenant"] == tenant.name
    assert any(r["message"] == "request" and r["status"] == 202 for r in api_lines)

    client = await connect(settings)
    described = await client.get_workflow_handle(workflow_id_for(notification_id)).describe()
    assert (await described.memo_value("request_id")) == request_id
    assert request_id in (await described.static_details() or "")

    provider = await log_lines(
        logs / "worker-email.log", lambda r: r.get("notification_id") == notification_id
    )
    sent = [r for r in provider if r["message"] == "sent"]
    assert sent, provider
    assert sent[0]["request_id"] == request_id
    assert sent[0]["tenant"] == tenant.name
    assert sent[0]["component"] == "worker-email"


async def test_logs_name_users_only_by_their_opaque_id(
    tenant: Tenant, sinks: Sinks, run_dir: Path
) -> None:
    user = await tenant.user()
    sinks.state.add_rule(Rule(match=user["phone"], fail_with=[503]))
    # A relay that echoes the address in its error, as real ones do.
    sinks.state.add_rule(
        Rule(match=user["email"], fail_with=[f"451 4.2.1 mailbox {user['email']} busy"])
    )
    ids = [
        await tenant.send(channel, user["id"], await tenant.template(channel, "Hi", "Hello"))
        for channel in ("sms", "email")
    ]
    for notification_id in ids:
        assert (await wait_for_status(tenant.client, notification_id))["status"] == "sent"
    logs = run_dir / "logs"
    failures = await log_lines(
        logs / "worker-email.log",
        lambda r: r.get("notification_id") == ids[1] and r["message"] == "send attempt failed",
    )
    assert "mailbox <email> busy" in failures[0]["error"], failures
    written = "\n".join([await asyncio.to_thread(path.read_text) for path in logs.glob("*.log")])
    assert all(notification_id in written for notification_id in ids)
    assert user["email"] not in written
    assert user["phone"] not in written
