"""deploy/prometheus/alerts.yml: the rules load (``promtool check rules`` where Debian's
``prometheus`` package provides it; .ci/run installs it), compose's Prometheus loads
them, they cover what an operator is paged for, and every metric they name is one a
running Herald exports: checked against the live ``/metrics`` of every process of the
test stack and of a bridge."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.processes import ManagedProcess, herald_argv, wait_http
from devtools.sinks import Rule, Sinks
from herald.contracts import Channel
from herald.ports import free_port
from herald.settings import Settings
from tests.deploy.dashboard import DASHBOARD, family
from tests.deploy.promql import metric_names
from tests.harness import Stack, Tenant, wait_for_status

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"


def rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule_metrics() -> dict[str, set[str]]:
    """The metric names each rule's expression selects, by alert name."""
    return {rule["alert"]: metric_names(rule["expr"]) for rule in rules()}


@pytest.mark.fast
def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


@pytest.mark.fast
def test_compose_prometheus_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    for path in config["rule_files"]:
        assert f"./prometheus/{Path(path).name}:{path}:ro" in mounts
    assert "/etc/prometheus/alerts.yml" in config["rule_files"]


@pytest.mark.fast
def test_the_rules_cover_what_an_operator_is_paged_for() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    covered = {
        "HeraldDeliverySuccessBelowTarget": {
            "herald_notifications_total",
            "herald_receipt_changes_total",
        },
        "HeraldCircuitBreakerOpen": {"herald_breaker_state"},
        "HeraldNotificationsRetryingTooLong": {"herald_notifications_retrying_oldest_seconds"},
        "HeraldIngestQueueGrowing": {"herald_queue_depth"},
        "HeraldIngestQueueStalled": {"herald_ingest_oldest_message_seconds"},
        "HeraldWebhookEndpointFailing": {"herald_webhook_deliveries_total"},
        "HeraldTaskQueueWithoutPollers": {"temporal_num_pollers"},
    }
    assert rule_metrics() == covered
    # The thresholds the design asks for.
    assert "< 0.995" in by_name["HeraldDeliverySuccessBelowTarget"]["expr"]
    assert "[30m]" in by_name["HeraldDeliverySuccessBelowTarget"]["expr"]
    assert "> 900" in by_name["HeraldNotificationsRetryingTooLong"]["expr"]
    assert "[5m]" in by_name["HeraldCircuitBreakerOpen"]["expr"]
    assert "[10m]" in by_name["HeraldIngestQueueGrowing"]["expr"]
    assert "offset 50m" in by_name["HeraldWebhookEndpointFailing"]["expr"]
    assert "> 300" in by_name["HeraldIngestQueueStalled"]["expr"]
    for queue in ("core", *(channel.value for channel in Channel)):
        assert f'task_queue="herald-{queue}"' in by_name["HeraldTaskQueueWithoutPollers"]["expr"]
    for rule in rules():
        assert rule["labels"]["severity"] in {"page", "warn", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def _series(channel: str, name: str, per_minute: float, **labels: str) -> dict[str, str]:
    """A promtool input series: a counter growing by ``per_minute`` for 40 minutes."""
    selector = ",".join(f'{k}="{v}"' for k, v in {"channel": channel, **labels}.items())
    return {"series": f"{name}{{{selector}}}", "values": f"0+{per_minute}x40"}


def _sent(channel: str, sent: float, failed: float = 0.0) -> list[dict[str, str]]:
    outcome = "herald_notifications_total"
    return [
        _series(channel, outcome, sent, provider="p", outcome="sent"),
        _series(channel, outcome, failed, provider="p", outcome="failed"),
    ]


def _moved(channel: str, old: str, new: str, per_minute: float) -> dict[str, str]:
    return _series(
        channel, "herald_receipt_changes_total", per_minute, from_status=old, to_status=new
    )


@pytest.mark.fast
def test_delivery_success_counts_undelivered_receipts_against_the_target(
    tmp_path: Path,
) -> None:
    """The rule's own expression, evaluated by promtool on made-up counters: which
    channels it pages for."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    expr = {rule["alert"]: rule["expr"] for rule in rules()}["HeraldDeliverySuccessBelowTarget"]
    paging = f"count by (channel) ({expr})"
    cases = [
        {
            # email: all sent, 1 % bounced afterwards → 99 %: pages.
            # sms: all sent, 0.4 % undelivered → 99.6 %: does not.
            # push: 1 % failed and no receipt series at all → 99 %: still pages.
            "input_series": [
                *_sent("email", 25),
                _moved("email", "sent", "undelivered", 0.25),
                *_sent("sms", 25),
                _moved("sms", "sent", "undelivered", 0.1),
                *_sent("push", 24.75, failed=0.25),
            ],
            "paging": ["email", "push"],
        },
        {
            # email: 1 % undelivered, then every one of them delivered after all.
            # sms: delivered receipts only. Neither pages.
            "input_series": [
                *_sent("email", 25),
                _moved("email", "sent", "undelivered", 0.25),
                _moved("email", "undelivered", "delivered", 0.25),
                *_sent("sms", 25),
                _moved("sms", "sent", "delivered", 25),
            ],
            "paging": [],
        },
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": case["input_series"],
            "promql_expr_test": [
                {
                    "expr": paging,
                    "eval_time": "35m",
                    "exp_samples": [
                        {"labels": f'{{channel="{channel}"}}', "value": 1}
                        for channel in case["paging"]
                    ],
                }
            ],
        }
        for case in cases
    ]
    spec = tmp_path / "delivery_success_test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [], "tests": tests}))
    checked = subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.fast
def test_a_stalled_ingest_queue_pages_once_any_bridge_says_its_oldest_message_is_5_min_old(
    tmp_path: Path,
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    expr = {rule["alert"]: rule["expr"] for rule in rules()}["HeraldIngestQueueStalled"]
    name = "herald_ingest_oldest_message_seconds"
    series = [
        # email: one of two bridges holds a message from minute 0 on; the other drains.
        {"series": f'{name}{{queue="herald.email",instance="a"}}', "values": "0+60x10"},
        {"series": f'{name}{{queue="herald.email",instance="b"}}', "values": "0x10"},
        # sms: a short stall that drained after 4 minutes.
        {"series": f'{name}{{queue="herald.sms",instance="a"}}', "values": "0 60 120 180 240 0x5"},
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                {"expr": f"count by (queue) ({expr})", "eval_time": at, "exp_samples": expected}
                for at, expected in [
                    ("4m", []),
                    ("6m", [{"labels": '{queue="herald.email"}', "value": 1}]),
                ]
            ],
        }
    ]
    spec = tmp_path / "ingest_stalled_test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [], "tests": tests}))
    checked = subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.fast
def test_the_dashboards_delivery_success_panel_shows_what_the_alert_pages_on() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (panel,) = [
        p
        for p in dashboard["panels"]
        if p["title"].startswith("Delivery success") and p.get("targets")
    ]
    expr = {rule["alert"]: rule["expr"] for rule in rules()}["HeraldDeliverySuccessBelowTarget"]
    ratio, threshold = expr.rsplit("<", 1)
    assert threshold.strip() == "0.995"
    assert [" ".join(t["expr"].split()) for t in panel["targets"]] == [" ".join(ratio.split())]


@pytest.mark.fast
def test_the_promql_reader_finds_metrics_and_nothing_else() -> None:
    expr = (
        'sum by (channel) (increase(a_total{outcome="sent", x=~"b|c"}[30m] offset 5m))'
        " / on (channel) group_left (d) b_seconds > bool 0.5"
        ' or absent_over_time(c{task_queue="e"}[5m]) unless max(up) and nan'
    )
    assert metric_names(expr) == {"a_total", "b_seconds", "c", "up"}


@pytest.fixture(scope="module")
def bridge(settings: Settings, stack: Stack, run_dir: Path) -> Iterator[str]:
    """A bridge on the stack's RabbitMQ vhost (the stack runs none); its metrics URL."""
    port = free_port()
    env = settings.as_env() | {"HERALD_METRICS_PORT": str(port)}
    process = ManagedProcess("bridge-alerts", herald_argv("bridge"), env, run_dir / "logs")
    process.start()
    wait_http(f"http://127.0.0.1:{port}/readyz")
    yield f"http://127.0.0.1:{port}/metrics"
    process.stop(timeout=10)


def exposition(url: str) -> list[Any]:
    """The metric families one process exposes."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return list(text_string_to_metric_families(response.text))


def samples(families: list[Any], name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The values of one sample name by labels."""
    return {
        frozenset(sample.labels.items()): sample.value
        for metrics in families
        for sample in metrics.samples
        if sample.name == name
    }


async def until(probe: Any, timeout: float = 30.0) -> Any:
    """Call ``probe`` (in a thread) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(probe)
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


async def test_every_metric_the_alert_rules_name_is_exported_by_a_running_herald(
    tenant: Tenant, stack: Stack, bridge: str
) -> None:
    # A sent notification, so the workers have made their breakers and counted an outcome.
    user = await tenant.user()
    key = await tenant.template("email", "Hi", "Hello")
    assert (await wait_for_status(tenant.client, await tenant.send("email", user["id"], key)))[
        "status"
    ] == "sent"
    urls = [f"{stack.api_url}/metrics", bridge] + [
        f"http://127.0.0.1:{port}/metrics" for port in stack.metrics_ports.values()
    ]
    exposed: set[str] = set()
    for url in urls:
        for metrics in await asyncio.to_thread(exposition, url):
            exposed |= {family(metrics.name)} | {family(s.name) for s in metrics.samples}
    for alert, names in rule_metrics().items():
        missing = {name for name in names if family(name) not in exposed}
        assert not missing, f"{alert} names metrics no Herald process exports: {missing}"

    # The pollers the "no worker polls" rule reads are per task queue, as it selects them.
    worker = await asyncio.to_thread(
        exposition, f"http://127.0.0.1:{stack.metrics_ports['worker-email']}/metrics"
    )
    pollers = samples(worker, "temporal_num_pollers")
    queue = f"{stack.settings.task_queue_prefix}-email"
    assert any(
        dict(labels).get("poller_type") == "workflow_task"
        and dict(labels).get("task_queue") == queue
        and value > 0
        for labels, value in pollers.items()
    ), pollers

    # The bridge samples every ingest queue's depth.
    def depths() -> dict[frozenset[tuple[str, str]], float]:
        return samples(exposition(bridge), "herald_queue_depth")

    sampled = await until(lambda: len(depths()) == len(Channel) and depths())
    assert {dict(labels)["queue"] for labels in sampled} == {f"herald.{c.value}" for c in Channel}


async def test_a_notification_held_in_retry_shows_in_the_retrying_gauges(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    user = await tenant.user()
    # The provider asks to come back in 30 s: the SMS waits in backoff, retrying.
    sinks.state.add_rule(Rule(match=user["phone"], always=429, retry_after=30))
    key = await tenant.template("sms", "Hello", None)
    nid = await tenant.send("sms", user["id"], key)
    await wait_for_status(tenant.client, nid, {"retrying"})

    def retrying() -> tuple[float, float] | None:
        families = exposition(f"{stack.api_url}/metrics")
        sms = frozenset({("channel", "sms")})
        count = samples(families, "herald_notifications_retrying").get(sms, 0.0)
        oldest = samples(families, "herald_notifications_retrying_oldest_seconds").get(sms, 0.0)
        return (count, oldest) if count >= 1 and oldest > 0 else None

    assert await until(retrying), "the API never reported the retrying SMS"

    assert (await tenant.client.post(f"/v1/notifications/{nid}/cancel")).status_code == 202
    assert (await wait_for_status(tenant.client, nid))["status"] == "cancelled"
