"""Prometheus metrics of the Herald processes that are not the API: their names, and the
one ``/metrics`` port each worker and the bridge serves.

A process calls :func:`start_process_metrics` once at start-up and connects to Temporal
with the runtime it returns; its port then answers ``/metrics`` with Herald's own
metrics followed by the Temporal SDK's (workflow/activity task latencies, poll counts,
slots, sticky cache: the SDK's Prometheus exporter, bound to loopback and read through),
``/healthz`` while the process runs and ``/readyz`` while it does its work.
``HERALD_METRICS_PORT=0`` (the default) turns all of that off.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from herald.contracts import Channel
from herald.ports import free_port
from herald.settings import Settings

log = logging.getLogger(__name__)

# Provider activities (one place: activities/providers/base.py).
NOTIFICATIONS = Counter(
    "herald_notifications_total",
    "Notifications a provider finished with: sent, or failed for good",
    ["channel", "provider", "outcome"],
)
ATTEMPTS = Counter(
    "herald_send_attempts_total",
    "Provider send attempts by result (ok, transient_error, permanent_error)",
    ["channel", "provider", "result"],
)
PROVIDER_LATENCY = Histogram(
    "herald_provider_latency_seconds",
    "Time a provider took to accept or refuse one message",
    ["channel", "provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# Delivery receipts (herald/statuslog/), in whichever process applies them (the API,
# ``herald bounces``, and a send step whose ``sent`` meets a receipt that came first).
# Only a receipt that changes the status counts, so a replayed callback never counts
# twice. Every ``undelivered`` was counted ``sent`` by NOTIFICATIONS first: delivery
# success is sent, less what moved to undelivered, plus what moved back out of it.
RECEIPT_CHANGES = Counter(
    "herald_receipt_changes_total",
    "Notifications whose status a delivery receipt changed (from_status -> to_status)",
    ["channel", "from_status", "to_status"],
)
# The changes a receipt can make, present from the start (at 0) so that rules reading
# them have a series for every channel before the first receipt.
RECEIPT_MOVES = (
    ("sent", "delivered"),
    ("sent", "undelivered"),
    ("undelivered", "delivered"),
)
for _channel in Channel:
    for _from, _to in RECEIPT_MOVES:
        RECEIPT_CHANGES.labels(channel=_channel.value, from_status=_from, to_status=_to)

# The RabbitMQ bridge: one count per message it took off a queue, by what it did with it.
QUEUE_MESSAGES = Counter(
    "herald_queue_messages_total",
    "Messages consumed from the ingest queues by outcome "
    "(started, duplicate, dead_lettered, requeued)",
    ["queue", "outcome"],
)
QUEUE_START_LATENCY = Histogram(
    "herald_queue_start_seconds",
    "Time from taking a message to Temporal accepting its workflow start",
    ["queue"],
)
# Sampled every HERALD_BACKLOG_SAMPLE_SECONDS by the bridge (bridge/depth.py): the same
# value in every bridge replica, so alert on the max per queue, not the sum.
QUEUE_DEPTH = Gauge(
    "herald_queue_depth",
    "Messages ready (not yet taken by a bridge) in an ingest queue",
    ["queue"],
)
# What each bridge holds unsettled per ingest queue while it retries an outage, and the
# age of the oldest message it knows is waiting (held, or ready in a queue that has not
# drained since): bridge/queue_health.py. Per bridge replica, so alert on the max.
INGEST_HELD = Gauge(
    "herald_ingest_held_messages",
    "Messages a bridge holds unsettled (retrying an outage, or requeued) per ingest queue",
    ["queue"],
)
INGEST_OLDEST = Gauge(
    "herald_ingest_oldest_message_seconds",
    "Age of the oldest message a bridge knows is waiting in an ingest queue (0: none)",
    ["queue"],
)


_SCRAPE_TIMEOUT = 5.0


class MetricsServer:
    """The HTTP server behind one process's metrics port (a daemon thread)."""

    def __init__(self, port: int, host: str = "127.0.0.1", temporal_url: str | None = None) -> None:
        self.temporal_url = temporal_url
        self.ready = threading.Event()
        self._http = ThreadingHTTPServer((host, port), _handler(self))
        self._http.daemon_threads = True
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="herald-metrics", daemon=True
        )
        self._thread.start()

    def exposition(self) -> bytes:
        """Herald's metrics, then the Temporal SDK's (if this process has a runtime)."""
        body = generate_latest(REGISTRY)
        if self.temporal_url:
            try:
                with urllib.request.urlopen(self.temporal_url, timeout=_SCRAPE_TIMEOUT) as sdk:
                    body += sdk.read()
            except OSError as err:
                log.warning("temporal SDK metrics unavailable", extra={"error": str(err)})
        return body

    def stop(self) -> None:
        """Stop serving."""
        self._http.shutdown()
        self._http.server_close()


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, server.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._answer(200, b'{"status":"ok"}\n', "application/json")
            elif path == "/readyz":
                ready = server.ready.is_set()
                body = b'{"status":"ready"}\n' if ready else b'{"status":"not ready"}\n'
                self._answer(200 if ready else 503, body, "application/json")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not worth a log line each."""

    return Handler


def temporal_runtime(address: str) -> Runtime:
    """A Temporal runtime whose SDK metrics are served in Prometheus format at ``address``."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=address,
                counters_total_suffix=True,
                unit_suffix=True,
                durations_as_seconds=True,
            )
        )
    )


def start_process_metrics(settings: Settings) -> tuple[MetricsServer | None, Runtime | None]:
    """Serve this process's metrics on ``HERALD_METRICS_PORT`` (0: off).

    Returns the server (set its ``ready`` event once the process does its work) and the
    Temporal runtime to pass to :func:`herald.temporal.connect`.
    """
    if not settings.metrics_port:
        return None, None
    sdk_address = f"127.0.0.1:{free_port()}"
    try:
        server = MetricsServer(
            settings.metrics_port,
            host=settings.metrics_host,
            temporal_url=f"http://{sdk_address}/metrics",
        )
    except OSError as err:  # a busy port costs the metrics, never the work
        log.error(
            "metrics port unavailable; metrics are off",
            extra={"port": settings.metrics_port, "error": str(err)},
        )
        return None, None
    log.info("metrics served", extra={"port": server.port})
    return server, temporal_runtime(sdk_address)
