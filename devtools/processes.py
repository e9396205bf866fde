"""Child processes of ``herald dev`` (and of the end-to-end tests): start, stop, kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx


def herald_argv(*args: str) -> list[str]:
    """The command line of a ``herald`` subcommand run by this Python."""
    return [sys.executable, "-m", "cli", *args]


def assign_metrics_ports(
    processes: Iterable[ManagedProcess], next_port: Callable[[], int]
) -> dict[str, int]:
    """Give every process but the API (which serves ``/metrics`` itself) its own
    ``HERALD_METRICS_PORT``; returns name → port."""
    ports: dict[str, int] = {}
    for process in processes:
        if process.name != "api":
            ports[process.name] = next_port()
            process.env = {**process.env, "HERALD_METRICS_PORT": str(ports[process.name])}
    return ports


class ManagedProcess:
    """One child with its own log file; restartable."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        """Start (or start again) the child."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        """Whether the child is running."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 35.0) -> int | None:
        """SIGTERM, wait for a graceful exit, SIGKILL after ``timeout``."""
        if not self.alive or self.process is None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL: the crash a real machine can have at any moment."""
        if self.process is None:
            return None
        if self.alive:
            self.process.kill()
        return self.process.wait()


def wait_http(url: str, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers 200 (a process has finished starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")
