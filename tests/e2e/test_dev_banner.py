"""``herald dev`` prints its banner only once the API answers: ``wait_for_api`` against a
real HTTP server that starts late, and against an API process that exits."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devtools.devstack import wait_for_api
from devtools.processes import ManagedProcess
from herald.ports import free_port

pytestmark = pytest.mark.fast


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _serving_after(port: int, delay: float) -> Iterator[None]:
    """An HTTP server on ``port`` that only starts listening after ``delay`` seconds."""
    servers: list[http.server.HTTPServer] = []

    def start() -> None:
        time.sleep(delay)
        servers.append(http.server.HTTPServer(("127.0.0.1", port), _Healthz))
        servers[0].serve_forever()

    threading.Thread(target=start, daemon=True).start()
    try:
        yield
    finally:
        while not servers:
            time.sleep(0.05)
        servers[0].shutdown()
        servers[0].server_close()


def _sleeper(tmp_path: Path, seconds: str) -> ManagedProcess:
    return ManagedProcess("api", ["sleep", seconds], {}, tmp_path).start()


def test_waits_until_the_api_answers(tmp_path: Path) -> None:
    port = free_port()
    api = _sleeper(tmp_path, "30")
    try:
        with _serving_after(port, 1.0):
            started = time.monotonic()
            assert wait_for_api(f"http://127.0.0.1:{port}", api, lambda: False, timeout=20)
            assert time.monotonic() - started >= 0.9
    finally:
        api.stop(timeout=5)


def test_gives_up_when_the_api_process_exits_or_ctrl_c_comes(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    exited = _sleeper(tmp_path, "0.2")
    started = time.monotonic()
    assert not wait_for_api(url, exited, lambda: False, timeout=20)
    assert time.monotonic() - started < 5

    running = _sleeper(tmp_path, "30")
    try:
        assert not wait_for_api(url, running, lambda: True, timeout=20)
        assert not wait_for_api(url, running, lambda: False, timeout=0.5)
    finally:
        running.stop(timeout=5)
