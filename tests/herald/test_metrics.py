"""A worker's metrics port: Herald's metrics and the Temporal SDK's on one ``/metrics``,
liveness and readiness beside them, and a busy port that costs only the metrics."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from herald.metrics import NOTIFICATIONS, MetricsServer, start_process_metrics
from herald.settings import Settings


@pytest.fixture
def sdk_exposition() -> Iterator[str]:
    """A stand-in for the Temporal runtime's Prometheus endpoint."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"# TYPE temporal_request_total counter\ntemporal_request_total 3\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def test_one_port_serves_herald_and_sdk_metrics_and_the_probes(sdk_exposition: str) -> None:
    NOTIFICATIONS.labels("sms", "unit", "sent").inc()
    server = MetricsServer(0, temporal_url=sdk_exposition)
    base = f"http://127.0.0.1:{server.port}"
    try:
        text = httpx.get(f"{base}/metrics").text
        assert 'herald_notifications_total{channel="sms",outcome="sent",provider="unit"}' in text
        assert "temporal_request_total 3" in text
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 503
        server.ready.set()
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert httpx.get(f"{base}/nope").status_code == 404
    finally:
        server.stop()


def test_metrics_off_or_on_a_busy_port_leave_the_process_running() -> None:
    assert start_process_metrics(Settings(metrics_port=0)) == (None, None)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert start_process_metrics(Settings(metrics_port=port)) == (None, None)
